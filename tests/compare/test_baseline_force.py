"""`baseline set` refuses a run whose gate failed unless --force, and keeps who, when and why."""

from __future__ import annotations

import json

from harness.testing.fake_server import FakeLLMServer, keyword_replier
from tests.compare.test_gate_cli import V1_OR_V2_REPLIES, reports, run, use_generated_data


def test_failed_gate_refused_unless_forced_and_recorded(project, cli, monkeypatch):
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Ada Reviewer")
    with FakeLLMServer(keyword_replier(V1_OR_V2_REPLIES)) as server:
        use_generated_data(project, server.base_url, 60)
        base_run = run(cli, project.suite_path)
        assert cli("baseline", "set", str(project.suite_path), "--from", base_run).exit_code == 0
        worse = run(cli, project.suite_path, "--prompt-version", "v2")
    assert cli("gate", worse, "--reports-dir", reports(project)).exit_code == 1
    baseline_file = project.root / "baselines" / "demo" / "production.json"
    before = baseline_file.read_bytes()

    refused = cli("baseline", "set", str(project.suite_path), "--from", worse)
    assert refused.exit_code == 2
    assert f"run {worse}'s gate failed" in refused.stderr and "gate.json" in refused.stderr
    assert "FAIL: accuracy (slice all)" in refused.stderr and "--force" in refused.stderr
    assert baseline_file.read_bytes() == before

    forced = cli("baseline", "set", str(project.suite_path), "--from", worse, "--force",
                 "--note", "v2 is the product decision")
    assert forced.exit_code == 0, forced.output
    history = json.loads(baseline_file.read_text())["history"]
    assert [(e["from_run"], e["gate"], e["forced"]) for e in history] == [(base_run, None, False), (worse, "FAIL", True)]
    assert (history[1]["set_by"], history[1]["note"]) == ("Ada Reviewer", "v2 is the product decision")
    assert history[1]["set_at"] >= history[0]["set_at"]
    shown = cli("baseline", "show", str(project.suite_path))
    assert "Ada Reviewer" in shown.output and "[forced over a FAILED gate]" in shown.output


def test_passed_gate_is_recorded_without_force(project, cli):
    with FakeLLMServer(keyword_replier(V1_OR_V2_REPLIES)) as server:
        use_generated_data(project, server.base_url, 60)
        base_run = run(cli, project.suite_path)
        assert cli("baseline", "set", str(project.suite_path), "--from", base_run).exit_code == 0
        same = run(cli, project.suite_path, "--new")
    gated = cli("gate", same, "--reports-dir", reports(project))
    assert gated.exit_code in (0, 3), gated.output
    verdict = json.loads((project.root / "reports" / "demo" / same / "gate.json").read_text())["verdict"]
    assert cli("baseline", "set", str(project.suite_path), "--from", same).exit_code == 0
    history = json.loads((project.root / "baselines" / "demo" / "production.json").read_text())["history"]
    assert (history[-1]["gate"], history[-1]["forced"]) == (verdict, False)


def test_old_history_entries_load(project):
    from harness.compare.baseline import BaselineEvent

    old = {"name": "production", "from_run": "r1", "prompt": "route@v1", "model": "m", "set_at": "2026-01-01T00:00:00Z",
           "set_by": "someone"}
    event = BaselineEvent.model_validate(old)
    assert (event.gate, event.forced, event.note) == (None, False, "")
