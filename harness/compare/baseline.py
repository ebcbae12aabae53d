"""Baselines: the last accepted results of a suite, committed to git as
baselines/<suite>/<name>.json, with the history of who set them, when and from which run."""

from __future__ import annotations

import getpass
import hashlib
import os
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel

from harness.compare.snapshot import RunSnapshot, snapshot_json
from harness.errors import UserError
from harness.runs.manifest import now_iso, write_atomically

BASELINE_VERSION: Final = 1


class BaselineEvent(BaseModel):
    name: str
    from_run: str
    prompt: str
    model: str
    set_at: str
    set_by: str
    note: str = ""


class Baseline(BaseModel):
    version: Literal[1] = BASELINE_VERSION
    name: str
    set_at: str
    set_by: str
    snapshot: RunSnapshot
    history: list[BaselineEvent]


def baseline_path(project_dir: Path, suite: str, name: str) -> Path:
    return project_dir / "baselines" / suite / f"{name}.json"


def set_baseline(project_dir: Path, snapshot: RunSnapshot, name: str, note: str = "") -> Path:
    """Writes (or replaces) the baseline, carrying its history forward."""
    path = baseline_path(project_dir, snapshot.fingerprints.suite, name)
    history = load_baseline(path).history if path.is_file() else []
    event = BaselineEvent(name=name, from_run=snapshot.run_id, prompt=snapshot.fingerprints.prompt,
                          model=snapshot.fingerprints.model, set_at=now_iso(), set_by=current_user(), note=note)
    baseline = Baseline(name=name, set_at=event.set_at, set_by=event.set_by, snapshot=snapshot,
                        history=history + [event])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, snapshot_json(baseline))
    return path


def load_baseline(path: Path) -> Baseline:
    return read_baseline(path)[0]


def read_baseline(path: Path) -> tuple[Baseline, str]:
    """The baseline and the sha256 of the bytes it was read from (one read: a gate records exactly
    what it compared with)."""
    try:
        data = path.read_bytes()
        return Baseline.model_validate_json(data), hashlib.sha256(data).hexdigest()
    except FileNotFoundError:
        known = sorted(p.stem for p in path.parent.glob("*.json")) if path.parent.is_dir() else []
        raise UserError("no such baseline", file=str(path),
                        hint=f"baselines of this suite: {known}" if known else
                        "create one with: evalbatch baseline set SUITE --from RUN_ID") from None
    except ValueError as exc:
        raise UserError(f"not a valid baseline file: {exc}", file=str(path)) from None


def current_user() -> str:
    """Who set it, for the history: git's user name if configured, else the login name."""
    for variable in ("GIT_AUTHOR_NAME", "USER"):
        if os.environ.get(variable):
            return os.environ[variable]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
