"""A sequential sample keeps the plan it started with: an interrupted one resumes at its next
undecided look with the planned items and bounds, and one that stopped early stays stopped."""

from __future__ import annotations

import json
import re
import signal

from harness.testing.fake_server import FakeLLMServer
from tests.conftest import base_suite, write_records
from tests.runs.processes import start, succeeded_ids, wait_for_progress

LABELS = ["billing", "bug", "feature request", "account access", "cancellation"]
N = 300
SEQUENTIAL = {"stratify_by": "label", "sequential": True, "looks": 3, "seed": 1}


def _echo_label(prompt: str) -> str:
    """The team named in the ticket, except that the v2 prompt makes it always say 'bug'."""
    if "Route" in prompt:
        return "bug"
    return next(label for label in LABELS if label in prompt)


def _setup(project, server, margin: float = 0.02) -> None:
    records = [{"id": f"s{n:03d}", "text": f"ticket {n} about {LABELS[n % 5]}", "label": LABELS[n % 5]}
               for n in range(N)]
    write_records(project.root / "suites" / "data" / "tickets.jsonl", records)
    (project.root / "prompts" / "route" / "v2.j2").write_text("Route: {{ text }}\nTeam:")
    suite = base_suite(server.base_url)
    suite["gate"] = {"primary": [{"metric": "accuracy", "margin": margin}], "sample": SEQUENTIAL}
    project.write_suite(suite)


def _baseline(project, cli) -> None:
    result = cli("run", str(project.suite_path))
    baseline = re.search(r"run (\S+): complete", result.output).group(1)
    assert cli("baseline", "set", str(project.suite_path), "--from", baseline).exit_code == 0


def _manifest(run_dir) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def test_an_interrupted_sequential_sample_resumes_at_its_planned_looks(project, cli):
    with FakeLLMServer(_echo_label) as server:
        _setup(project, server)
        _baseline(project, cli)
        [baseline_dir] = project.run_dirs()
        server.latency_s = 0.1  # slow enough to stop the second stage part-way
        process = start("run", str(project.suite_path), "--sample", "150")
        run_dir = wait_for_progress(project.root / "reports" / "demo", process, at_least=60, ignore=(baseline_dir,))
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 130, out + err
        interrupted = _manifest(run_dir)
        # Look 1 was decided on the first stage; the second stage was cut short.
        [first_look] = interrupted["looks"]
        assert first_look["items"] == 50 and first_look["decision"] == "CONTINUE"
        assert 50 < len(succeeded_ids(run_dir)) < 100

        server.latency_s = 0.0
        resumed = cli("run", str(project.suite_path), "--sample", "150")
    assert resumed.exit_code == 0, resumed.output
    manifest = _manifest(run_dir)
    # Each look judged the items planned for it, not what happened to be done when the run resumed.
    assert [look["items"] for look in manifest["looks"]] == [50, 100, 150]
    assert manifest["looks"][0] == first_look  # kept as decided, not decided again
    assert f"Resuming unfinished run {run_dir.name}" in resumed.output
    assert "Continuing the sequential sample at look 2/3" in resumed.output, resumed.output
    schedule = interrupted["look_schedule"]
    assert manifest["look_schedule"] == schedule
    assert schedule["planned_items"] == [50, 100, 150] and [len(s) for s in schedule["stages"]] == [50, 50, 50]
    assert schedule["bounds"][0] > 3.7 and schedule["bounds"][-1] < 2.0
    assert [look["planned_items"] for look in manifest["looks"]] == [50, 100, 150]
    assert [look["decision"] for look in manifest["looks"]] == ["CONTINUE", "CONTINUE", "FINAL"]
    assert [look["metrics"][0]["success_bound"] for look in manifest["looks"]] == schedule["bounds"]
    # Each stage held the items the schedule planned for it.
    stages = [set(stage) for stage in schedule["stages"]]
    lines = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert {line["item_id"] for line in lines} == stages[0] | stages[1] | stages[2]


def test_a_sample_that_stopped_early_stays_stopped_when_resumed(project, cli):
    with FakeLLMServer(_echo_label) as server:
        _setup(project, server)
        _baseline(project, cli)
        stopped = cli("run", str(project.suite_path), "--sample", "150", "--prompt-version", "v2")
        assert stopped.exit_code == 0 and "look 1/3 at 50 items: FAILURE" in stopped.output, stopped.output
        run_dir = project.run_dirs()[-1]
        before = _manifest(run_dir)
        assert before["status"] == "stopped_early"

        # Even with a looser margin, which would decide that look differently, nothing is re-decided.
        _setup(project, server, margin=1.0)
        server.log.reset()
        resumed = cli("run", str(project.suite_path), "--sample", "150", "--prompt-version", "v2")
        assert server.log.total == 0  # nothing sent
    assert resumed.exit_code == 0, resumed.output
    after = _manifest(run_dir)
    assert after["looks"] == before["looks"] and after["status"] == "stopped_early"
    assert f"Run {run_dir.name} is a sequential sample that stopped early at look 1/3 (FAILURE)" in resumed.output
    assert after["ended_at"] == before["ended_at"]
