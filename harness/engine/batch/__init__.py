"""Provider batch APIs (OpenAI Batch API, Anthropic Message Batches): submit, poll, collect."""
