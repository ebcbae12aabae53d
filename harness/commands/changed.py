"""`evalbatch changed`: which suites a change affects, and why.

Without --base a suite is compared with what its baseline froze (the fingerprints of the run it
was set from); with --base, each file it depends on is compared with its content at that git
revision. Either way the answer names the file or setting that differs, so a reviewer can see
why CI runs a suite.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import yaml
from pydantic import ValidationError

from harness.commands.common import reports_user_errors
from harness.config.dependencies import Dependency, dependencies_of, target_dependency
from harness.config.loader import LoadedSuite, load_suite
from harness.config.suite import SuiteSpec
from harness.errors import UserError


@dataclass
class Reason:
    kind: str
    name: str
    change: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}: {self.change}"


@dataclass
class SuiteChange:
    suite: str
    file: str
    baseline: str
    has_baseline: bool
    reasons: list[Reason] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.reasons:
            return "changed"
        return "unchanged" if self.has_baseline else "no baseline"

    def as_json(self) -> dict[str, Any]:
        return {"suite": self.suite, "file": self.file, "status": self.status, "baseline": self.baseline,
                "has_baseline": self.has_baseline, "reasons": [vars(r) for r in self.reasons]}


@click.command("changed")
@click.argument("suites_dir", required=False, type=click.Path(file_okay=False))
@click.option("--base", "base_ref", default=None, metavar="GIT_REF",
              help="Compare with the files at this git revision (default: with each suite's baseline).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@reports_user_errors
def changed(suites_dir: str | None, base_ref: str | None, as_json: bool) -> None:
    """List the suites whose inputs changed (prompt, included templates, schemas, dataset, suite,
    target settings) since their baseline or since git revision GIT_REF, and why."""
    folder = Path(suites_dir).resolve() if suites_dir else default_suites_dir(Path.cwd())
    suites = [load_suite(path) for path in suite_files(folder)]
    git = GitRevision(folder, base_ref) if base_ref else None
    results = [suite_changes(loaded, git) for loaded in suites]
    if as_json:
        click.echo(json.dumps({"suites_dir": str(folder), "base": base_ref,
                               "suites": [r.as_json() for r in results]}, indent=2))
        return
    against = f"git {base_ref}" if base_ref else "their baselines"
    affected = sum(1 for r in results if r.reasons)
    click.echo(f"{affected} of {len(results)} suite(s) in {folder} changed since {against}")
    for result in results:
        note = "" if result.has_baseline or not result.reasons else " (no baseline)"
        click.echo(f"{result.suite} ({result.file}): {result.status}{note}")
        for reason in result.reasons:
            click.echo(f"  {reason}")
        if not result.has_baseline and not result.reasons:
            click.echo(f"  no baseline at {result.baseline}")


def default_suites_dir(cwd: Path) -> Path:
    """The suites/ of the project around cwd: the nearest folder at or above it with suites/."""
    for candidate in [cwd, *cwd.parents]:
        if (candidate / "suites").is_dir():
            return candidate / "suites"
    raise UserError(f"no suites/ folder in {cwd} or above it", hint="pass SUITES_DIR")


def suite_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UserError("not a folder", file=str(folder))
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    if not files:
        raise UserError("no suite files (*.yaml) in this folder", file=str(folder))
    return files


def suite_changes(loaded: LoadedSuite, git: GitRevision | None) -> SuiteChange:
    from harness.compare.baseline import baseline_path, read_baseline_header

    path = baseline_path(loaded.project_dir, loaded.spec.name, loaded.spec.gate.baseline)
    result = SuiteChange(loaded.spec.name, _shown(loaded.path, loaded.project_dir), _shown(path, loaded.project_dir),
                         path.is_file())
    dependencies = dependencies_of(loaded)
    if git is not None:
        result.reasons = git.changes(loaded, dependencies)
        if result.has_baseline:  # a new baseline is a new reference: the gate's answer may change
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            result.reasons += git.file_change("baseline", path, digest, git.content(path))
    elif result.has_baseline:
        result.reasons = baseline_changes(loaded, dependencies, read_baseline_header(path).snapshot.fingerprints)
    return result


def baseline_changes(loaded: LoadedSuite, dependencies: list[Dependency], frozen) -> list[Reason]:
    """What differs from the fingerprints a baseline froze. It keeps one fingerprint for the prompt
    and its includes together, so a changed include is reported as the prompt's change."""
    from harness.config.prompts import PromptVersion
    from harness.runs.manifest import definitions_sha256

    spec, reasons = loaded.spec, []
    label = f"{spec.prompt.name}@{spec.prompt.version}"
    prompt_file = next(d for d in dependencies if d.kind == "prompt")
    if label != frozen.prompt:
        reasons.append(Reason("prompt", label, f"the baseline used {frozen.prompt}"))
    elif PromptVersion(loaded.prompts_dir, spec.prompt.name, spec.prompt.version).fingerprint != frozen.prompt_fingerprint:
        templates = [_shown(d.path, loaded.project_dir) for d in dependencies if d.kind == "template" and d.path]
        files = _shown(prompt_file.path, loaded.project_dir) + (f" or its includes {templates}" if templates else "")
        reasons.append(Reason("prompt", label, f"text differs from the baseline's ({files})"))
    dataset = next((d for d in dependencies if d.kind == "dataset"), None)
    if dataset is not None and dataset.sha256 != frozen.dataset:
        reasons.append(Reason("dataset", _shown(dataset.path, loaded.project_dir), "content differs from the baseline's"))
    target = next((t for t in spec.targets if t.label == frozen.target), None)
    if target is None:
        reasons.append(Reason("target", frozen.target, "the baseline's target is no longer in the suite"))
    else:
        if target.model != frozen.model:
            reasons.append(Reason("target", target.label, f"model {frozen.model} -> {target.model}"))
        if target.params.model_dump() != frozen.params:
            reasons.append(Reason("target", target.label, f"params {frozen.params} -> {target.params.model_dump()}"))
    if frozen.scorers is not None and definitions_sha256([s.model_dump() for s in spec.scorers]) != frozen.scorers:
        reasons.append(Reason("scorers", spec.name, "scorer definitions differ from the baseline's"))
    if frozen.slice_definitions is not None:
        slices = [s.model_dump() for s in spec.slices if s.name in set(frozen.evaluated)]
        if definitions_sha256(slices) != frozen.slice_definitions:
            reasons.append(Reason("slices", "+".join(frozen.evaluated), "slice definitions differ from the baseline's"))
    return reasons


