"""Token counts of a request before it is sent: for rate limits (TPM) and cost estimates.

OpenAI models are counted with their own tokenizer (cl100k or o200k, from `bpe-openai`, offline).
Every other model gets chars/4 rounded up: the usual rule of thumb, which a reply's reported
usage later corrects. `bpe_openai` is imported on the first count, not with this module: its
import takes ~0.5 s, which commands that never count tokens should not pay.
"""

from __future__ import annotations

import math
import re
import warnings
from functools import cache
from typing import TYPE_CHECKING, Final

from harness.config.prompts import RenderedPrompt
from harness.config.suite import TargetSpec

if TYPE_CHECKING:
    from bpe_openai import Encoding

# Model-name prefixes and their encodings; the longest matching prefix wins, so gpt-4o (o200k)
# is told apart from gpt-4 (cl100k). Sources: tiktoken's MODEL_PREFIX_TO_ENCODING and OpenAI's
# model pages (every model since gpt-4o uses o200k).
_ENCODING_BY_PREFIX: Final = {
    "gpt-5": "o200k_base",
    "gpt-4.1": "o200k_base",
    "gpt-4.5": "o200k_base",
    "gpt-4o": "o200k_base",
    "chatgpt-4o": "o200k_base",
    "o1": "o200k_base",
    "o3": "o200k_base",
    "o4": "o200k_base",
    "gpt-4": "cl100k_base",
    "gpt-3.5": "cl100k_base",
    "text-embedding-3": "cl100k_base",
    "text-embedding-ada-002": "cl100k_base",
}

# OpenAI's chat format wraps each message in a few tokens (role, separators), and the reply is
# primed with 3 more; figures from OpenAI's cookbook ("How to count tokens with tiktoken").
# Anthropic's overhead is unpublished; the same figures stand in for it.
TOKENS_PER_MESSAGE: Final = 3
TOKENS_PER_ROLE: Final = 1
"""The role's own name (user, system, assistant: one token each), which the cookbook counts as
part of the message's content."""
TOKENS_REPLY_PRIMING: Final = 3

CHARS_PER_TOKEN: Final = 4


@cache  # a handful of model names, looked up for every request the engine paces
def encoding_name(model: str) -> str | None:
    """The tokenizer of an OpenAI model, by the longest known name prefix; None for other models."""
    name = model.lower().rsplit("/", 1)[-1]  # "openai/gpt-4o" as some gateways spell it
    matches = [prefix for prefix in _ENCODING_BY_PREFIX if _has_prefix(name, prefix)]
    return _ENCODING_BY_PREFIX[max(matches, key=len)] if matches else None


def _has_prefix(name: str, prefix: str) -> bool:
    # "o1" must not claim a model called "o10x": the prefix ends at a separator or the name's end.
    return name == prefix or (name.startswith(prefix) and not re.match(r"[a-z0-9]", name[len(prefix)]))


@cache
def _encoder(name: str) -> Encoding:
    with warnings.catch_warnings():
        # bpe_openai reads its data (on import) with a deprecated importlib call: its problem,
        # not the user's.
        warnings.simplefilter("ignore", DeprecationWarning)
        import bpe_openai  # deferred: see the module docstring

        return bpe_openai.get_encoding(name)


def count_text_tokens(model: str, text: str, tokenizer: bool = True) -> int:
    """Tokens of `text` for `model`: its own tokenizer where one is known (and `tokenizer`), else
    chars/4 rounded up."""
    name = encoding_name(model) if tokenizer else None
    if name is None:
        return math.ceil(len(text) / CHARS_PER_TOKEN)
    # encode_ordinary: text such as "<|endoftext|>" in a record is plain text, not a special token.
    return len(_encoder(name).encode_ordinary(text))


def estimate_prompt_tokens(target: TargetSpec, payload_text: str, tokenizer: bool = True) -> int:
    """Tokens of the prompt text sent to `target` (no message overhead, no output)."""
    return count_text_tokens(target.model, payload_text, tokenizer)


def estimate_request_tokens(target: TargetSpec, rendered_prompt: RenderedPrompt) -> int:
    """What a tokens-per-minute limit counts for one request in the worst case: the prompt's
    tokens, the chat format's per-message overhead, and all of max_tokens. A completion prompt is
    sent to chat APIs as one user message, so it carries one message's overhead too."""
    return prompt_side_tokens(target, rendered_prompt) + target.params.max_tokens


def prompt_side_tokens(target: TargetSpec, rendered_prompt: RenderedPrompt, tokenizer: bool = True) -> int:
    """The input tokens a request is expected to be billed for: prompt text plus message overhead.
    tokenizer=False counts chars/4 for every model: the engine's estimate where no token limit is
    declared, which only limits learned from replies use, once the reported usage has scaled it
    (LanePacer.prompt_ratio). Loading a tokenizer costs ~0.8 s of start-up."""
    if rendered_prompt.text is not None:
        contents = [rendered_prompt.text]
    else:
        contents = [message.content for message in rendered_prompt.messages]
    text_tokens = sum(estimate_prompt_tokens(target, content, tokenizer) for content in contents)
    return text_tokens + (TOKENS_PER_MESSAGE + TOKENS_PER_ROLE) * len(contents) + TOKENS_REPLY_PRIMING
