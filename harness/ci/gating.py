"""One affected suite through CI: its sample run (new, resumed, or a finished run of the same
work taken as it is), the gate against its baseline for every target, and that run's reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from harness.ci.selection import SuiteWork
from harness.compare.verdict_kind import Verdict
from harness.runs.gate_record import GateRecord


@dataclass
class TargetGate:
    target: str
    record: GateRecord
    document: object
    """The ReportDocument the Markdown and JUnit render from."""
    html: Path


@dataclass
class SuiteResult:
    work: SuiteWork
    run_folder: Path | None = None
    how: str = ""
    """new run, resumed run, or the finished run reused."""
    gates: list[TargetGate] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.work.loaded.spec.name

    @property
    def verdict(self) -> Verdict | None:
        """The most severe verdict over the targets; None for a skipped suite."""
        if not self.gates:
            return None
        return max((g.record.verdict for g in self.gates), key=lambda v: v.severity)


class SuiteInterrupted(Exception):
    """Ctrl-C or a cancelled CI job while a suite's sample ran; what finished is stored."""

    def __init__(self, suite: str, stop) -> None:
        super().__init__(suite)
        self.suite, self.stop = suite, stop


def run_and_gate(work: SuiteWork, reports_dir: Path | None, console: Console) -> SuiteResult:
    """Runs (or resumes, or reuses) the suite's sample, gates every target, writes report.html,
    report.md and report.junit.xml into the run folder."""
    result = SuiteResult(work)
    if work.skipped is not None:
        return result
    folder, reused = _sample_run(work, reports_dir, console)
    result.run_folder, result.how = folder, _how(folder, reused)
    result.gates = gate_run(work, folder, reports_dir)
    return result


def _how(folder: Path, reused: bool) -> str:
    """The run as the summary names it: its status, where a sequential sample stopped, reuse."""
    from harness.runs.manifest import read_manifest

    manifest = read_manifest(folder)
    stops = [look for look in manifest.looks if look.get("stop")]
    status = (f"stopped early at look {stops[0]['look']}/{stops[0]['of']}, {stops[0]['items']} items" if stops
              else manifest.status)
    return f"run {manifest.run_id} ({status})" + ("; reused: same work, nothing sent" if reused else "")


def _sample_run(work: SuiteWork, reports_dir: Path | None, console: Console) -> tuple[Path, bool]:
    """The run folder, and whether it was a finished run reused as it is."""
    if work.reuse is not None:
        console.print(f"{work.loaded.spec.name}: run {work.reuse.name} already holds this sample; gating it "
                      "without sending anything")
        return work.reuse, True
    from harness.compare.sequential import sequential_monitor
    from harness.execute import RunInterrupted, RunOptions, execute
    from harness.plan import RunPlan

    plan = work.plan
    assert isinstance(plan, RunPlan)
    console.print(f"{plan.suite.spec.name}: {plan.item_count} items x {len(plan.suite.spec.targets)} target(s) x "
                  f"{plan.suite.spec.epochs} epoch(s) = {plan.request_count} requests; prompt {plan.prompt.label} "
                  f"({plan.prompt.fingerprint[:12]})")
    try:
        # A re-triggered job resumes an unfinished sample, giving what failed for a reason a retry
        # may fix (an outage, exhausted retries, a key fixed since) another round.
        outcome = execute(plan, RunOptions(force_new=work.force_new, reports_dir=reports_dir,
                                           monitor=sequential_monitor(plan), retry_worthwhile=True), console)
    except RunInterrupted as stop:
        raise SuiteInterrupted(plan.suite.spec.name, stop) from None
    console.print(f"{plan.suite.spec.name}: run {outcome.manifest.run_id}: {outcome.manifest.status}")
    return outcome.folder, False


def gate_run(work: SuiteWork, folder: Path, reports_dir: Path | None) -> list[TargetGate]:
    """The gate for each target of the run, recorded in its folder as `evalbatch gate` records it."""
    from harness.commands.report import FILE_NAMES, render
    from harness.compare.gate_decision import hold_to_run_policy, judge
    from harness.compare.sources import SourceOptions
    from harness.report.report_data import ReportOptions, gather
    from harness.runs.files import write_atomically
    from harness.runs.gate_record import write_gate_record
    from harness.runs.manifest import read_manifest

    labels = [t.label for t in read_manifest(folder).targets]
    gates = []
    for label in labels:
        target = label if len(labels) > 1 else None
        inputs, _, record = judge(str(folder), SourceOptions(None, reports_dir, target, work.loaded.path))
        record = hold_to_run_policy(inputs, record, None)
        write_gate_record(folder, record)
        data = gather(str(folder), ReportOptions(reports_dir=reports_dir, target=target,
                                                 suite_path=work.loaded.path))
        paths = {}
        for fmt in ("html", "md", "junit"):
            name = FILE_NAMES[fmt] if target is None else FILE_NAMES[fmt].replace("report.", f"report.{label}.", 1)
            paths[fmt] = folder / name
            write_atomically(paths[fmt], render(data, fmt))
        gates.append(TargetGate(label, record, data.document, paths["html"]))
    return gates
