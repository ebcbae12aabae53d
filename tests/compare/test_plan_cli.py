"""`evalbatch plan`: sample sizes from a baseline (Connor 1987, non-inferiority) and their cost."""

from __future__ import annotations

import math
import re

from scipy import stats

from harness.testing.fake_server import FakeLLMServer, keyword_replier
from tests.conftest import TICKET_REPLIES, base_suite


def _connor(psi: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> int:
    z_a, z_b = stats.norm.isf(alpha / 2), stats.norm.isf(1 - power)
    return math.ceil((z_a * math.sqrt(psi) + z_b * math.sqrt(psi - delta**2)) ** 2 / delta**2)


def test_plan_from_a_single_baseline_and_from_two_runs(project, cli):
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        suite = base_suite(server.base_url)
        suite["targets"][0]["pricing"] = {"input_per_mtok": 2.0, "output_per_mtok": 8.0}
        project.write_suite(suite)
        first = re.search(r"run (\S+): complete", cli("run", str(project.suite_path)).output).group(1)
        second = re.search(r"run (\S+): complete", cli("run", str(project.suite_path), "--new").output).group(1)
    assert cli("baseline", "set", str(project.suite_path), "--from", first).exit_code == 0

    result = cli("plan", str(project.suite_path), "--mde", "0.05")
    assert result.exit_code == 0, result.output
    p = 5 / 6  # the baseline's accuracy
    expected = _connor(2 * p * (1 - p), 0.05)
    assert f"flip rate psi = {2 * p * (1 - p):.4f}" in result.output
    assert f"detect a 5 pt change (superiority): {expected:,} items" in result.output
    non_inferiority = math.ceil((stats.norm.isf(0.025) + stats.norm.isf(0.2)) ** 2 * 2 * p * (1 - p) / 0.02**2)
    assert abs(int(re.search(r"non-inferiority at the 2 pt margin: ([\d,]+) items", result.output)
                   .group(1).replace(",", "")) - non_inferiority) <= 1
    assert "~$" in result.output  # targets[].pricing gives a dollar figure

    # Two identical runs flip nothing: the floor (1%, at least the effect) keeps the plan honest.
    observed = cli("plan", str(project.suite_path), "--mde", "0.05", "--against", second,
                   "--reports-dir", str(project.root / "reports"))
    assert observed.exit_code == 0, observed.output
    assert "flip rate psi = 0.0500 (observed between run" in observed.output


def test_plan_needs_a_baseline(project, cli):
    result = cli("plan", str(project.suite_path), "--mde", "0.03")
    assert result.exit_code == 2 and "no such baseline" in result.output
