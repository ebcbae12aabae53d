"""Which suites CI gates and on how many items: the affected suites (`suite_changes`), each
one's pre-rollout sample (the --sample given, else the power plan from its baseline) and what
that sample would cost, all decided before anything is sent.

The rules a reviewer can rely on:
- A suite is affected when a file it depends on (suite, prompt, includes, schemas, dataset), a
  target setting, or its baseline file differs from --base (or, without --base, from what its
  baseline froze).
- An affected suite without a baseline is skipped with a note: there is nothing to gate it
  against, and running it would spend money on a verdict that cannot exist. It does not change
  the exit code; `evalbatch baseline set` makes it gateable.
- The sample size is --sample N, else the power plan's items to show non-inferiority at the
  gate's margin with 80% power if nothing changed (the sequential design's maximum when
  gate.sample.sequential), at most the items of the evaluated slices. Stratification and seed
  come from gate.sample.
- Work already paid for is not paid again: a finished run of exactly the same requests (same
  sample, prompt text, data and settings) under the same gate policy is gated as it is (unless
  it is the baseline's own run), and an unfinished one is resumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.commands.changed import GitRevision, SuiteChange, default_suites_dir, suite_changes, suite_files
from harness.config.loader import LoadedSuite, load_suite
from harness.errors import UserError

POWER = 0.8
"""The power the planned sample has to show non-inferiority when nothing changed."""


@dataclass(frozen=True)
class CiOptions:
    suites_dir: Path | None = None
    base_ref: str | None = None
    budget: float | None = None
    sample: int | None = None
    reports_dir: Path | None = None
    """Where runs go (default: each suite's output.dir, or <project>/reports)."""


@dataclass
class SampleChoice:
    size: int
    available: int
    why: str

    @property
    def label(self) -> str:
        if self.size >= self.available:
            return f"all {self.available} items ({self.why})"
        return f"{self.size} of {self.available} items ({self.why})"


@dataclass
class SuiteWork:
    """One affected suite as CI will handle it: skipped (with why), or its planned sample."""

    change: SuiteChange
    loaded: LoadedSuite
    skipped: str | None = None
    plan: object | None = None
    """The RunPlan of the sample (typed loosely: the engine is imported only once work is planned)."""
    sample: SampleChoice | None = None
    reuse: Path | None = None
    """A finished run of the same work, gated instead of running again."""
    force_new: bool = False
    """An unfinished run of the same work exists but under another gate policy: start anew."""
    estimate_usd: float | None = 0.0
    """At most this (every reply as long as max_tokens allows); None when a target has no price."""
    unpriced: list[str] = field(default_factory=list)


@dataclass
class Selection:
    suites_dir: Path
    project_dir: Path
    base_ref: str | None
    total_suites: int
    work: list[SuiteWork]

    @property
    def to_run(self) -> list[SuiteWork]:
        return [w for w in self.work if w.skipped is None]

    @property
    def estimate_usd(self) -> float | None:
        costs = [w.estimate_usd for w in self.to_run]
        return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)


def find_suites_dir(given: Path | None, cwd: Path) -> Path:
    """SUITES_DIR as given, else the suites/ of the project around the current directory."""
    return given.resolve() if given is not None else default_suites_dir(cwd.resolve())


def select(options: CiOptions, cwd: Path) -> Selection:
    """The affected suites, each planned (sample, reuse, estimate) or skipped; nothing is sent."""
    folder = find_suites_dir(options.suites_dir, cwd)
    suites = [load_suite(path) for path in suite_files(folder)]
    git = GitRevision(folder, options.base_ref) if options.base_ref else None
    work = []
    for loaded in suites:
        change = suite_changes(loaded, git)
        if not change.reasons and (git is not None or change.has_baseline):
            continue  # without --base, a suite without a baseline cannot be told unchanged: it is listed
        if not change.has_baseline:
            work.append(SuiteWork(change, loaded, skipped=f"no baseline at {change.baseline}: nothing to gate "
                                  f"against; set one with: evalbatch baseline set {change.file} --from RUN_ID"))
            continue
        work.append(plan_work(change, loaded, options))
    return Selection(folder, folder.parent, options.base_ref, len(suites), work)


