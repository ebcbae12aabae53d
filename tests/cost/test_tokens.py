"""Token estimates: OpenAI models through their own tokenizer, others by chars/4."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.config.prompts import ChatMessage, RenderedPrompt
from harness.config.suite import TargetSpec
from harness.cost.tokens import (
    TOKENS_PER_MESSAGE,
    TOKENS_PER_ROLE,
    TOKENS_REPLY_PRIMING,
    encoding_name,
    estimate_prompt_tokens,
    estimate_request_tokens,
)


def _target(model: str, provider: str = "openai", max_tokens: int = 50) -> TargetSpec:
    return TargetSpec(provider=provider, model=model, params={"max_tokens": max_tokens})


@pytest.mark.parametrize("model", ["gpt-4", "gpt-4-0613", "gpt-3.5-turbo"])
def test_cl100k_models_count_like_tiktoken(model):
    # 6 tokens, ids [83, 1609, 5963, 374, 2294, 0]: the count OpenAI's cookbook ("How to count
    # tokens with tiktoken") prints for this string with tiktoken's cl100k_base.
    assert encoding_name(model) == "cl100k_base"
    assert estimate_prompt_tokens(_target(model), "tiktoken is great!") == 6


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-mini-2024-07-18", "gpt-4.1-nano", "o3", "o4-mini", "gpt-5-mini"])
def test_o200k_models_count_like_tiktoken(model):
    # tiktoken's own test vectors for o200k_base (also used by js-tiktoken's tests):
    # "hello world" -> [24912, 2375]; " 日本語とEnglish 12345!\n" -> 8 ids
    # [17428, 40909, 5330, 28881, 220, 7633, 2548, 4175].
    assert encoding_name(model) == "o200k_base"
    assert estimate_prompt_tokens(_target(model), "hello world") == 2
    assert estimate_prompt_tokens(_target(model), " 日本語とEnglish 12345!\n") == 8


def test_the_longest_prefix_decides_the_tokenizer():
    assert encoding_name("gpt-4o-2024-08-06") == "o200k_base"
    assert encoding_name("gpt-4-turbo") == "cl100k_base"
    assert encoding_name("o10-preview") is None  # "o1" is no prefix of another name's first word


def test_special_token_text_in_a_record_is_counted_as_text():
    # A record may contain "<|endoftext|>": it is 7 ordinary tokens in o200k, never an error.
    assert estimate_prompt_tokens(_target("gpt-4o"), "<|endoftext|>") == 7


@pytest.mark.parametrize(("provider", "model"), [("anthropic", "claude-sonnet-4-5"), ("openai", "llama-3-8b-instruct"),
                                                 ("local", "gemma3-270m-q4_k_m")])
def test_other_models_count_chars_over_four_rounded_up(provider, model):
    target = _target(model, provider)
    assert encoding_name(model) is None
    assert estimate_prompt_tokens(target, "") == 0
    assert estimate_prompt_tokens(target, "abcd") == 1
    assert estimate_prompt_tokens(target, "abcde") == 2
    assert estimate_prompt_tokens(target, "x" * 401) == 101


def test_a_completion_request_counts_its_prompt_one_message_and_all_of_max_tokens():
    target = _target("gpt-4", max_tokens=50)
    tokens = estimate_request_tokens(target, RenderedPrompt(text="tiktoken is great!"))
    # As OpenAI's cookbook counts it: 6 for the text, 3 per message, 1 for the role "user", 3 priming.
    assert tokens == 6 + TOKENS_PER_MESSAGE + TOKENS_PER_ROLE + TOKENS_REPLY_PRIMING + 50


def test_a_chat_request_counts_each_message_and_its_overhead():
    target = _target("claude-haiku-4-5", provider="anthropic", max_tokens=7)
    messages = (ChatMessage("system", "x" * 40), ChatMessage("user", "y" * 9), ChatMessage("assistant", "ok"))
    tokens = estimate_request_tokens(target, RenderedPrompt(messages=messages))
    assert tokens == (10 + 3 + 1) + 3 * (TOKENS_PER_MESSAGE + TOKENS_PER_ROLE) + TOKENS_REPLY_PRIMING + 7


def test_importing_the_module_does_not_load_the_tokenizer_library():
    # A fresh interpreter: this test process has long imported bpe_openai through other tests.
    code = ("import sys, harness.cost.tokens as t; print('bpe_openai' in sys.modules);"
            "t.count_text_tokens('gpt-4o', 'hi'); print('bpe_openai' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True"]
