"""From a suite file to the requests a run will send, with nothing sent yet.

All bad input (suite, prompt, dataset, slices, template variables) surfaces here as a
UserError, before a run folder is created or a provider is contacted: a checking pass streams
the whole dataset and collects every problem. A small run's plan keeps the items and prompts
that pass rendered (`KeptItems`, bounded); a larger plan holds no item and no request:
`items()` and `requests()` read the dataset again, so a run's memory does not grow with its size.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.config.datasets import DatasetFile, Item, SliceDigest, open_dataset, scan_dataset
from harness.config.loader import LoadedSuite, load_suite
from harness.config.problems import InputProblems
from harness.config.prompts import PromptVersion, RenderedPrompt
from harness.config.selection import Picker, RunSample, SliceCounts, SliceSelection, count_selected, take
from harness.config.suite import TargetSpec
from harness.engine.requests import WorkRequest, item_requests, payload_hash, render_item
from harness.errors import UserError
from harness.scoring.registry import BoundScorer, ScoringContext, bind_scorers, check_expected_answers


@dataclass(frozen=True)
class PlanOptions:
    slices: tuple[str, ...] = ()
    limit: int | None = None
    prompt_version: str | None = None
    sample: int | None = None


@dataclass(frozen=True)
class PlanTally:
    """What the checking pass counted over the run's work."""

    item_count: int
    request_count: int
    work_fingerprint: str
    slice_fingerprint: str
    shared_payloads: bool = True
    """Whether two requests render the same prompt: only then can one request of the run be
    answered by another (see harness.engine.reuse), whatever their targets."""


@dataclass(frozen=True)
class ItemChoice:
    """How the run's items are picked from the dataset's stream: the evaluated slices, then the
    --sample (positions drawn from counts), then the first --limit."""

    slices: SliceSelection
    sample: RunSample | None = None
    sample_counts: tuple[int, Counter[str]] = (0, Counter())
    limit: int | None = None

    def apply(self, items: Iterator[Item]) -> Iterator[Item]:
        picker = None
        if self.sample is not None:  # fresh for each pass: a picker counts the positions it has seen
            total, strata = self.sample_counts
            picker = Picker(total, sample=self.sample.size, stratify_by=self.sample.stratify_by, strata=strata,
                            seed=self.sample.seed)
        return take(self.slices.apply(items), picker, self.limit)


class KeptItems:
    """The checking pass's items with their rendered prompts (None: the item did not render), kept
    while they are few and small: planning a small run then reads and renders its dataset once
    instead of again for storing it. Past either bound nothing is kept (`pairs` is None) and the
    plan streams the dataset again, so memory stays bounded however large the run."""

    MAX_ITEMS = 10_000
    MAX_CHARS = 8_000_000
    """Text held (fields and rendered prompts): tens of MB of Python objects at most."""

    def __init__(self) -> None:
        self.pairs: list[tuple[Item, RenderedPrompt | None]] | None = []
        self.chars = 0

    def add(self, item: Item, rendered: RenderedPrompt | None) -> None:
        if self.pairs is None:
            return
        self.chars += _text_size(item, rendered)
        if len(self.pairs) >= self.MAX_ITEMS or self.chars > self.MAX_CHARS:
            self.pairs = None  # too large to keep: stream instead
            return
        self.pairs.append((item, rendered))


def _text_size(item: Item, rendered: RenderedPrompt | None) -> int:
    """About how many characters an item and its prompt hold (a nested value: its JSON's length)."""
    size = sum(len(value) if isinstance(value, str) else _nested_size(value) for value in item.fields.values())
    if rendered is not None:
        size += len(rendered.text) if rendered.text is not None else sum(len(m.content) for m in rendered.messages)
    return size


def _nested_size(value: object) -> int:
    if value is None or isinstance(value, (bool, int, float)):
        return 8
    return len(json.dumps(value, default=str))


@dataclass(frozen=True)
class RunPlan:
    suite: LoadedSuite
    prompt: PromptVersion
    dataset: DatasetFile
    evaluated: list[str]
    scorers: list[BoundScorer]
    choice: ItemChoice
    tally: PlanTally
    options: PlanOptions = field(default_factory=PlanOptions)
    kept: list[tuple[Item, RenderedPrompt | None]] | None = None
    """The checking pass's items and prompts when the run is small (`KeptItems`); else None."""

    @property
    def item_count(self) -> int:
        return self.tally.item_count

    @property
    def request_count(self) -> int:
        return self.tally.request_count

    @property
    def population(self) -> int | None:
        """Items the evaluated slices hold, before --sample or --limit took some of them; None
        after a --limit without --sample (the limit stops reading early, so it is not counted)."""
        if self.choice.sample is not None:
            return self.choice.sample_counts[0]
        return self.item_count if self.choice.limit is None else None

    @property
    def work_fingerprint(self) -> str:
        """Two plans with the same requests are the same work: a rerun resumes instead of starting over.
        A request ID names its item, not the item's text, so each request's payload (the rendered
        prompt and the generation settings) counts too: a record edited between an interrupt and
        a rerun makes new work instead of mixing outputs of two datasets in one run."""
        return self.tally.work_fingerprint

    @property
    def slice_fingerprint(self) -> str:
        return self.tally.slice_fingerprint

    def items(self) -> Iterator[Item]:
        """The run's items in dataset order (read from the dataset again unless kept)."""
        if self.kept is not None:
            return (item for item, _ in self.kept)
        return self.choice.apply(self.dataset.items())

    def requests(self, target: TargetSpec | None = None) -> Iterator[WorkRequest]:
        """The run's requests (of one target, or of each target in turn), rendered as they stream:
        per target, item by item, each item's samples in order."""
        for each in [target] if target is not None else self.suite.spec.targets:
            for item, rendered in self._rendered_items():
                if rendered is not None:
                    yield from item_requests(item, rendered, self.prompt, each, self.suite.spec.epochs)

    def _rendered_items(self) -> Iterator[tuple[Item, RenderedPrompt | None]]:
        if self.kept is not None:
            return iter(self.kept)
        # Checked: every item renders, so no problem is collected here.
        return ((item, render_item(item, self.prompt, InputProblems())) for item in self.items())


