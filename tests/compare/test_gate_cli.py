"""The promotion gate end to end through the CLI: `baseline set/show`, `compare` and `gate` on real
runs that the fake OpenAI-compatible server answered (no mocks of the harness)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from harness.testing.fake_server import FakeLLMServer, keyword_replier
from tests.conftest import TICKET_REPLIES, TICKETS, base_suite, write_records

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_INCONCLUSIVE = 0, 1, 2, 3

# One phrase per team, each holding a key of TICKET_REPLIES, so the server routes it correctly...
PHRASES = {
    "billing": "I was billed twice on invoice {n}",
    "bug": "The export button crashes on report {n}",
    "feature request": "Please add dark mode to screen {n}",
    "account access": "Cannot log in on device {n}",
    "cancellation": "Cancel my plan number {n}",
}
# ...except every tenth ticket, a billing one the server routes to "bug": the baseline scores 0.9.
MISROUTED = "Refund the double charge on invoice {n}"

# Only the v2 prompt holds this text; the server then answers "bug" whatever the ticket says.
V2_MARK = "ZERO-SHOT"
V2_PROMPT = V2_MARK + " routing. Ticket: {{ text }}\nTeam:"
V1_OR_V2_REPLIES = {V2_MARK: "bug", **TICKET_REPLIES}


def generated_tickets(count: int) -> list[dict[str, str]]:
    teams = list(PHRASES)
    records = []
    for n in range(count):
        if n % 10 == 9:
            records.append({"id": f"t{n:03d}", "text": MISROUTED.format(n=n), "label": "billing"})
        else:
            team = teams[n % len(teams)]
            records.append({"id": f"t{n:03d}", "text": PHRASES[team].format(n=n), "label": team})
    return records


def use_generated_data(project, server_url: str, count: int, **changes) -> dict:
    """Replaces the project's 6 tickets by `count` generated ones, adds prompt v2, writes the suite."""
    write_records(project.root / "suites" / "data" / "tickets.jsonl", generated_tickets(count))
    (project.root / "prompts" / "route" / "v2.j2").write_text(V2_PROMPT, encoding="utf-8")
    suite = base_suite(server_url)
    suite["engine"]["concurrency"] = 16
    suite.update(changes)
    project.write_suite(suite)
    return suite


def run(cli, suite_path: Path, *args: str) -> str:
    """`evalbatch run`, which must complete; returns the new run's ID."""
    result = cli("run", str(suite_path), *args)
    assert result.exit_code == 0, result.output
    found = re.search(r"run (\S+): complete", result.output)
    assert found, result.output
    return found.group(1)


def reports(project) -> str:
    return str(project.root / "reports")


def flat(text: str) -> str:
    """Rich wraps long lines at 160 columns; compare text with whitespace collapsed."""
    return " ".join(text.split())


def error_text(result, project) -> str:
    """stderr with the tmp project path replaced (test names end up in it)."""
    return flat(result.stderr.replace(str(project.root), "<project>"))


# --- 1. baseline set / show ---------------------------------------------------------------------

