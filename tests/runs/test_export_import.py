"""`evalbatch export --format openai-batch` and `evalbatch import`: a round trip through the fake
server's Batch API (real openai client) and through a vLLM run-batch output written by hand gives
the scores of a realtime run of the same suite; bad lines are rejected by file:line and nothing
stored is lost."""

from __future__ import annotations

import io
import json
from pathlib import Path

import openai
import pytest

from harness.commands.export import _chunks
from harness.engine.states import RequestState
from harness.engine.store import RunStore
from harness.testing.fake_server import FakeLLMServer, FaultRule
from tests.conftest import TICKET_REPLIES, TICKETS, base_suite


def _run_folder(reports: Path) -> Path:
    (folder,) = [p for p in (reports / "demo").iterdir() if p.is_dir()]
    return folder


def _scores(folder: Path) -> dict[str, dict]:
    store = RunStore.existing(folder)
    try:
        return {rid: {name: (s["value"], s["passed"]) for name, s in scores.items()}
                for rid, scores in store.scores_by_request().items()}
    finally:
        store.close()


def _states(folder: Path) -> dict[str, RequestState]:
    store = RunStore.existing(folder)
    try:
        return {r.request_id: r.state for r in store.requests()}
    finally:
        store.close()


def _export(cli, project, reports: Path, out: Path) -> list[dict]:
    result = cli("export", str(project.suite_path), "--format", "openai-batch", "--reports-dir", str(reports),
                 "--out", str(out))
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()]


def _realtime(cli, project, tmp_path: Path) -> Path:
    reports = tmp_path / "realtime"
    assert cli("run", str(project.suite_path), "--reports-dir", str(reports)).exit_code == 0
    return _run_folder(reports)


def _through_fake_batch_api(server: FakeLLMServer, requests: Path, out: Path) -> None:
    client = openai.OpenAI(api_key="test", base_url=server.base_url + "/v1", max_retries=0)
    uploaded = client.files.create(file=("in.jsonl", io.BytesIO(requests.read_bytes())), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.output_file_id
    out.write_text(client.files.content(batch.output_file_id).text)


def test_round_trip_through_the_fake_batch_api_scores_as_a_realtime_run(project, cli, fake_server, tmp_path):
    project.write_suite(base_suite(fake_server.base_url))
    realtime = _realtime(cli, project, tmp_path)
    reports = tmp_path / "batch"
    exported = _export(cli, project, reports, tmp_path / "requests.jsonl")
    folder = _run_folder(reports)
    assert {line["custom_id"] for line in exported} == set(_states(folder)) == set(_states(realtime))
    assert all(line["method"] == "POST" and line["url"] == "/v1/chat/completions" for line in exported)
    assert {line["body"]["model"] for line in exported} == {"fake-model"}
    assert exported[0]["body"]["max_tokens"] == 5 and exported[0]["body"]["temperature"] == 0
    assert set(_states(folder).values()) == {RequestState.QUEUED}  # nothing was sent

    outputs = tmp_path / "outputs.jsonl"
    _through_fake_batch_api(fake_server, tmp_path / "requests.jsonl", outputs)
    result = cli("import", folder.name, str(outputs), "--reports-dir", str(reports),
                 "--requests", str(tmp_path / "requests.jsonl"))
    assert result.exit_code == 0, result.output
    assert "imported 6 answer(s) and 0 failure(s)" in result.output and "the run is complete" in result.output
    realtime_scores = _scores(realtime)
    assert len(realtime_scores) == 6 and {s["accuracy"][1] for s in realtime_scores.values()} == {True, False}
    assert _scores(folder) == realtime_scores
    lines = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    assert {line["origin"] for line in lines} == {"import"} and len(lines) == 6
    assert json.loads((folder / "manifest.json").read_text())["status"] == "complete"
    assert sum(fake_server.batches.log.answered.values()) == 6

    again = cli("import", folder.name, str(outputs), "--reports-dir", str(reports))
    assert again.exit_code == 0 and "kept 6 request(s) that had already succeeded" in again.output
    assert _scores(folder) == _scores(realtime)


def _vllm_line(custom_id: str, answer: str, model: str = "fake-model") -> dict:
    """vLLM run-batch's BatchRequestOutput for a chat completion (vllm/entrypoints/openai/run_batch.py)."""
    return {"id": f"vllm-{custom_id[1:9]}", "custom_id": custom_id, "error": None,
            "response": {"status_code": 200, "request_id": f"vllm-batch-{custom_id[1:9]}", "body": {
                "id": f"chatcmpl-{custom_id[1:9]}", "object": "chat.completion", "created": 1764460800, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer, "tool_calls": [],
                                                     "reasoning_content": None},
                             "logprobs": None, "finish_reason": "stop", "stop_reason": None}],
                "usage": {"prompt_tokens": 12, "total_tokens": 13, "completion_tokens": 1,
                          "prompt_tokens_details": None},
                "prompt_logprobs": None}}}


