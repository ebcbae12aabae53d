"""Ways around the gate an adversarial user tried, each closed: an edited gate.json, scorers or
slices redefined while the candidate ran, a run gated on part of its items, a run of several
targets, and a full run after the policy changed. Through the CLI against the fake server."""

from __future__ import annotations

import json

from tests.compare.test_gate_cli import flat, run
from tests.compare.test_promotion import _gate, _project_with_baseline, _promote, _promoted, server  # noqa: F401

EXIT_PASS, EXIT_FAIL, EXIT_REFUSED, EXIT_BAD_INPUT, EXIT_INCONCLUSIVE = 0, 1, 1, 2, 3


def test_an_edited_gate_record_does_not_promote(project, cli, server):  # noqa: F811
    _project_with_baseline(project, cli, server)
    worse = run(cli, project.suite_path, "--prompt-version", "v2")
    assert _gate(cli, project, worse).exit_code == EXIT_FAIL
    path = project.root / "reports" / "demo" / worse / "gate.json"
    record = json.loads(path.read_text())
    record["verdict"] = "PASS"
    path.write_text(json.dumps(record))

    refused = _promote(cli, project, worse)
    assert refused.exit_code == EXIT_REFUSED, refused.output
    assert "gate.json says PASS, but the run and the baseline give FAIL now" in flat(refused.stderr)
    assert not _promoted(project).exists()


def _gate_a_candidate_run_under(project, cli, server, change: dict, *run_args: str):  # noqa: F811
    """The baseline from the suite as written; the candidate run with `change` applied to the suite,
    which is then restored before the gate (as a user covering their tracks would)."""
    suite, _ = _project_with_baseline(project, cli, server)
    original = json.loads(json.dumps(suite))
    project.write_suite({**suite, **change})
    candidate = run(cli, project.suite_path, *run_args)
    project.write_suite(original)
    return _gate(cli, project, candidate)


def test_a_scorer_redefined_while_the_candidate_ran_is_bad_input(project, cli, server):  # noqa: F811
    passes_anything = {"scorers": [{"type": "regex", "name": "accuracy", "pattern": "."}]}
    gated = _gate_a_candidate_run_under(project, cli, server, passes_anything, "--prompt-version", "v2")
    assert gated.exit_code == EXIT_BAD_INPUT, gated.output
    assert "scored by different scorer definitions" in flat(gated.stderr)


def test_a_slice_redefined_while_the_candidate_ran_is_bad_input(project, cli, server):  # noqa: F811
    fewer_items = {"slices": [{"name": "all", "where": {"label": ["billing", "bug", "feature request"]}}]}
    gated = _gate_a_candidate_run_under(project, cli, server, fewer_items, "--new")
    assert gated.exit_code == EXIT_BAD_INPUT, gated.output
    assert "were defined differently for the baseline and the candidate" in flat(gated.stderr)


def test_a_run_of_several_targets_is_not_promoted_on_one_targets_gate(project, cli, server):  # noqa: F811
    suite, _ = _project_with_baseline(project, cli, server)
    second = dict(suite["targets"][0], name="other", model="other-model")
    suite["targets"] = [suite["targets"][0], second]
    project.write_suite(suite)
    candidate = run(cli, project.suite_path, "--new")
    assert _gate(cli, project, candidate, "--target", "fake").exit_code == EXIT_PASS

    refused = _promote(cli, project, candidate)
    assert refused.exit_code == EXIT_REFUSED, refused.output
    assert "the gate judged only 'fake'" in flat(refused.stderr)
    assert not _promoted(project).exists()


def test_a_full_run_after_the_policy_changed_is_refused(project, cli, server):  # noqa: F811
    suite, _ = _project_with_baseline(project, cli, server)
    candidate = run(cli, project.suite_path, "--new")
    assert _gate(cli, project, candidate).exit_code == EXIT_PASS
    assert _promote(cli, project, candidate).exit_code == 0
    server.log.reset()
    suite["gate"] = {**suite["gate"], "validators": []}  # nothing would be checked in the full run
    project.write_suite(suite)

    refused = _promote(cli, project, candidate, "--full")
    assert refused.exit_code == EXIT_REFUSED, refused.output
    assert "gate policy (validators, margins, ...): promoted under" in flat(refused.stderr)
    assert server.log.total == 0


def test_a_gate_cannot_pass_on_part_of_a_run(project, cli):
    from harness.testing.fake_server import FakeLLMServer, keyword_replier
    from tests.conftest import base_suite
    from tests.runs.processes import ITEMS, many_tickets, start, succeeded_ids, wait_for_progress

    many_tickets(project)
    with FakeLLMServer(keyword_replier({}, default="billing"), latency_s=0.05) as slow:
        suite = base_suite(slow.base_url)
        suite["gate"] = {"primary": [{"metric": "accuracy", "margin": 0.2}]}  # 30 unchanged items would pass
        project.write_suite(suite)
        base_run = run(cli, project.suite_path)
        assert cli("baseline", "set", str(project.suite_path), "--from", base_run).exit_code == 0
        process = start("run", str(project.suite_path), "--new")
        run_dir = wait_for_progress(project.root / "reports" / "demo", process, at_least=30,
                                    ignore=tuple(project.run_dirs()))
        process.kill()
        process.wait(timeout=30)
    missing = ITEMS - len(succeeded_ids(run_dir))
    assert missing > 0

    gated = cli("gate", str(run_dir))
    assert gated.exit_code == EXIT_INCONCLUSIVE, gated.output
    assert f"{missing} item(s) of the run never finished" in flat(gated.output)
    refused = _promote(cli, project, run_dir.name)
    assert refused.exit_code == EXIT_REFUSED and not _promoted(project).exists()