def batches(values: Iterator, size: int) -> Iterator[list]:
    """`values` `size` at a time."""
    batch: list = []
    for value in values:
        batch.append(value)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


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
    dataset = open_dataset(spec.dataset, suite.resolve)
    counts = scan_dataset(dataset, spec.slices, problems)
    choice = _item_choice(suite, dataset, counts, evaluated, options, problems)
    kept = KeptItems()
    tally = _check_work(suite, dataset, prompt, scorers, choice, problems, kept)
    problems.raise_if_any()
    return RunPlan(suite, prompt, dataset, evaluated, scorers, choice, tally, options, kept.pairs)


def _item_choice(suite: LoadedSuite, dataset: DatasetFile, counts: SliceCounts, evaluated: list[str],
                 options: PlanOptions, problems: InputProblems) -> ItemChoice:
    """How the run picks its items; a selection that fails (say, a slice left empty because its
    records were unreadable) is reported together with the problems already found."""
    try:
        slices = SliceSelection(suite.spec.slices, evaluated, counts, dataset.source)
        if options.sample is None:
            return ItemChoice(slices, limit=options.limit)
        gate_sample = suite.spec.gate.sample
        total, strata, all_have = count_selected(slices.apply(dataset.items()), gate_sample.stratify_by)
        if not all_have:
            raise UserError(f"gate.sample.stratify_by names field {gate_sample.stratify_by!r}, which the "
                            "records do not all have", file=str(suite.path))
        sample = RunSample(options.sample, gate_sample.stratify_by, gate_sample.seed)
        return ItemChoice(slices, sample, (total, strata), options.limit)
    except UserError as exc:
        problems.add_error(exc)
        raise problems.error() from None


class _WorkFingerprint:
    """The SHA-256 of the suite's name and the sorted lines "request_id payload_hash" (the value
    runs have always recorded). The lines are sorted by SQLite in a private temporary file, so the
    sort never holds a run's lines in memory."""

    def __init__(self) -> None:
        self.db = sqlite3.connect("")  # private, on disk beyond its page cache, deleted on close
        self.db.execute("CREATE TABLE lines (line TEXT NOT NULL, prompt INTEGER NOT NULL)")
        self.pending: list[tuple[str, int]] = []
        self.count = 0

    def add(self, request: WorkRequest) -> None:
        prompt = request.prompt
        # Two requests can share an answer only if they render the same prompt: the provider body
        # dedupe keys on holds it whole, and targets' differences may not reach the body (a seed
        # Anthropic does not send, a base URL written two ways). So the prompt alone is compared,
        # by its in-process hash: a collision only keeps dedupe on.
        self.pending.append((f"{request.request_id} {payload_hash(request)}", hash((prompt.text, prompt.messages))))
        self.count += 1
        if len(self.pending) >= 5000:
            self._flush()

    def _flush(self) -> None:
        self.db.executemany("INSERT INTO lines(line, prompt) VALUES (?, ?)", self.pending)
        self.pending.clear()

    def shared_payloads(self) -> bool:
        self._flush()
        return self.db.execute(
            "SELECT EXISTS (SELECT 1 FROM lines GROUP BY prompt HAVING COUNT(*) > 1)").fetchone()[0] == 1

    def hexdigest(self, suite_name: str) -> str:
        self._flush()
        digest = hashlib.sha256(f"{suite_name}\n".encode())
        # ORDER BY on TEXT compares UTF-8 bytes: the order of Python's sorted() on the same strings.
        for index, (line,) in enumerate(self.db.execute("SELECT line FROM lines ORDER BY line")):
            digest.update((f"\n{line}" if index else line).encode())
        self.db.close()
        return digest.hexdigest()


def _check_work(suite: LoadedSuite, dataset: DatasetFile, prompt: PromptVersion, scorers: list[BoundScorer],
                choice: ItemChoice, problems: InputProblems, kept: KeptItems) -> PlanTally:
    """The checking pass over the run's items: each renders and holds what each scorer compares
    with (problems in the order a whole-list check reports them: rendering first, then per
    scorer); counts and fingerprints are computed on the way."""
    spec = suite.spec
    render_problems = InputProblems()
    answer_problems = [InputProblems() for _ in scorers]
    work = _WorkFingerprint()
    items = 0
    slice_digest = SliceDigest(dataset.fingerprint, spec.slices)
    for item in choice.apply(dataset.items()):
        items += 1
        slice_digest.add(item.id)
        rendered = render_item(item, prompt, render_problems)
        kept.add(item, rendered)
        for scorer, found in zip(scorers, answer_problems, strict=True):
            check_expected_answers([scorer], [item], found)
        if rendered is None:
            continue
        for target in spec.targets:
            for request in item_requests(item, rendered, prompt, target, spec.epochs):
                work.add(request)
    for found in (render_problems, *answer_problems):
        problems.found.extend(found.found)
    shared = work.shared_payloads()
    return PlanTally(items, work.count, work.hexdigest(spec.name), slice_digest.hexdigest(), shared)
