"""The CI gate as pytest tests: `pytest --evalbatch suites/` collects each suite file's gate
checks (one item per primary metric, one per guardrail, and the overall verdict), runs the
suite's pre-rollout sample and gate once per session, and fails a check with the gate's reasons.

The same rules as `evalbatch ci` (harness/ci/selection.py): only suites affected since
--evalbatch-base (or since their baseline) run; unaffected suites and suites without a baseline
are skipped with the reason; --evalbatch-budget is checked against all collected suites' samples
before anything is sent.

Registered through the `pytest11` entry point, so it is loaded into every pytest session of an
environment with evalbatch installed: it imports nothing beyond pytest until --evalbatch is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

_SESSION_KEY = pytest.StashKey["_GateSession"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("evalbatch", "evalbatch prompt-regression gate")
    group.addoption("--evalbatch", action="store_true", default=False,
                    help="Collect the gate checks of the evalbatch suite files (*.yaml) in the given paths.")
    group.addoption("--evalbatch-base", metavar="GIT_REF", default=None,
                    help="Gate the suites whose inputs differ from this git revision (default: from their baseline).")
    group.addoption("--evalbatch-sample", metavar="N", type=int, default=None,
                    help="Sample N items of each suite (default: the power plan's size).")
    group.addoption("--evalbatch-budget", metavar="USD", type=float, default=None,
                    help="Fail every gate check, sending nothing, when the samples' estimated cost exceeds USD.")
    group.addoption("--evalbatch-reports-dir", metavar="DIR", default=None,
                    help="Write runs under DIR/<suite>/ (default: each suite's output.dir or <project>/reports).")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if not parent.config.getoption("evalbatch") or file_path.suffix not in (".yaml", ".yml"):
        return None
    if not _is_suite_file(file_path):
        return None
    return SuiteFile.from_parent(parent, path=file_path)


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("evalbatch"):
        config.stash[_SESSION_KEY] = _GateSession(config)


def _is_suite_file(path: Path) -> bool:
    """A YAML mapping with the keys every suite has (data files and other YAML are left alone)."""
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(loaded, dict) and {"name", "dataset", "prompt", "targets", "scorers"} <= loaded.keys()


class GateCheckFailed(Exception):
    """A gate check failed: its text is the report (no traceback of the plugin's own code)."""


class SuiteFile(pytest.File):
    def collect(self):
        from harness.config.loader import load_suite
        from harness.errors import UserError

        try:
            spec = load_suite(self.path).spec
        except UserError as exc:
            raise self.CollectError(f"evalbatch: {exc}") from None
        scored = [scorer.name or scorer.type for scorer in spec.scorers]
        for metric in spec.gate.primary_metrics(scored):
            yield GateCheck.from_parent(self, name=metric.metric, kind="metric", check=metric.metric)
        for guardrail in spec.gate.guardrails:
            yield GateCheck.from_parent(self, name=f"guardrail {guardrail.metric}", kind="guardrail",
                                        check=guardrail.metric)
        yield GateCheck.from_parent(self, name="verdict", kind="verdict", check="verdict")


class GateCheck(pytest.Item):
    def __init__(self, *, kind: str, check: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kind, self.check = kind, check

    def runtest(self) -> None:
        result = self.config.stash[_SESSION_KEY].result(self.path)
        failures = []
        for gate in result.gates:
            failures += _failures(gate.record, self.kind, self.check)
        if failures:
            reasons = [reason for gate in result.gates for reason in gate.record.reasons]
            raise GateCheckFailed("\n".join([*failures, "", f"gate of {result.name} ({result.how}):", *reasons]))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, GateCheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, 0, f"evalbatch gate: {self.name}"


def _failures(record, kind: str, check: str) -> list[str]:
    from harness.compare.verdict_kind import Verdict
    from harness.runs.gate_record import render_guardrail, render_metric

    failing = (Verdict.FAIL, Verdict.INCONCLUSIVE)
    if kind == "metric":
        return [render_metric(m) for m in record.metrics if m.metric == check and m.verdict in failing]
    if kind == "guardrail":
        return [render_guardrail(g) for g in record.guardrails if g.name == check and g.alarmed and g.blocking]
    return [f"gate {record.verdict} (target {record.target})"] if record.verdict in failing else []


class _GateSession:
    """The session's suites: planned together on first use (so the budget covers them all),
    each run and gated once, when its first check runs."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._planned: dict[Path, Any] | None = None
        self._refusal: str | None = None
        self._results: dict[Path, Any] = {}

    def _options(self):
        from harness.ci.selection import CiOptions

        reports = self.config.getoption("evalbatch_reports_dir")
        return CiOptions(None, self.config.getoption("evalbatch_base"), self.config.getoption("evalbatch_budget"),
                         self.config.getoption("evalbatch_sample"), Path(reports).resolve() if reports else None)

    def _plan_all(self, items: list[pytest.Item]) -> None:
        from harness.ci.selection import SuiteWork, plan_work
        from harness.commands.changed import GitRevision, suite_changes
        from harness.config.loader import load_suite

        options = self._options()
        self._planned = {}
        for path in dict.fromkeys(item.path for item in items if isinstance(item, GateCheck)):
            loaded = load_suite(path)
            git = GitRevision(path.parent, options.base_ref) if options.base_ref else None
            change = suite_changes(loaded, git)
            if not change.reasons:
                against = f"git {options.base_ref}" if options.base_ref else "its baseline"
                self._planned[path] = f"not affected: nothing it depends on changed since {against}"
            elif not change.has_baseline:
                self._planned[path] = f"no baseline at {change.baseline}: nothing to gate against"
            else:
                self._planned[path] = plan_work(change, loaded, options)
        works = [w for w in self._planned.values() if isinstance(w, SuiteWork)]
        costs = [w.estimate_usd for w in works]
        budget = options.budget
        if budget is not None and (None in costs or sum(c or 0.0 for c in costs) > budget):
            shown = "unknown (a target has no price)" if None in costs else f"${sum(c or 0.0 for c in costs):,.4f}"
            self._refusal = f"refused: the samples would cost up to {shown}, over --evalbatch-budget ${budget:,.2f}"

    def result(self, path: Path):
        from harness.errors import UserError

        if self._planned is None:
            try:
                self._plan_all(self.config.stash[_ITEMS_KEY])
            except UserError as exc:
                self._planned, self._refusal = {}, f"evalbatch: {exc}"
        planned = self._planned.get(path) if self._planned is not None else None
        if isinstance(planned, str):
            # Reported at the suite file, as a skip mark's reason is, not at this line.
            raise pytest.skip.Exception(planned, _use_item_location=True)
        if self._refusal is not None:
            raise GateCheckFailed(self._refusal)
        if path not in self._results:
            self._results[path] = self._run(planned)
        outcome = self._results[path]
        if isinstance(outcome, str):
            raise GateCheckFailed(outcome)
        return outcome

    def _run(self, work):
        from harness.ci.gating import run_and_gate
        from harness.commands.common import console
        from harness.errors import UserError

        try:
            return run_and_gate(work, self._options().reports_dir, console())
        except UserError as exc:  # kept: every check of the suite reports it, none reruns it
            return f"evalbatch: {exc}"


_ITEMS_KEY = pytest.StashKey[list]()


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("evalbatch"):
        config.stash[_ITEMS_KEY] = list(items)
