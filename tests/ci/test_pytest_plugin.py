"""The pytest plugin, run by pytester in a subprocess on a temp git repository against the fake
server. `-p harness.ci.pytest_plugin` with entry-point autoloading off: the installed entry point
may or may not be registered yet (it is after `pip install -e .`)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.testing.fake_server import FakeLLMServer
from tests.ci.gate_repo import REGRESSION, change_header, git, make_repo, reply

pytest_plugins = ["pytester"]


@pytest.fixture
def server():
    with FakeLLMServer(reply) as running:
        yield running


class _Ran:
    def __init__(self, done: subprocess.CompletedProcess[str]) -> None:
        self.exit_code, self.output = done.returncode, done.stdout + done.stderr


def _cli_process(*args: str) -> _Ran:
    """The CLI in its own process: pytester restores sys.modules after each test, so SDK classes
    imported in-process by one test would not be the ones a later test's objects were made from."""
    return _Ran(subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                               timeout=300))


@pytest.fixture
def gate_repo(pytester, server, monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    root = make_repo(pytester.path, server.base_url, _cli_process)
    server.log.reset()
    return root


def _pytest(pytester, *args: str):
    return pytester.runpytest_subprocess("-p", "harness.ci.pytest_plugin", "-p", "no:cacheprovider", *args)


def test_regression_fails_the_metric_check_with_the_gates_reasons(pytester, gate_repo, server):
    change_header(gate_repo, f"{REGRESSION}\n")
    result = _pytest(pytester, "--evalbatch", "--evalbatch-base", "main", "-rA", "suites")
    result.assert_outcomes(passed=1, failed=2, skipped=3)  # fresh: no baseline, all 3 of its checks skipped
    result.stdout.fnmatch_lines(["*FAIL: accuracy (slice all) -*pts*", "*gate of tickets (run *"])
    result.stdout.fnmatch_lines(["PASSED suites/tickets.yaml::guardrail output_length",
                                 "SKIPPED ?3? suites/fresh.yaml:1: no baseline at baselines/fresh/production.json*",
                                 "FAILED suites/tickets.yaml::accuracy - FAIL: accuracy (slice all)*",
                                 "FAILED suites/tickets.yaml::verdict - gate FAIL*"])
    assert server.log.total == 60  # one run for the suite's three checks


def test_harmless_change_passes_and_unaffected_suites_are_skipped(pytester, gate_repo, server):
    change_header(gate_repo, "{# a comment #}Route the support ticket to one team.\n")
    result = _pytest(pytester, "--evalbatch", "--evalbatch-base", "main", "--evalbatch-sample", "40", "suites")
    result.assert_outcomes(passed=3, skipped=3)
    assert server.log.total == 40
    git(gate_repo, "commit", "-qam", "a comment in the header")
    unchanged = _pytest(pytester, "--evalbatch", "--evalbatch-base", "HEAD", "-rs", "suites")
    unchanged.assert_outcomes(skipped=6)
    unchanged.stdout.fnmatch_lines(["*not affected: nothing it depends on changed since git HEAD*"])


def test_budget_fails_every_check_before_sending(pytester, gate_repo, server):
    change_header(gate_repo, "Route it.\n")
    result = _pytest(pytester, "--evalbatch", "--evalbatch-base", "main", "--evalbatch-budget", "1", "suites")
    result.assert_outcomes(failed=3, skipped=3)
    result.stdout.fnmatch_lines(["*refused: the samples would cost up to unknown*"])
    assert server.log.total == 0


def test_without_the_flag_nothing_is_collected(pytester, gate_repo, server):
    change_header(gate_repo, f"{REGRESSION}\n")
    result = _pytest(pytester, "suites")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert server.log.total == 0


def test_loading_the_plugin_imports_nothing_of_the_harness():
    code = ("import sys, pytest; before = set(sys.modules); import harness.ci.pytest_plugin; "
            "print(sorted(set(sys.modules) - before))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert shown.strip() == "['harness', 'harness.ci', 'harness.ci.pytest_plugin']"
