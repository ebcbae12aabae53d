"""Where runs live and how a command finds one.

`run` writes to <reports>/<suite>/<run_id>/, where <reports> is `--reports-dir`, else the suite's
`output.dir`, else <project>/reports. Every other command finds runs through `find_run`, which
accepts a run folder's path or a run ID and looks in the same places `run` writes to, whatever
the current directory is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.config.loader import LoadedSuite
from harness.errors import UserError
from harness.runs.manifest import Manifest, read_manifest

RUN_MARKERS = ("manifest.json", "run.sqlite")


def reports_dir(suite: LoadedSuite, override: Path | None = None) -> Path:
    """The folder holding <suite>/<run_id>/ for this suite: the one `run` writes to."""
    return override.resolve() if override else suite.reports_dir


def suite_runs_dir(suite: LoadedSuite, override: Path | None = None) -> Path:
    return reports_dir(suite, override) / suite.spec.name


def search_dirs(override: Path | None = None, suite: LoadedSuite | None = None,
                start: Path | None = None) -> list[Path]:
    """Reports folders to look for a run in, most specific first: the one given, the suite's,
    then those of the project around the current directory (its reports/ and every suite's
    output.dir), then ./reports."""
    if override is not None:
        return [override.resolve()]
    places: list[Path] = []
    if suite is not None:
        places.append(suite.reports_dir)
    places.extend(_project_reports_dirs((start or Path.cwd()).resolve()))
    places.append((start or Path.cwd()).resolve() / "reports")
    return list(dict.fromkeys(places))


def _project_reports_dirs(start: Path) -> list[Path]:
    for folder in (start, *start.parents):
        if (folder / "prompts").is_dir() or (folder / "suites").is_dir():
            return [folder / "reports", *_suite_output_dirs(folder / "suites")]
    return []


def _suite_output_dirs(suites: Path) -> list[Path]:
    """output.dir of each suite file, read loosely: a broken suite must not hide other runs."""
    found = []
    for path in sorted(suites.glob("*.y*ml")) if suites.is_dir() else []:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            relative = data.get("output", {}).get("dir") if isinstance(data, dict) else None
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        if isinstance(relative, str):
            found.append((path.parent / relative).resolve())
    return found


def is_run_folder(folder: Path) -> bool:
    return folder.is_dir() and any((folder / marker).exists() for marker in RUN_MARKERS)


def find_run(run: str, places: list[Path], suite: str | None = None) -> Path:
    """A run folder from its path, or from a run ID under <place>/<suite>/ (the given suite's
    folder first, so equal IDs in other suites do not make it ambiguous)."""
    given = Path(run).expanduser()
    if is_run_folder(given):
        return given.resolve()
    if given.is_absolute() or len(given.parts) > 1:
        raise UserError("not a run folder (no manifest.json or run.sqlite in it)", file=str(given),
                        hint="give a run ID from `evalbatch runs SUITE` or the path of a run folder")
    for place in places:
        if suite and is_run_folder(place / suite / run):
            return (place / suite / run).resolve()
    matches = sorted({folder.resolve() for place in places for folder in place.glob(f"*/{run}")
                      if is_run_folder(folder)})
    if len(matches) > 1:
        raise UserError(f"run ID {run!r} exists for several suites: {[str(m) for m in matches]}",
                        hint="give the run folder's path, or --suite")
    if not matches:
        looked = ", ".join(str(p) for p in places) or "nowhere"
        raise UserError(f"no run {run!r} (looked under {looked})",
                        hint="give a run ID from `evalbatch runs SUITE`, a run folder's path, --suite SUITE "
                             "or --reports-dir DIR")
    return matches[0]


@dataclass(frozen=True)
class DamagedRun:
    """A run folder whose manifest cannot be read: what it holds must not be silently ignored."""

    folder: Path
    problem: str


def scan_runs(suite_dir: Path) -> tuple[list[tuple[Path, Manifest]], list[DamagedRun]]:
    """The suite's runs newest first, and the run folders whose manifest is missing or unreadable."""
    runs, damaged = [], []
    for folder in sorted(suite_dir.glob("*/"), reverse=True):
        if not is_run_folder(folder):
            continue
        try:
            runs.append((folder, read_manifest(folder)))
        except FileNotFoundError:
            damaged.append(DamagedRun(folder, "manifest.json is missing"))
        except (OSError, ValueError) as exc:
            damaged.append(DamagedRun(folder, f"manifest.json cannot be read: {_first_line(exc)}"))
    return runs, damaged


def previous_runs(suite_dir: Path) -> list[tuple[Path, Manifest]]:
    """Newest first, the runs with a readable manifest (`scan_runs` also names the damaged ones)."""
    return scan_runs(suite_dir)[0]


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