def test_baseline_set_and_show_keep_the_history(project, cli, fake_server):
    project.write_suite(base_suite(fake_server.base_url))
    first = run(cli, project.suite_path)
    second = run(cli, project.suite_path)  # a rerun of complete work is a new run
    assert first != second

    result = cli("baseline", "set", str(project.suite_path), "--from", first, "--note", "first accepted")
    assert result.exit_code == 0, result.output
    path = project.root / "baselines" / "demo" / "production.json"
    assert path.is_file()
    assert f"set from run {first}" in result.output and str(path) in flat(result.output)
    stored = json.loads(path.read_text())
    assert stored["name"] == "production" and stored["snapshot"]["run_id"] == first
    assert sorted(stored["snapshot"]["items"]) == [f"a{n}" for n in range(1, 7)]
    assert [event["from_run"] for event in stored["history"]] == [first]

    shown = cli("baseline", "show", str(project.suite_path))
    assert shown.exit_code == 0, shown.output
    out = flat(shown.output)
    assert f"baseline production of demo: run {first}, route@v1" in out
    assert "model fake-model, 6 items, slices ['all']" in out
    assert "accuracy: 0.833 95% CI [" in out  # 5 of 6 tickets routed right
    assert "history:" in out and f"production <- run {first} (route@v1, fake-model) - first accepted" in out

    result = cli("baseline", "set", str(project.suite_path), "--from", second, "--note", "second accepted")
    assert result.exit_code == 0, result.output
    stored = json.loads(path.read_text())
    assert stored["snapshot"]["run_id"] == second
    assert [event["from_run"] for event in stored["history"]] == [first, second]
    assert [event["note"] for event in stored["history"]] == ["first accepted", "second accepted"]

    shown = cli("baseline", "show", str(project.suite_path))
    assert shown.exit_code == 0, shown.output
    assert f"baseline production of demo: run {second}, route@v1" in flat(shown.output)
    history = shown.output.split("history:\n", 1)[1].splitlines()
    assert len(history) == 2
    assert f"<- run {first} " in history[0] and "first accepted" in history[0]
    assert f"<- run {second} " in history[1] and "second accepted" in history[1]


# --- 2. identical candidate: PASS on enough items, INCONCLUSIVE on few ----------------------------

def test_identical_candidate_passes_on_300_items_and_is_inconclusive_on_20(project, cli, fake_server):
    use_generated_data(project, fake_server.base_url, 300)
    base_run = run(cli, project.suite_path)
    assert cli("baseline", "set", str(project.suite_path), "--from", base_run).exit_code == 0

    same = run(cli, project.suite_path)
    result = cli("gate", same, "--reports-dir", reports(project))
    out = flat(result.output)
    assert result.exit_code == EXIT_PASS, result.output
    assert "gate: PASS" in out and "PASS: accuracy (slice all) +0.0 pts, 95% CI [" in out and "(non-inferior)" in out
    as_json = cli("gate", same, "--reports-dir", reports(project), "--json")
    assert as_json.exit_code == EXIT_PASS
    evidence = json.loads(as_json.stdout)
    assert evidence["verdict"] == "PASS"
    [metric] = evidence["comparison"]["metrics"]
    assert metric["comparison"]["n"] == 300 and metric["comparison"]["mean_delta"] == 0

    few = run(cli, project.suite_path, "--limit", "20")
    result = cli("gate", few, "--reports-dir", reports(project))
    out = flat(result.output)
    assert result.exit_code == EXIT_INCONCLUSIVE, result.output
    assert "gate: INCONCLUSIVE" in out and "INCONCLUSIVE: accuracy (slice all) +0.0 pts, 95% CI [" in out
    needed = re.search(r"(\d+) items \((\d+) more\)", out)
    assert needed, out
    total, more = int(needed.group(1)), int(needed.group(2))
    assert more == total - 20 and 20 < total <= 300  # 300 identical items were enough above

    as_json = cli("gate", few, "--reports-dir", reports(project), "--json")
    assert as_json.exit_code == EXIT_INCONCLUSIVE
    evidence = json.loads(as_json.stdout)
    assert evidence["verdict"] == "INCONCLUSIVE"
    [metric] = evidence["comparison"]["gate"]["metrics"]
    assert (metric["items_needed"], metric["more_items_needed"]) == (total, more)
    assert evidence["comparison"]["metrics"][0]["comparison"]["n"] == 20
    pairing = evidence["comparison"]["pairing"]
    assert len(pairing["common"]) == 20 and len(pairing["only_baseline"]) == 280


# --- 3. clearly worse candidate: FAIL --------------------------------------------------------------

