"""Units of work: item x prompt version x target x params x sample index, each with a stable ID.

Everything is rendered before anything is sent, so a template that cannot be filled for
some record is reported (with the record's line) while nothing has left the machine.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from harness.config.datasets import Item
from harness.config.prompts import PromptVersion, RenderedPrompt
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
                "params": self.target.params.model_dump(exclude_none=True)}


def request_id(item_id: str, prompt: PromptVersion, target: TargetSpec, sample_index: int) -> str:
    """Changes whenever anything that could change the output changes (including the prompt's text)."""
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


def build_requests(items: list[Item], prompt: PromptVersion, targets: list[TargetSpec],
                   epochs: int) -> list[WorkRequest]:
    _check_template_fields(items, prompt)
    rendered = {item.id: _render(prompt, item) for item in items}
    return [
        WorkRequest(request_id(item.id, prompt, target, sample), item, target, sample, rendered[item.id])
        for target in targets for item in items for sample in range(epochs)
    ]


def _check_template_fields(items: list[Item], prompt: PromptVersion) -> None:
    problems = []
    for item in items:
        missing = sorted(name for name in prompt.variables if item.fields.get(name) is None)
        if missing:
            problems.append(f"{item.location} (id {item.id!r}): missing {', '.join(missing)}")
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise UserError(f"{len(problems)} record(s) lack fields the prompt {prompt.label} needs: {shown}",
                        hint=f"the template uses {sorted(prompt.variables)}")


def _render(prompt: PromptVersion, item: Item) -> RenderedPrompt:
    try:
        return prompt.render(item.fields)
    except UserError as exc:
        raise UserError(f"{exc.message} (record at {item.location}, id {item.id!r})", file=exc.file) from None