def _answer(prompt: str) -> str:
    """What the fake model answers (tests/conftest.py's TICKET_REPLIES), for a hand-written output."""
    return next((reply for key, reply in TICKET_REPLIES.items() if key in prompt), "ok")


def _by_hand(exported: list[dict]) -> list[dict]:
    return [_vllm_line(line["custom_id"], _answer(line["body"]["messages"][-1]["content"]))
            for line in reversed(exported)]


def _write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_a_vllm_output_written_by_hand_scores_as_a_realtime_run(project, cli, fake_server, tmp_path):
    project.write_suite(base_suite(fake_server.base_url))
    realtime = _realtime(cli, project, tmp_path)
    reports = tmp_path / "vllm"
    exported = _export(cli, project, reports, tmp_path / "requests.jsonl")
    outputs = _write_jsonl(tmp_path / "vllm-out.jsonl", _by_hand(exported))
    result = cli("import", str(_run_folder(reports)), str(outputs))
    assert result.exit_code == 0, result.output
    assert _scores(_run_folder(reports)) == _scores(realtime)
    assert len(_scores(realtime)) == len(TICKETS) == len(exported)


def test_bad_lines_are_rejected_by_file_and_line_and_nothing_is_imported(project, cli, tmp_path):
    reports = tmp_path / "runs"
    exported = _export(cli, project, reports, tmp_path / "requests.jsonl")
    folder = _run_folder(reports)
    good = _by_hand(exported)
    lines = [good[0], "{not json", {**good[1], "custom_id": "r-unknown"},
             _vllm_line(exported[2]["custom_id"], "bug", model="another-model"), good[0], {"custom_id": ""}]
    outputs = _write_jsonl(tmp_path / "bad.jsonl", lines)
    result = cli("import", folder.name, str(outputs), "--reports-dir", str(reports))
    assert result.exit_code == 2
    message = result.output
    assert "5 line(s) rejected; nothing was imported" in message
    assert f"{outputs}:2: not an OpenAI batch output line (not JSON" in message
    assert f"{outputs}:3: custom_id 'r-unknown' is no request of this run" in message
    assert f"{outputs}:4: custom_id {exported[2]['custom_id']!r} was answered by model 'another-model'" in message
    assert f"{outputs}:5: custom_id {good[0]['custom_id']!r} again (first at line 1)" in message
    assert f"{outputs}:6: not an OpenAI batch output line (custom_id:" in message
    assert set(_states(folder).values()) == {RequestState.QUEUED}
    assert not _scores(folder)


def test_a_requests_file_whose_body_differs_is_rejected(project, cli, tmp_path):
    reports = tmp_path / "runs"
    exported = _export(cli, project, reports, tmp_path / "requests.jsonl")
    tampered = [dict(line) for line in exported]
    tampered[3] = {**tampered[3], "body": {**tampered[3]["body"], "temperature": 0.7}}
    requests = _write_jsonl(tmp_path / "tampered.jsonl", tampered)
    outputs = _write_jsonl(tmp_path / "out.jsonl", _by_hand(exported))
    result = cli("import", str(_run_folder(reports)), str(outputs), "--requests", str(requests))
    assert result.exit_code == 2
    assert (f"{requests}:4: custom_id {exported[3]['custom_id']!r}: the body differs from the one the run sends "
            "for this request (fields temperature)") in result.output
    assert not _scores(_run_folder(reports))


