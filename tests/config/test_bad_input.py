"""Bad input: a clear message naming file, place and expectation; exit code 2; nothing sent."""

from __future__ import annotations

from tests.conftest import TICKETS, base_suite, write_records


def _assert_bad_input(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    for fragment in fragments:
        assert fragment in result.output, f"{fragment!r} not in:\n{result.output}"


def test_malformed_yaml_names_file_and_line(project, cli, fake_server):
    project.suite_path.write_text("name: demo\nslices: [\n  - name: all\nprompt: {\n", encoding="utf-8")
    result = cli("run", str(project.suite_path))
    _assert_bad_input(result, "demo.yaml", "malformed YAML", "line ")
    assert fake_server.log.total == 0


def test_unknown_field_names_its_path_and_line(project, cli, fake_server):
    suite = base_suite(fake_server.base_url)
    suite["targets"][0]["params"]["temprature"] = 0.5
    project.write_suite(suite)
    result = cli("run", str(project.suite_path))
    _assert_bad_input(result, "demo.yaml", "targets.0.params.temprature", "unknown field 'temprature'", "line 1")
    assert fake_server.log.total == 0


def test_wrong_type_says_what_is_expected(project, cli):
    suite = base_suite()
    suite["engine"]["concurrency"] = "lots"
    project.write_suite(suite)
    _assert_bad_input(cli("run", str(project.suite_path)), "engine.concurrency", "valid integer")


def test_unknown_provider_and_scorer(project, cli):
    suite = base_suite()
    suite["targets"][0]["provider"] = "openia"
    project.write_suite(suite)
    _assert_bad_input(cli("run", str(project.suite_path)), "targets.0.provider", "unknown provider 'openia'")
    suite = base_suite()
    suite["scorers"][0]["type"] = "acuracy"
    project.write_suite(suite)
    _assert_bad_input(cli("run", str(project.suite_path)), "scorers.0", "unknown scorer type 'acuracy'")


def test_bad_scorer_parameter_is_located(project, cli):
    suite = base_suite()
    suite["scorers"][0]["labels"] = "billing"
    project.write_suite(suite)
    _assert_bad_input(cli("run", str(project.suite_path)), "scorers.0.labels", "valid list")


def test_missing_template_variable_is_reported_before_sending(project, cli, fake_server):
    (project.root / "prompts" / "route" / "v1.j2").write_text("{{ text }} from {{ customer }}\nTeam:")
    project.write_suite(base_suite(fake_server.base_url))
    result = cli("run", str(project.suite_path))
    _assert_bad_input(result, "6 problems in the input", "line 1 (id 'a1'): missing customer",
                      "line 6 (id 'a6'): missing customer")
    assert fake_server.log.total == 0
    assert project.run_dirs() == []


def test_record_missing_a_field_is_reported_with_its_line(project, cli, fake_server):
    records = [dict(r) for r in TICKETS]
    del records[3]["text"]
    write_records(project.root / "suites" / "data" / "tickets.jsonl", records)
    project.write_suite(base_suite(fake_server.base_url))
    result = cli("run", str(project.suite_path))
    _assert_bad_input(result, "tickets.jsonl: line 4 (id 'a4'): missing text, which the prompt route@v1 uses")
    assert fake_server.log.total == 0


def test_missing_dataset_file(project, cli):
    suite = base_suite()
    suite["dataset"]["path"] = "data/nope.jsonl"
    project.write_suite(suite)
    _assert_bad_input(cli("run", str(project.suite_path)), "nope.jsonl", "dataset file not found")


def test_duplicate_ids_list_their_lines(project, cli):
    records = TICKETS + [dict(TICKETS[1], text="again")]
    write_records(project.root / "suites" / "data" / "tickets.jsonl", records)
    _assert_bad_input(cli("run", str(project.suite_path)), "duplicate item ID 'a2' (at line 2, line 7)")


def test_empty_slice(project, cli):
    suite = base_suite()
    suite["slices"] = [{"name": "none", "where": {"label": "spam"}}]
    project.write_suite(suite)
    _assert_bad_input(cli("run", str(project.suite_path)), "slice 'none' selects no items")


def test_missing_prompt_version(project, cli):
    suite = base_suite()
    suite["prompt"]["version"] = "v9"
    project.write_suite(suite)
    _assert_bad_input(cli("run", str(project.suite_path)), "prompt 'route' has no version 'v9'", "v9.j2")


def test_missing_api_key_stops_before_sending(project, cli, fake_server):
    suite = base_suite(fake_server.base_url, provider="anthropic")
    project.write_suite(suite)
    result = cli("run", str(project.suite_path))
    _assert_bad_input(result, "ANTHROPIC_API_KEY is not set")
    assert fake_server.log.total == 0


def test_missing_suite_file(cli, tmp_path):
    _assert_bad_input(cli("run", str(tmp_path / "nope.yaml")), "nope.yaml", "file not found")


# --- the gate policy: nonsense is refused when the suite is loaded, not when `gate` runs ----------

def _suite_with_gate(project, gate: dict) -> None:
    suite = base_suite()
    suite["gate"] = gate
    project.write_suite(suite)


def _line_of(project, text: str) -> int:
    """1-based line of the first suite line holding `text` (the suite is written by yaml.safe_dump)."""
    lines = project.suite_path.read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def test_a_gate_margin_of_zero_is_refused_with_file_line_and_field(project, cli):
    _suite_with_gate(project, {"primary": [{"metric": "accuracy", "margin": 0}]})
    line = _line_of(project, "margin: 0")
    for args in (("validate", str(project.suite_path)), ("gate", "any-run", "--suite", str(project.suite_path))):
        _assert_bad_input(cli(*args), "demo.yaml", f"line {line}, gate.primary.0.margin", "greater than 0")


def test_a_gate_margin_above_one_is_refused(project, cli):
    _suite_with_gate(project, {"primary": [{"metric": "accuracy", "margin": 2}]})
    _assert_bad_input(cli("validate", str(project.suite_path)), "demo.yaml",
                      f"line {_line_of(project, 'margin: 2')}, gate.primary.0.margin", "less than or equal to 1")


def test_a_gate_alpha_outside_zero_to_one_half_is_refused(project, cli):
    for alpha in (0, 0.5):
        _suite_with_gate(project, {"alpha": alpha})
        _assert_bad_input(cli("validate", str(project.suite_path)), "demo.yaml",
                          f"line {_line_of(project, 'alpha:')}, gate.alpha")


def test_a_primary_metric_listed_twice_is_refused(project, cli):
    _suite_with_gate(project, {"primary": [{"metric": "accuracy", "margin": 0.02},
                                           {"metric": "accuracy", "margin": 0.05}]})
    _assert_bad_input(cli("validate", str(project.suite_path)), "demo.yaml", "line ", "gate.primary.1.metric",
                      "metric 'accuracy' is a primary metric twice")


def test_a_guardrail_on_a_primary_metric_is_refused(project, cli):
    _suite_with_gate(project, {"primary": [{"metric": "accuracy"}], "guardrails": [{"metric": "accuracy"}]})
    _assert_bad_input(cli("validate", str(project.suite_path)), "demo.yaml", "line ", "gate.guardrails.0.metric",
                      "'accuracy' is already a primary metric")


def test_looks_without_a_sequential_sample_are_refused(project, cli):
    _suite_with_gate(project, {"sample": {"looks": 4}})
    _assert_bad_input(cli("validate", str(project.suite_path)), "demo.yaml", "line ", "gate.sample",
                      "looks only applies to a sequential sample")


def test_a_baseline_name_that_is_not_a_file_name_is_refused(project, cli):
    _suite_with_gate(project, {"baseline": "../production"})
    _assert_bad_input(cli("validate", str(project.suite_path)), "demo.yaml", "line ", "gate.baseline")


def test_two_targets_that_send_the_same_requests_are_refused(project, cli, fake_server):
    suite = base_suite(fake_server.base_url)
    suite["targets"] = [dict(suite["targets"][0], name="first"), dict(suite["targets"][0], name="again")]
    project.write_suite(suite)
    result = cli("run", str(project.suite_path))
    _assert_bad_input(result, "demo.yaml", "targets", "'first' and 'again' send the same requests")
    assert fake_server.log.total == 0 and project.run_dirs() == []
    suite["targets"][1]["params"] = {**suite["targets"][1]["params"], "max_tokens": 7}  # differing: accepted
    project.write_suite(suite)
    assert cli("run", str(project.suite_path)).exit_code == 0