def test_clearly_worse_candidate_fails_and_leaves_gate_json(project, cli):
    with FakeLLMServer(keyword_replier(V1_OR_V2_REPLIES)) as server:
        use_generated_data(project, server.base_url, 300)
        base_run = run(cli, project.suite_path)
        assert cli("baseline", "set", str(project.suite_path), "--from", base_run).exit_code == 0
        worse = run(cli, project.suite_path, "--prompt-version", "v2")
    gate_file = project.root / "reports" / "demo" / worse / "gate.json"
    assert not gate_file.exists()

    result = cli("gate", worse, "--reports-dir", reports(project))
    out = flat(result.output)
    assert result.exit_code == EXIT_FAIL, result.output
    assert "gate: FAIL" in out
    assert "FAIL: accuracy (slice all) -70.0 pts" in out and "-2 pts margin" in out

    as_json = cli("gate", worse, "--reports-dir", reports(project), "--json")
    assert as_json.exit_code == EXIT_FAIL
    evidence = json.loads(as_json.stdout)
    assert evidence["verdict"] == "FAIL"
    [reason] = evidence["reasons"]
    assert reason.startswith("FAIL: accuracy (slice all)")
    [metric] = evidence["comparison"]["metrics"]
    assert metric["metric"] == "accuracy"
    assert metric["comparison"]["baseline_mean"] == pytest.approx(0.9)
    assert metric["comparison"]["candidate_mean"] == pytest.approx(0.2)

    assert gate_file.is_file()
    written = json.loads(gate_file.read_text())
    assert written["version"] == 1 and written["run_id"] == worse and written["verdict"] == "FAIL"
    assert written["baseline"]["kind"] == "baseline" and written["baseline"]["run_id"] == base_run
    [reason] = written["metrics"]
    assert (reason["metric"], reason["slice"], reason["verdict"]) == ("accuracy", "all", "FAIL")
    assert reason["mean_delta"] == pytest.approx(-0.7) and reason["margin"] == pytest.approx(0.02)
    assert written["reasons"][0].startswith("FAIL: accuracy (slice all) -70.0 pts")
    assert f"run {base_run}" in written["comparison"]["baseline_label"]


# --- 4. compare ------------------------------------------------------------------------------------

def test_compare_prints_metrics_and_drift_and_accepts_a_run_id_as_baseline(project, cli):
    with FakeLLMServer(keyword_replier(V1_OR_V2_REPLIES)) as server:
        use_generated_data(project, server.base_url, 100)
        base_run = run(cli, project.suite_path)
        assert cli("baseline", "set", str(project.suite_path), "--from", base_run).exit_code == 0
        candidate = run(cli, project.suite_path, "--prompt-version", "v2")

    result = cli("compare", candidate, "--reports-dir", reports(project))
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert f"candidate {candidate} vs baseline production (run {base_run}, route@v1): 100 paired items" in out
    assert "Metrics (paired by item; epochs averaged within items)" in out
    metric_row = next(line for line in result.output.splitlines() if line.startswith("│ accuracy"))
    assert re.search(r"0\.900\s*│\s*0\.200\s*│\s*-0\.700", metric_row), metric_row
    assert "Drift (no ground truth needed; BH across signals)" in out
    drift_rows = {line.split("│")[1].strip(): line for line in result.output.splitlines()
                  if line.startswith("│ ") and line.count("│") == 7}
    assert {"label distribution", "empty output", "refusal", "output length"} <= set(drift_rows)
    assert "ALARM" in drift_rows["label distribution"]  # v2 answers "bug" to everything
    assert "ALARM" not in drift_rows["empty output"]
    assert "gate: FAIL" in out

    as_json = cli("compare", candidate, "--reports-dir", reports(project), "--json")
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)
    assert len(report["pairing"]["common"]) == 100
    assert report["pairing"]["only_baseline"] == [] and report["pairing"]["only_candidate"] == []
    [metric] = report["metrics"]
    assert metric["metric"] == "accuracy" and metric["comparison"]["n"] == 100
    assert metric["comparison"]["mean_delta"] == pytest.approx(-0.7)
    assert report["gate"]["verdict"] == "FAIL"

    by_run = cli("compare", candidate, "--reports-dir", reports(project), "--baseline", base_run)
    assert by_run.exit_code == 0, by_run.output
    assert f"vs baseline run {base_run} (route@v1): 100 paired items" in flat(by_run.output)
    # and the other way round: v1 against the v2 run is an improvement
    reverse = cli("gate", base_run, "--reports-dir", reports(project), "--baseline", candidate)
    assert reverse.exit_code == EXIT_PASS, reverse.output
    assert "gate: PASS" in reverse.output