def test_error_lines_are_failures_and_successes_are_never_overwritten(project, cli, tmp_path):
    reports = tmp_path / "runs"
    exported = _export(cli, project, reports, tmp_path / "requests.jsonl")
    folder = _run_folder(reports)
    first, second, third = (line["custom_id"] for line in exported[:3])
    answers = _by_hand(exported)
    answered = next(line for line in answers if line["custom_id"] == first)
    outputs = _write_jsonl(tmp_path / "errors.jsonl", [
        answered,
        {"id": "batch_req_2", "custom_id": second, "response": None,
         "error": {"code": "batch_expired", "message": "This request could not be executed before the completion "
                                                       "window expired."}},
        {"id": "batch_req_3", "custom_id": third, "error": None,
         "response": {"status_code": 400, "request_id": "req_3",
                      "body": {"error": {"message": "Invalid 'max_tokens'", "type": "invalid_request_error"}}}},
    ])
    result = cli("import", folder.name, str(outputs), "--reports-dir", str(reports))
    assert result.exit_code == 1, result.output
    assert "imported 1 answer(s) and 2 failure(s)" in result.output and "the run is incomplete" in result.output
    states = _states(folder)
    assert states[first] == RequestState.SUCCEEDED
    assert states[second] == RequestState.FAILED_RETRYABLE
    assert states[third] == RequestState.FAILED_TERMINAL
    lines = {json.loads(line)["request_id"]: json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()}
    assert "batch_expired" in lines[second]["error"] and "HTTP 400" in lines[third]["error"]

    # The same request answered differently later: the first success stays.
    changed = {**answered, "response": {**answered["response"], "body": {
        **answered["response"]["body"], "choices": [{"index": 0, "message": {"role": "assistant", "content": "bug"},
                                                     "finish_reason": "stop"}]}}}
    before = _scores(folder)[first]
    result = cli("import", folder.name, str(_write_jsonl(tmp_path / "again.jsonl", [changed])), "--reports-dir",
                 str(reports))
    assert result.exit_code == 0 and "kept 1 request(s)" in result.output
    assert _scores(folder)[first] == before


