"""Units of work: item x prompt version x target x params x sample index, each with a stable ID.

Everything is rendered (and checked) before anything is sent, so a template that cannot be filled
for some record is reported (with the record's line) while nothing has left the machine; a run
renders its requests again, a batch at a time, as it stores them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from harness.config.datasets import Item
from harness.config.problems import InputProblems
from harness.config.prompts import ChatMessage, PromptVersion, RenderedPrompt
from harness.config.suite import TargetSpec
from harness.errors import UserError


@dataclass(frozen=True)
class WorkRequest:
    request_id: str
    item: Item
    target: TargetSpec
    sample_index: int
    prompt: RenderedPrompt

    def payload(self) -> dict[str, Any]:
        """What is stored with the request: the rendered prompt and the generation settings."""
        return {**self.prompt.as_dict(), "model": self.target.model, "provider": self.target.provider,
                "params": dict(_naming(None, self.target).params)}


def request_id(item_id: str, prompt: PromptVersion, target: TargetSpec, sample_index: int) -> str:
    """Changes whenever anything that could change the output changes (including the prompt's text)."""
    return _naming(prompt, target).request_id(item_id, sample_index)


def reference_request_id(item_id: str, prompt: PromptVersion, target: TargetSpec, sample_index: int) -> str:
    """`request_id` as defined: the SHA-256 of the canonical JSON of everything that names the
    request (`request_id` builds the same text from parts computed once per prompt and target)."""
    parts = {
        "item": item_id,
        "prompt": prompt.label,
        "prompt_fingerprint": prompt.fingerprint,
        "provider": target.provider,
        "model": target.model,
        "base_url": target.base_url,
        "params": target.params.model_dump(),
        "sample": sample_index,
    }
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return "r" + hashlib.sha256(canonical.encode()).hexdigest()[:23]


class _Naming:
    """What one prompt and target put into every request ID and payload, worked out once: the
    canonical JSON of `reference_request_id` is, with its keys sorted, base_url, then the item,
    then the fixed keys (model ... provider), then the sample last."""

    def __init__(self, prompt: PromptVersion | None, target: TargetSpec) -> None:
        self.params = target.params.model_dump(exclude_none=True)
        if prompt is None:
            return
        fixed = {"model": target.model, "params": target.params.model_dump(), "prompt": prompt.label,
                 "prompt_fingerprint": prompt.fingerprint, "provider": target.provider}
        self.head = json.dumps({"base_url": target.base_url}, separators=(",", ":"))[:-1] + ',"item":'
        self.middle = "," + json.dumps(fixed, sort_keys=True, separators=(",", ":"))[1:-1] + ',"sample":'

    def request_id(self, item_id: str, sample_index: int) -> str:
        canonical = f"{self.head}{json.dumps(item_id)}{self.middle}{int(sample_index)}}}"
        return "r" + hashlib.sha256(canonical.encode()).hexdigest()[:23]


_namings: dict[tuple[int, int], tuple[PromptVersion | None, TargetSpec, _Naming]] = {}


def _naming(prompt: PromptVersion | None, target: TargetSpec) -> _Naming:
    """Cached by identity (targets and prompts are few, and not changed once planned)."""
    key = (id(prompt), id(target))
    cached = _namings.get(key)
    if cached is None or cached[0] is not prompt or cached[1] is not target:
        if len(_namings) > 64:
            _namings.clear()
        cached = _namings[key] = (prompt, target, _Naming(prompt, target))
    return cached[2]


def build_requests(items: list[Item], prompt: PromptVersion, targets: list[TargetSpec], epochs: int,
                   problems: InputProblems | None = None) -> list[WorkRequest]:
    """Records the prompt cannot be rendered for go to `problems` and get no requests; without a
    collector they raise here, all together. For small lists: a run streams its requests
    (`item_requests`) instead."""
    own = problems if problems is not None else InputProblems()
    rendered = render_items(items, prompt, own)
    if problems is None:
        own.raise_if_any()
    return [request for target in targets for item in items if item.id in rendered
            for request in item_requests(item, rendered[item.id], prompt, target, epochs)]


def item_requests(item: Item, rendered: RenderedPrompt, prompt: PromptVersion, target: TargetSpec,
                  epochs: int) -> list[WorkRequest]:
    """One item's requests to one target: one per sample."""
    return [WorkRequest(request_id(item.id, prompt, target, sample), item, target, sample, rendered)
            for sample in range(epochs)]


def render_items(items: list[Item], prompt: PromptVersion, problems: InputProblems) -> dict[str, RenderedPrompt]:
    """The prompt rendered for every item that has what the template needs (see `render_item`)."""
    rendered = {}
    for item in items:
        prompt_text = render_item(item, prompt, problems)
        if prompt_text is not None:
            rendered[item.id] = prompt_text
    return rendered


def render_item(item: Item, prompt: PromptVersion, problems: InputProblems) -> RenderedPrompt | None:
    """The prompt rendered for the item, or None when the item has not what the template needs (a
    missing variable, a value the template cannot use): then a problem naming its line."""
    missing = sorted(name for name in prompt.variables if item.fields.get(name) is None)
    if missing:
        problems.add(f"missing {', '.join(missing)}, which the prompt {prompt.label} uses",
                     file=item.source, location=f"{item.location} (id {item.id!r})",
                     hint=f"the prompt {prompt.label} uses {sorted(prompt.variables)}")
        return None
    try:
        return prompt.render(item.fields)
    except UserError as exc:
        problems.add(f"{exc.message} in {exc.file}", file=item.source, location=f"{item.location} (id {item.id!r})")
        return None


def payload_hash(request: WorkRequest) -> str:
    """The SHA-256 of the request's stored payload (canonical JSON)."""
    canonical = json.dumps(request.payload(), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def prompt_of_payload(payload: dict[str, Any]) -> RenderedPrompt:
    """The rendered prompt a stored payload holds (the inverse of RenderedPrompt.as_dict)."""
    if "messages" in payload:
        return RenderedPrompt(messages=tuple(ChatMessage(m["role"], m["content"]) for m in payload["messages"]))
    return RenderedPrompt(text=payload.get("prompt"))