# --- 5. bad input: exit 2 with a clear message -----------------------------------------------------

def test_runs_of_another_suite_are_refused(project, cli, fake_server):
    suite = base_suite(fake_server.base_url)
    project.write_suite(suite)
    demo_run = run(cli, project.suite_path)
    assert cli("baseline", "set", str(project.suite_path), "--from", demo_run).exit_code == 0
    other_path = project.root / "suites" / "other.yaml"
    other_path.write_text(yaml.safe_dump({**suite, "name": "other"}, sort_keys=False), encoding="utf-8")
    other_run = run(cli, other_path)
    # Run folders, not IDs: both suites send the same requests, so runs started within the same
    # second get the same ID under reports/demo/ and reports/other/.
    demo_folder = project.root / "reports" / "demo" / demo_run
    other_folder = project.root / "reports" / "other" / other_run
    assert other_folder.is_dir()

    result = cli("gate", str(other_folder), "--reports-dir", reports(project), "--suite", str(project.suite_path))
    assert result.exit_code == EXIT_BAD_INPUT
    assert f"run {other_run} is of suite 'other', not 'demo'" in error_text(result, project)

    result = cli("compare", str(other_folder), "--reports-dir", reports(project), "--baseline", str(demo_folder))
    assert result.exit_code == EXIT_BAD_INPUT
    assert "the baseline is of suite 'demo', the candidate of 'other'" in error_text(result, project)

    result = cli("gate", str(other_folder), "--reports-dir", reports(project), "--baseline", str(demo_folder))
    assert result.exit_code == EXIT_BAD_INPUT
    assert "the baseline is of suite 'demo', the candidate of 'other'" in error_text(result, project)
    assert not (other_folder / "gate.json").exists()

    result = cli("baseline", "set", str(project.suite_path), "--from", str(other_folder))
    assert result.exit_code == EXIT_BAD_INPUT
    assert f"run <project>/reports/other/{other_run} is of suite 'other', not 'demo'" in error_text(result, project)
    stored = json.loads((project.root / "baselines" / "demo" / "production.json").read_text())
    assert stored["snapshot"]["run_id"] == demo_run  # the refused set changed nothing
    assert not (project.root / "baselines" / "other").exists()


def test_runs_of_other_slices_are_refused(project, cli, fake_server):
    suite = base_suite(fake_server.base_url)
    suite["slices"] = [{"name": "all"}, {"name": "first3", "first_n": 3}]
    project.write_suite(suite)
    base_run = run(cli, project.suite_path)
    assert cli("baseline", "set", str(project.suite_path), "--from", base_run).exit_code == 0
    candidate = run(cli, project.suite_path, "--slice", "first3")

    for command in ("gate", "compare"):
        result = cli(command, candidate, "--reports-dir", reports(project))
        assert result.exit_code == EXIT_BAD_INPUT, result.output
        message = error_text(result, project)
        assert "the baseline evaluated slices ['all'], the candidate ['first3']" in message
        assert "hint: run the candidate on the baseline's slices (--slice)" in message
    assert not (project.root / "reports" / "demo" / candidate / "gate.json").exists()


def test_the_same_slices_in_another_order_are_comparable(project, cli, fake_server):
    suite = base_suite(fake_server.base_url)
    suite["slices"] = [{"name": "all"}, {"name": "head", "first_n": 3}, {"name": "picked", "where": {"id": ["a2", "a4"]}}]
    suite["evaluate"] = ["head", "picked"]
    project.write_suite(suite)
    base_run = run(cli, project.suite_path)
    assert cli("baseline", "set", str(project.suite_path), "--from", base_run).exit_code == 0
    candidate = run(cli, project.suite_path, "--slice", "picked", "--slice", "head")  # the same 4 items

    result = cli("gate", candidate, "--reports-dir", reports(project))
    assert result.exit_code == EXIT_INCONCLUSIVE, result.output  # 4 identical items: too few to pass
    assert "gate: INCONCLUSIVE" in result.output


