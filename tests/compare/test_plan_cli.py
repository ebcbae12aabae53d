"""`evalbatch plan`: sample sizes from a baseline (Connor 1987, non-inferiority) and their cost."""

from __future__ import annotations

import math
import re

from scipy import stats

from harness.compare.power import max_items_inflation, plan_group_sequential
from harness.testing.fake_server import FakeLLMServer, keyword_replier
from tests.conftest import TICKET_REPLIES, base_suite


def _connor(psi: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> int:
    z_a, z_b = stats.norm.isf(alpha / 2), stats.norm.isf(1 - power)
    return math.ceil((z_a * math.sqrt(psi) + z_b * math.sqrt(psi - delta**2)) ** 2 / delta**2)


def _nam(psi: float, margin: float, alpha: float = 0.025, power: float = 0.8) -> int:
    """Score-test sample size for paired binary non-inferiority, true difference 0 (Nam 1997)."""
    # Restricted MLE of P(worse) at delta0 = -M with cell shares psi/2, psi/2 (Tango's quadratic).
    half, d0 = psi / 2, -margin
    linear = psi * (1 - d0) - 2 * (1 - half) * d0
    q = (linear + math.sqrt(linear**2 + 8 * half * d0 * (1 - d0))) / 4
    z_a, z_b = stats.norm.isf(alpha), stats.norm.isf(1 - power)
    root = z_a * math.sqrt(2 * q + d0 - d0**2) + z_b * math.sqrt(psi)
    # The gate's score test moves its numerator 1/4 towards 0: M*n - 1/4 = root*sqrt(n).
    return next(n for n in range(1, 10**6) if margin * n - 0.25 >= root * math.sqrt(n))


def _items(output: str, label: str) -> int:
    return int(re.search(re.escape(label) + r": ([\d,]+) items", output).group(1).replace(",", ""))


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
    # Binary scores are gated by the score test, so they are planned with its formula; the Wald
    # shortcut 7.84 * psi / M^2 would promise 80% power with fewer items than that test needs.
    wald = math.ceil((stats.norm.isf(0.025) + stats.norm.isf(0.2)) ** 2 * 2 * p * (1 - p) / 0.02**2)
    planned = _items(result.output, "show non-inferiority at the 2 pt margin")
    assert planned == _nam(2 * p * (1 - p), 0.02) and planned > wald
    assert "sequential design" not in result.output
    assert "~$" in result.output  # targets[].pricing gives a dollar figure

    # Two identical runs flip nothing: the floor (1%, at least the effect) keeps the plan honest.
    observed = cli("plan", str(project.suite_path), "--mde", "0.05", "--against", second,
                   "--reports-dir", str(project.root / "reports"))
    assert observed.exit_code == 0, observed.output
    assert "flip rate psi = 0.0500 (observed between run" in observed.output


def test_plan_needs_a_baseline(project, cli):
    result = cli("plan", str(project.suite_path), "--mde", "0.03")
    assert result.exit_code == 2 and "no such baseline" in result.output


def test_plan_inflates_the_sample_for_a_sequential_design(project, cli):
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        suite = base_suite(server.base_url)
        suite["gate"] = {"sample": {"sequential": True, "looks": 3}}
        project.write_suite(suite)
        first = re.search(r"run (\S+): complete", cli("run", str(project.suite_path)).output).group(1)
    assert cli("baseline", "set", str(project.suite_path), "--from", first).exit_code == 0

    result = cli("plan", str(project.suite_path), "--mde", "0.05")
    assert result.exit_code == 0, result.output
    fixed = _items(result.output, "show non-inferiority at the 2 pt margin")
    maximum = _items(result.output, "sequential design (3 looks), at most")
    # O'Brien-Fleming with 3 equal looks needs 1.3% more items for the same power.
    assert maximum == math.ceil(fixed * max_items_inflation(plan_group_sequential((1 / 3, 2 / 3, 1.0), 0.025)))
    assert 1.01 * fixed < maximum < 1.02 * fixed


def test_plan_says_what_to_do_when_the_baseline_holds_too_few_items(project, cli):
    """6 items cannot show non-inferiority at 2 pts: plan says so, and which margin they would settle."""
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        project.write_suite(base_suite(server.base_url))
        first = re.search(r"run (\S+): complete", cli("run", str(project.suite_path)).output).group(1)
    assert cli("baseline", "set", str(project.suite_path), "--from", first).exit_code == 0

    result = cli("plan", str(project.suite_path), "--mde", "0.05")
    assert result.exit_code == 0, result.output
    psi = 2 * (5 / 6) * (1 / 6)
    needed = _items(result.output, "show non-inferiority at the 2 pt margin")
    assert needed == _nam(psi, 0.02) > 6
    found = re.search(r"about ([\d,]+) items would settle it, but the evaluated slices hold only 6: decide a larger "
                      r"margin in advance \(e\.g\. M = ([\d.]+) needs about (\d+)\), add data, or run epochs for "
                      r"noisy outputs", " ".join(result.output.split()))
    assert found, result.output
    margin, items = float(found.group(2)), int(found.group(3))
    assert int(found.group(1).replace(",", "")) == needed
    # The smallest margin, to 0.001, at which Nam's sample size fits in the 6 items.
    assert items == _nam(psi, margin) <= 6 < _nam(psi, margin - 0.001)
