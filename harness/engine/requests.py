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
from harness.config.problems import InputProblems
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


def build_requests(items: list[Item], prompt: PromptVersion, targets: list[TargetSpec], epochs: int,
                   problems: InputProblems | None = None) -> list[WorkRequest]:
    """Records the prompt cannot be rendered for go to `problems` and get no requests; without a
    collector they raise here, all together."""
    own = problems if problems is not None else InputProblems()
    rendered = render_items(items, prompt, own)
    if problems is None:
        own.raise_if_any()
    return [
        WorkRequest(request_id(item.id, prompt, target, sample), item, target, sample, rendered[item.id])
        for target in targets for item in items if item.id in rendered for sample in range(epochs)
    ]


def render_items(items: list[Item], prompt: PromptVersion, problems: InputProblems) -> dict[str, RenderedPrompt]:
    """The prompt rendered for every item that has what the template needs; each one that has not
    (a missing variable, a value the template cannot use) is a problem naming its line."""
    rendered = {}
    for item in items:
        missing = sorted(name for name in prompt.variables if item.fields.get(name) is None)
        if missing:
            problems.add(f"missing {', '.join(missing)}, which the prompt {prompt.label} uses",
                         file=item.source, location=f"{item.location} (id {item.id!r})",
                         hint=f"the prompt {prompt.label} uses {sorted(prompt.variables)}")
            continue
        try:
            rendered[item.id] = prompt.render(item.fields)
        except UserError as exc:
            problems.add(f"{exc.message} in {exc.file}", file=item.source, location=f"{item.location} (id {item.id!r})")
    return rendered