@pytest.mark.parametrize("provider", ["anthropic"])
def test_only_openai_compatible_targets_export(project, cli, tmp_path, provider, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
    project.write_suite(base_suite(provider=provider))
    result = cli("export", str(project.suite_path), "--format", "openai-batch", "--reports-dir", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert "no requests of an OpenAI-compatible target to export" in result.output


def test_one_file_per_target_each_of_one_model(project, cli, tmp_path):
    suite = base_suite()
    suite["targets"].append({**suite["targets"][0], "name": "other", "model": "other-model"})
    project.write_suite(suite)
    out = tmp_path / "requests.jsonl"
    result = cli("export", str(project.suite_path), "--format", "openai-batch", "--reports-dir",
                 str(tmp_path / "r"), "--out", str(out))
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.glob("requests.*.jsonl"))
    assert [f.name for f in files] == ["requests.fake.jsonl", "requests.other.jsonl"] and not out.exists()
    models = [{json.loads(line)["body"]["model"] for line in f.read_text().splitlines()} for f in files]
    assert models == [{"fake-model"}, {"other-model"}]
    assert all(len(f.read_text().splitlines()) == len(TICKETS) for f in files)


def test_files_split_at_the_per_file_limits():
    lines = [f'{{"n": {i}}}\n' for i in range(7)]
    assert [len(chunk) for chunk in _chunks(iter(lines), max_requests=3)] == [3, 3, 1]
    assert [len(chunk) for chunk in _chunks(iter(lines), max_bytes=len(lines[0]) * 2)] == [2, 2, 2, 1]


def test_a_realtime_run_left_incomplete_exports_only_what_did_not_succeed(project, cli, tmp_path):
    """The scale-out path: what a realtime run could not finish is run elsewhere and imported."""
    with FakeLLMServer(keyword_replier_for_tickets(), faults=[FaultRule(status=400, times=99, match="crashes")]) as server:
        project.write_suite(base_suite(server.base_url))
        reports = tmp_path / "runs"
        assert cli("run", str(project.suite_path), "--reports-dir", str(reports)).exit_code == 1
    folder = _run_folder(reports)
    out = tmp_path / "rest.jsonl"
    export = ("export", folder.name, "--format", "openai-batch", "--reports-dir", str(reports), "--out", str(out))
    result = cli(*export)
    assert result.exit_code == 0 and "1 request(s) failed terminally and are not exported" in result.output
    assert "nothing to export" in result.output and not out.exists()
    result = cli(*export, "--failed")
    assert result.exit_code == 0, result.output
    (line,) = [json.loads(text) for text in out.read_text().splitlines()]
    assert "crashes" in line["body"]["messages"][-1]["content"]
    assert _states(folder)[line["custom_id"]] == RequestState.QUEUED  # in a new retry round
    outputs = _write_jsonl(tmp_path / "out.jsonl", _by_hand([line]))
    result = cli("import", folder.name, str(outputs), "--reports-dir", str(reports))
    assert result.exit_code == 0 and "the run is complete" in result.output
    assert set(_states(folder).values()) == {RequestState.SUCCEEDED}
    assert _scores(folder)[line["custom_id"]]["accuracy"] == (1.0, True)


def keyword_replier_for_tickets():
    from harness.testing.fake_server import keyword_replier

    return keyword_replier(TICKET_REPLIES)


def test_a_run_in_use_is_refused_and_an_empty_file_is_bad_input(project, cli, tmp_path):
    from harness.runs.lock import RunLock

    reports = tmp_path / "runs"
    exported = _export(cli, project, reports, tmp_path / "requests.jsonl")
    folder = _run_folder(reports)
    outputs = _write_jsonl(tmp_path / "out.jsonl", _by_hand(exported))
    with RunLock.acquire(folder, folder.name):  # another process is working on the run
        result = cli("import", str(folder), str(outputs))
        assert result.exit_code == 2 and "is in use by" in result.output
        assert cli("export", str(folder), "--format", "openai-batch").exit_code == 2
    assert set(_states(folder).values()) == {RequestState.QUEUED}
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    result = cli("import", str(folder), str(empty))
    assert result.exit_code == 2 and "no output lines in the file" in result.output


def test_an_expired_fake_batch_imports_its_output_and_error_files_and_the_rest_goes_again(
        project, cli, fake_server, tmp_path):
    from harness.testing.fake_batch_lifecycle import BatchScript

    project.write_suite(base_suite(fake_server.base_url))
    realtime_scores = _scores(_realtime(cli, project, tmp_path))
    reports = tmp_path / "batch"
    exported = _export(cli, project, reports, tmp_path / "requests.jsonl")
    folder = _run_folder(reports)
    fake_server.batches.script = BatchScript(outcome="expired", done_lines=3, line_errors={"crashes": 400})
    client = openai.OpenAI(api_key="test", base_url=fake_server.base_url + "/v1", max_retries=0)
    uploaded = client.files.create(file=("in.jsonl", (tmp_path / "requests.jsonl").read_bytes()), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    while batch.status != "expired":
        batch = client.batches.retrieve(batch.id)
    output = _write_jsonl(tmp_path / "output.jsonl", client.files.content(batch.output_file_id).text.splitlines())
    errors = _write_jsonl(tmp_path / "errors.jsonl", client.files.content(batch.error_file_id).text.splitlines())
    assert cli("import", folder.name, str(output), "--reports-dir", str(reports)).exit_code == 0
    assert cli("import", folder.name, str(errors), "--reports-dir", str(reports)).exit_code == 1
    states = _states(folder)
    crashes = next(line["custom_id"] for line in exported if "crashes" in line["body"]["messages"][-1]["content"])
    assert states[crashes] == RequestState.FAILED_TERMINAL  # HTTP 400: sending it again cannot help
    assert sorted(states.values()).count(RequestState.SUCCEEDED) == 2
    assert sorted(states.values()).count(RequestState.FAILED_RETRYABLE) == 3  # batch_expired: never ran

    rest = tmp_path / "rest.jsonl"
    result = cli("export", folder.name, "--format", "openai-batch", "--reports-dir", str(reports), "--out", str(rest))
    assert result.exit_code == 0 and len(rest.read_text().splitlines()) == 3
    fake_server.batches.script = BatchScript()
    _through_fake_batch_api(fake_server, rest, tmp_path / "rest-out.jsonl")
    assert cli("import", folder.name, str(tmp_path / "rest-out.jsonl"), "--reports-dir", str(reports)).exit_code == 0
    imported = _scores(folder)
    assert set(imported) == set(realtime_scores) - {crashes}
    assert all(imported[rid] == realtime_scores[rid] for rid in imported)
    assert max(fake_server.batches.log.answered.values()) == 1  # no request answered twice
