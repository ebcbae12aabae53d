"""From a suite file to the exact list of requests a run will send, with nothing sent yet.

All bad input (suite, prompt, dataset, slices, template variables) surfaces here as a
UserError, before a run folder is created or a provider is contacted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from harness.config.datasets import Dataset, Item, load_dataset_items, sample_items, select_slices, slice_fingerprint
from harness.config.loader import LoadedSuite, load_suite
from harness.config.problems import InputProblems
from harness.config.prompts import PromptVersion
from harness.engine.requests import WorkRequest, build_requests
from harness.errors import UserError
from harness.scoring.registry import BoundScorer, ScoringContext, bind_scorers, check_expected_answers


@dataclass(frozen=True)
class PlanOptions:
    slices: tuple[str, ...] = ()
    limit: int | None = None
    prompt_version: str | None = None
    sample: int | None = None


@dataclass(frozen=True)
class RunPlan:
    suite: LoadedSuite
    prompt: PromptVersion
    dataset: Dataset
    evaluated: list[str]
    items: list[Item]
    requests: list[WorkRequest]
    scorers: list[BoundScorer]
    options: PlanOptions = PlanOptions()

    @cached_property
    def items_by_id(self) -> dict[str, Item]:
        return {item.id: item for item in self.items}

    @cached_property
    def work_fingerprint(self) -> str:
        """Two plans with the same requests are the same work: a rerun resumes instead of starting over.
        A request ID names its item, not the item's text, so each request's payload (the rendered
        prompt and the generation settings) counts too: a record edited between an interrupt and
        a rerun makes new work instead of mixing outputs of two datasets in one run."""
        requests = "\n".join(sorted(f"{r.request_id} {_payload_hash(r)}" for r in self.requests))
        return hashlib.sha256(f"{self.suite.spec.name}\n{requests}".encode()).hexdigest()

    @cached_property
    def slice_fingerprint(self) -> str:
        return slice_fingerprint(self.dataset, self.suite.spec.slices, self.items)


def _payload_hash(request: WorkRequest) -> str:
    canonical = json.dumps(request.payload(), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def plan_run(suite_path: str | Path, options: PlanOptions = PlanOptions()) -> RunPlan:
    suite = load_suite(suite_path)
    spec = suite.spec
    evaluated = list(dict.fromkeys(options.slices or spec.evaluated_slices))  # repeated names count once
    unknown = [name for name in evaluated if name not in {s.name for s in spec.slices}]
    if unknown:
        raise UserError(f"unknown slice(s) {unknown}; the suite defines {[s.name for s in spec.slices]}",
                        file=str(suite.path))
    prompt = PromptVersion(suite.prompts_dir, spec.prompt.name, options.prompt_version or spec.prompt.version)
    scorers = bind_scorers(spec.scorers, ScoringContext(suite_dir=suite.path.parent))
    # Bad records are collected, not raised one at a time: the user sees every one in one pass.
    problems = InputProblems()
    dataset = load_dataset_items(spec.dataset, suite.resolve, problems)
    items = _selected_items(suite, dataset, evaluated, options, problems)
    requests = build_requests(items, prompt, spec.targets, spec.epochs, problems)
    check_expected_answers(scorers, items, problems)
    problems.raise_if_any()
    return RunPlan(suite, prompt, dataset, evaluated, items, requests, scorers, options)


def _selected_items(suite: LoadedSuite, dataset: Dataset, evaluated: list[str], options: PlanOptions,
                    problems: InputProblems) -> list[Item]:
    """The items the run covers; a selection that fails (say, a slice left empty because its
    records were unreadable) is reported together with the problems already found."""
    try:
        items = select_slices(dataset, suite.spec.slices, evaluated)
        if options.sample is not None:
            gate_sample = suite.spec.gate.sample
            if gate_sample.stratify_by and any(gate_sample.stratify_by not in i.fields for i in items):
                raise UserError(f"gate.sample.stratify_by names field {gate_sample.stratify_by!r}, which the "
                                "records do not all have", file=str(suite.path))
            items = sample_items(items, options.sample, gate_sample.stratify_by, gate_sample.seed)
    except UserError as exc:
        problems.add_error(exc)
        raise problems.error() from None
    return items[:options.limit] if options.limit is not None else items