def test_a_changed_dataset_is_refused(project, cli, fake_server):
    project.write_suite(base_suite(fake_server.base_url))
    base_run = run(cli, project.suite_path)
    assert cli("baseline", "set", str(project.suite_path), "--from", base_run).exit_code == 0
    edited = [dict(t, text=t["text"] + " today") if t["id"] == "a3" else t for t in TICKETS]
    write_records(project.root / "suites" / "data" / "tickets.jsonl", edited)
    candidate = run(cli, project.suite_path)

    for command in ("gate", "compare"):
        result = cli(command, candidate, "--reports-dir", reports(project))
        assert result.exit_code == EXIT_BAD_INPUT, result.output
        message = error_text(result, project)
        assert "the baseline's dataset fingerprint does not match the candidate's" in message
        assert "the data changed" in message and "hint: re-run the baseline on the current data" in message
    # the same check holds when the baseline is a run ID rather than a saved baseline
    result = cli("compare", candidate, "--reports-dir", reports(project), "--baseline", base_run)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "dataset fingerprint does not match" in error_text(result, project)


def test_an_unknown_gate_metric_in_the_suite_is_refused(project, cli, fake_server):
    suite = base_suite(fake_server.base_url)
    project.write_suite(suite)
    earlier = run(cli, project.suite_path)
    assert cli("baseline", "set", str(project.suite_path), "--from", earlier).exit_code == 0
    sent = fake_server.log.total
    suite["gate"] = {"primary": [{"metric": "acuracy", "margin": 0.05}]}
    project.write_suite(suite)

    for args in (("validate", str(project.suite_path)),
                 ("run", str(project.suite_path)),
                 ("baseline", "show", str(project.suite_path)),
                 ("baseline", "set", str(project.suite_path), "--from", earlier),
                 ("gate", earlier, "--reports-dir", reports(project)),
                 ("compare", earlier, "--reports-dir", reports(project))):
        result = cli(*args)
        assert result.exit_code == EXIT_BAD_INPUT, (args, result.output)
        message = error_text(result, project)
        assert "<project>/suites/demo.yaml: line" in message, (args, message)
        assert "gate.primary.0.metric: unknown metric 'acuracy'; the suite's scorers are ['accuracy']" in message
    assert fake_server.log.total == sent  # nothing was sent
    assert len(project.run_dirs()) == 1
    assert not (project.root / "reports" / "demo" / earlier / "gate.json").exists()


def test_a_missing_baseline_is_reported(project, cli, fake_server):
    project.write_suite(base_suite(fake_server.base_url))
    candidate = run(cli, project.suite_path)

    for args in (("gate", candidate, "--reports-dir", reports(project)),
                 ("compare", candidate, "--reports-dir", reports(project)),
                 ("baseline", "show", str(project.suite_path))):
        result = cli(*args)
        assert result.exit_code == EXIT_BAD_INPUT, (args, result.output)
        message = error_text(result, project)
        assert "<project>/baselines/demo/production.json: no such baseline" in message
        assert "hint: create one with: evalbatch baseline set SUITE --from RUN_ID" in message

    assert cli("baseline", "set", str(project.suite_path), "--from", candidate).exit_code == 0
    result = cli("baseline", "show", str(project.suite_path), "--name", "staging")
    assert result.exit_code == EXIT_BAD_INPUT
    message = error_text(result, project)
    assert "<project>/baselines/demo/staging.json: no such baseline" in message
    assert "baselines of this suite: ['production']" in message


