"""Reads a suite file into a validated `SuiteSpec`, with errors that name file, line and field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from harness.config.suite import DRIFT_SIGNALS, SuiteSpec
from harness.config.yaml_source import YamlSource
from harness.engine.batch.registry import batch_providers
from harness.engine.providers.registry import known_providers
from harness.errors import UserError
from harness.scoring.registry import validate_scorer_params


@dataclass(frozen=True)
class LoadedSuite:
    """A validated suite and the folders its relative paths resolve against."""

    spec: SuiteSpec
    path: Path
    project_dir: Path

    def resolve(self, relative: str) -> Path:
        """Paths in a suite are relative to the suite file."""
        return (self.path.parent / relative).resolve()

    @property
    def prompts_dir(self) -> Path:
        if self.spec.prompt.dir:
            return self.resolve(self.spec.prompt.dir)
        return self.project_dir / "prompts"

    @property
    def reports_dir(self) -> Path:
        if self.spec.output.dir:
            return self.resolve(self.spec.output.dir)
        return self.project_dir / "reports"


def load_suite(path: str | Path) -> LoadedSuite:
    source = YamlSource(Path(path))
    if not isinstance(source.data, dict):
        raise UserError("a suite must be a YAML mapping (name:, dataset:, slices:, prompt:, targets:, scorers:)",
                        file=str(source.path), location="line 1")
    try:
        spec = SuiteSpec.model_validate(source.data)
    except ValidationError as exc:
        raise _first_error(source, exc) from None
    _check_registries(source, spec)
    _check_gate(source, spec)
    suite_path = source.path.resolve()
    return LoadedSuite(spec=spec, path=suite_path, project_dir=_project_dir(suite_path))


def _first_error(source: YamlSource, exc: ValidationError, prefix: tuple = ()) -> UserError:
    error = exc.errors()[0]
    loc = prefix + tuple(error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = f"unknown field {loc[-1]!r}"
    elif error["type"] == "missing":
        message = f"missing required field {loc[-1]!r}"
    more = len(exc.errors()) - 1
    hint = f"{more} more problem(s) after this one" if more else None
    return UserError(message, file=str(source.path), location=source.where(loc), hint=hint)


def _check_registries(source: YamlSource, spec: SuiteSpec) -> None:
    providers = known_providers()
    for index, target in enumerate(spec.targets):
        if target.provider not in providers:
            raise UserError(f"unknown provider {target.provider!r}; expected one of {sorted(providers)}",
                            file=str(source.path), location=source.where(("targets", index, "provider")))
        if target.mode == "batch" and target.provider not in batch_providers():
            raise UserError(f"provider {target.provider!r} has no batch API; mode: batch needs one of "
                            f"{sorted(batch_providers())}", file=str(source.path),
                            location=source.where(("targets", index, "mode")))
    for index, scorer in enumerate(spec.scorers):
        try:
            validate_scorer_params(scorer)
        except ValidationError as exc:
            raise _first_error(source, exc, prefix=("scorers", index)) from None
        except ValueError as exc:
            raise UserError(str(exc), file=str(source.path), location=source.where(("scorers", index))) from None




def _check_gate(source: YamlSource, spec: SuiteSpec) -> None:
    """Gate metrics must name this suite's scorers (or a drift signal, for guardrails), once each,
    and a metric is either gated (primary) or watched (guardrail), not both."""
    scorers = [s.label for s in spec.scorers]

    def bad(message: str, *loc: str | int) -> UserError:
        return UserError(message, file=str(source.path), location=source.where(("gate", *loc)))

    primaries = [metric.metric for metric in spec.gate.primary]
    for index, name in enumerate(primaries):
        if name not in scorers:
            raise bad(f"unknown metric {name!r}; the suite's scorers are {scorers}", "primary", index, "metric")
        if name in primaries[:index]:
            raise bad(f"metric {name!r} is a primary metric twice; give it one margin", "primary", index, "metric")
    guards = [guard.metric for guard in spec.gate.guardrails]
    for index, name in enumerate(guards):
        if name not in scorers and name not in DRIFT_SIGNALS:
            raise bad(f"unknown metric {name!r}; expected a scorer {scorers} or a drift signal "
                      f"{list(DRIFT_SIGNALS)}", "guardrails", index, "metric")
        if name in guards[:index]:
            raise bad(f"guardrail {name!r} is listed twice", "guardrails", index, "metric")
        if name in primaries:
            raise bad(f"{name!r} is already a primary metric; a metric is gated or a guardrail, not both",
                      "guardrails", index, "metric")
    for index, name in enumerate(spec.gate.validators or []):
        if name not in scorers:
            raise bad(f"unknown validator {name!r}; the suite's scorers are {scorers}", "validators", index)
    known = {s.name for s in spec.slices}
    for index, name in enumerate(spec.gate.slices):
        if name not in known:
            raise bad(f"unknown slice {name!r}; the suite defines {sorted(known)}", "slices", index)
        if name in spec.gate.slices[:index]:
            raise bad(f"slice {name!r} is listed twice", "slices", index)


def _project_dir(suite_path: Path) -> Path:
    """The nearest folder above the suite that holds prompts/ (suites/x.yaml -> the repo root)."""
    for folder in suite_path.parents:
        if (folder / "prompts").is_dir():
            return folder
    return suite_path.parent