def plan_work(change: SuiteChange, loaded: LoadedSuite, options: CiOptions) -> SuiteWork:
    from harness.compare.baseline import baseline_path, load_baseline
    from harness.plan import PlanOptions, plan_run

    spec = loaded.spec
    baseline = load_baseline(baseline_path(loaded.project_dir, spec.name, spec.gate.baseline)).snapshot
    sample = choose_sample(loaded, baseline, options.sample)
    plan = plan_run(loaded.path, PlanOptions(sample=sample.size))
    _check_comparable(loaded, baseline, plan)
    work = SuiteWork(change, loaded, plan=plan, sample=sample)
    work.reuse, work.force_new = _earlier_work(plan, options.reports_dir, baseline.run_id)
    if work.reuse is None:
        work.estimate_usd, work.unpriced = _estimate(plan)
    return work


def choose_sample(loaded: LoadedSuite, baseline, explicit: int | None) -> SampleChoice:
    """--sample N, else the power plan's items for every primary metric (the largest), capped at
    the items the baseline evaluated (the evaluated slices)."""
    from harness.compare.planning import PlanRequest, plan_metric

    available = len(baseline.items)
    if explicit is not None:
        return SampleChoice(min(explicit, available), available, "--sample")
    gate = loaded.spec.gate
    looks = gate.sample.looks if gate.sample.sequential else None
    needed: list[tuple[int, str]] = []
    for gated in gate.primary_metrics(baseline.metrics):
        if gated.metric not in baseline.metrics:
            raise UserError(f"the baseline has no scores for gate metric {gated.metric!r}", file=str(loaded.path),
                            location="gate.primary")
        planned = plan_metric(baseline, None, gated, PlanRequest(gated.margin, POWER), gate.alpha, looks)
        items = planned.sequential_items if looks else planned.non_inferiority_items
        if items is not None:
            needed.append((items, gated.metric))
    if not needed:
        return SampleChoice(available, available, "the power plan could not size it")
    most, metric = max(needed)
    design = f", sequential with {looks} looks" if looks else ""
    why = f"power plan: {most} for non-inferiority of {metric} at power {POWER:g}{design}"
    return SampleChoice(min(most, available), available, why)


def _check_comparable(loaded: LoadedSuite, baseline, plan) -> None:
    """Checked before anything is sent: a sample of other data or slices cannot be paired with
    the baseline's items, so its gate could never decide."""
    prints = baseline.fingerprints
    if prints.dataset != plan.dataset.fingerprint or set(prints.evaluated) != set(plan.evaluated):
        raise UserError(f"suite {loaded.spec.name}: its baseline is of other data or slices (slices "
                        f"{prints.evaluated}, data {prints.dataset[:12]}) than the suite now evaluates (slices "
                        f"{plan.evaluated}, data {plan.dataset.fingerprint[:12]}), so the gate cannot compare them",
                        file=str(loaded.path),
                        hint="a change of the dataset or slices needs a new baseline: run the suite and "
                             "`evalbatch baseline set` from it in the same pull request")


def _earlier_work(plan, reports_dir: Path | None, baseline_run: str) -> tuple[Path | None, bool]:
    """(a finished run of the same work under the same gate policy, whether an unfinished one
    of the same work must be left alone because its policy differs). The baseline's own run is
    never the candidate: compared with itself it would show no variation at all, which sampled
    outputs (temperature > 0) would not."""
    from harness.runs.locate import scan_runs, suite_runs_dir

    policy = plan.suite.spec.gate.fingerprint
    runs, _ = scan_runs(suite_runs_dir(plan.suite, reports_dir))
    force_new = False
    for folder, manifest in runs:  # newest first
        if manifest.work_fingerprint != plan.work_fingerprint or manifest.run_id == baseline_run:
            continue
        same_policy = manifest.gate_policy is not None and manifest.gate_policy.fingerprint == policy
        if manifest.status in _FINISHED and same_policy:
            return folder, False
        if manifest.status not in _FINISHED and not same_policy:
            force_new = True
    return None, force_new


_FINISHED = ("complete", "stopped_early")
"""A sequential sample that stopped early is finished: resuming it would send nothing."""


def _estimate(plan) -> tuple[float | None, list[str]]:
    from harness.cost.estimate import estimate_plan

    estimate = estimate_plan(plan)
    unpriced = [t.target for t in estimate.targets if t.realtime_usd is None]
    if unpriced:
        return None, unpriced
    return sum(t.realtime_usd or 0.0 for t in estimate.targets), []