def test_an_unknown_baseline_name_on_the_command_line_is_reported_as_such(project, cli, fake_server):
    project.write_suite(base_suite(fake_server.base_url))
    candidate = run(cli, project.suite_path)
    assert cli("baseline", "set", str(project.suite_path), "--from", candidate).exit_code == 0

    result = cli("gate", candidate, "--reports-dir", reports(project), "--baseline", "staging")
    assert result.exit_code == EXIT_BAD_INPUT
    message = error_text(result, project)
    assert "baseline 'staging'" in message
    assert "production" in message  # the baselines that do exist


def test_an_unknown_run_id_is_reported(project, cli, fake_server):
    project.write_suite(base_suite(fake_server.base_url))
    real = run(cli, project.suite_path)
    assert cli("baseline", "set", str(project.suite_path), "--from", real).exit_code == 0
    missing = "20000101T000000Z-deadbeef"

    for args in (("gate", missing, "--reports-dir", reports(project)),
                 ("compare", missing, "--reports-dir", reports(project)),
                 ("baseline", "set", str(project.suite_path), "--from", missing)):
        result = cli(*args)
        assert result.exit_code == EXIT_BAD_INPUT, (args, result.output)
        message = error_text(result, project)
        assert f"no run '{missing}' (looked under <project>/reports" in message, (args, message)
        assert "hint: give a run ID from `evalbatch runs SUITE`" in message

    result = cli("compare", real, "--reports-dir", reports(project), "--baseline", missing)
    assert result.exit_code == EXIT_BAD_INPUT
    assert f"no baseline '{missing}' of suite 'demo' and no run '{missing}'" in error_text(result, project)
    assert not (project.root / "reports" / "demo" / real / "gate.json").exists()
    stored = json.loads((project.root / "baselines" / "demo" / "production.json").read_text())
    assert [event["from_run"] for event in stored["history"]] == [real]


# --- 6. epochs: flaky items and pass^k -------------------------------------------------------------

def every_third_answer_wrong(keys: tuple[str, ...]):
    """TICKET_REPLIES, except that prompts holding one of `keys` get a wrong answer on every third call."""
    right = keyword_replier(TICKET_REPLIES)
    calls: Counter = Counter()

    def reply(prompt: str) -> str:
        if any(key in prompt for key in keys):
            calls[prompt] += 1
            if calls[prompt] % 3 == 0:
                return "cancellation"
        return right(prompt)

    return reply


def test_epochs_show_flaky_items_and_pass_k(project, cli):
    # a3 ("dark mode") and a4 ("log in") are right in 2 of their 3 epochs; a6 is always wrong.
    with FakeLLMServer(every_third_answer_wrong(("dark mode", "log in"))) as server:
        suite = base_suite(server.base_url)
        suite["epochs"] = 3
        suite["targets"][0]["params"]["temperature"] = 0.7
        project.write_suite(suite)
        base_run = run(cli, project.suite_path)
        assert cli("baseline", "set", str(project.suite_path), "--from", base_run).exit_code == 0
        candidate = run(cli, project.suite_path)
        assert server.log.total == 2 * 6 * 3

    result = cli("compare", candidate, "--reports-dir", reports(project))
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    # items, not samples: 6 paired items; mean over items (3 + 2/3 + 2/3) / 6; all 3 epochs right: 3 of 6
    assert "6 paired items" in out
    assert "accuracy: 3 epochs, mean 0.722, pass^3 0.500" in out
    assert ("flaky items (2; epochs disagree): a3 accuracy agreement 0.67, a4 accuracy agreement 0.67") in out

    report = json.loads(cli("compare", candidate, "--reports-dir", reports(project), "--json").stdout)
    assert {flaky["item_id"] for flaky in report["flaky"]} == {"a3", "a4"}
    assert all(sorted(flaky["scores"]) == [0.0, 1.0, 1.0] for flaky in report["flaky"])
    [epochs] = report["epochs"]
    assert (epochs["metric"], epochs["k"]) == ("accuracy", 3)
    assert epochs["pass_all_k"] == pytest.approx(0.5)
    assert epochs["mean"] == pytest.approx(13 / 18)
    [metric] = report["metrics"]
    assert metric["comparison"]["n"] == 6 and metric["comparison"]["samples_per_item"] == 3