class GitRevision:
    """Files as they were at a git revision of the repository holding `folder`."""

    def __init__(self, folder: Path, ref: str) -> None:
        self.ref = ref
        top = _git(folder, "rev-parse", "--show-toplevel")
        if top.returncode != 0:
            raise UserError("not a git repository, so --base cannot be compared with", file=str(folder),
                            hint="run inside a git checkout, or leave out --base to compare with the baselines")
        self.root = Path(top.stdout.decode().strip()).resolve()
        if _git(self.root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode != 0:
            raise UserError(f"unknown git revision {ref!r}", file=str(self.root),
                            hint="fetch it first (CI checkouts are often shallow: fetch-depth: 0)")

    def content(self, path: Path) -> bytes | None:
        """The file's bytes at the revision; None when it did not exist there."""
        try:
            relative = path.resolve().relative_to(self.root)
        except ValueError:
            return None
        shown = _git(self.root, "show", f"{self.ref}:{relative.as_posix()}")
        return shown.stdout if shown.returncode == 0 else None

    def changes(self, loaded: LoadedSuite, dependencies: list[Dependency]) -> list[Reason]:
        reasons = []
        for dependency in dependencies:
            if dependency.path is None:
                continue
            before = self.content(dependency.path)
            change = self.file_change(dependency.kind, dependency.path, dependency.sha256, before)
            reasons += change
            if change and before is not None and dependency.kind == "suite":
                reasons += self._target_changes(loaded, before)
        return reasons

    def file_change(self, kind: str, path: Path, sha256: str, before: bytes | None) -> list[Reason]:
        """The file's change since the revision (`before`: its bytes there), if any."""
        shown = _shown(path, self.root)
        if before is None:
            return [Reason(kind, shown, f"not in {self.ref}")]
        if hashlib.sha256(before).hexdigest() != sha256:
            return [Reason(kind, shown, f"differs from {self.ref}")]
        return []

    def _target_changes(self, loaded: LoadedSuite, before: bytes) -> list[Reason]:
        """Which target's settings the suite edit changed (an old suite that no longer parses
        names none: the suite file's own change already says it)."""
        try:
            old = SuiteSpec.model_validate(yaml.safe_load(before))
        except (yaml.YAMLError, ValidationError, ValueError):
            return []
        old_targets = {t.label: target_dependency(t) for t in old.targets}
        reasons = []
        for target in loaded.spec.targets:
            now, was = target_dependency(target), old_targets.get(target.label)
            if was is None:
                reasons.append(Reason("target", target.label, f"not in {self.ref}"))
            elif was.sha256 != now.sha256 and now.settings and was.settings:
                keys = [key for key in now.settings if now.settings[key] != was.settings.get(key)]
                reasons.append(Reason("target", target.label, f"{', '.join(keys)} differ from {self.ref}"))
        return reasons


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    except FileNotFoundError:
        raise UserError("git is not installed, so --base cannot be compared with") from None


def _shown(path: Path | None, root: Path) -> str:
    if path is None:
        return ""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
