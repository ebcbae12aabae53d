"""Rendered requests as the console shows them (`evalbatch validate --show N`): long prompts are
shortened here, for reading; results.jsonl keeps every rendered prompt whole."""

from __future__ import annotations

from harness.engine.requests import WorkRequest

MAX_LINES = 12
MAX_LINE_CHARS = 160


def preview(request: WorkRequest) -> list[str]:
    """A header naming the item and its line, then the rendered text or each chat message."""
    item = request.item
    header = f"--- {item.id} ({item.location}), {request.target.label}"
    prompt = request.prompt
    if prompt.text is not None:
        return [header, *shorten(prompt.text, MAX_LINES)]
    lines = [header]
    for message in prompt.messages:
        lines.append(f"[{message.role}]")
        lines.extend("  " + line for line in shorten(message.content, MAX_LINES // 2))
    return lines


def shorten(text: str, max_lines: int) -> list[str]:
    """The text's lines, each cut at MAX_LINE_CHARS; a long text keeps its head and its tail (the
    tail is where the item usually is, after instructions and few-shot examples)."""
    lines = text.split("\n")
    if len(lines) > max_lines:
        head = max_lines // 3
        tail = max_lines - head - 1
        lines = lines[:head] + [f"... {len(lines) - head - tail} more lines ..."] + lines[-tail:]
    return [line if len(line) <= MAX_LINE_CHARS
            else f"{line[:MAX_LINE_CHARS]}... (+{len(line) - MAX_LINE_CHARS} chars)" for line in lines]
