"""The fake server's Batch APIs through the real openai and anthropic clients: every scripted
lifecycle, the providers' input validation and limits, and the server-side counters."""

from __future__ import annotations

import io
import json
import urllib.request
from collections import Counter

import anthropic
import openai
import pytest

from harness.testing.fake_batch_lifecycle import BatchLimits, BatchScript
from harness.testing.fake_server import FakeLLMServer, keyword_replier

REPLIES = {"billed": "billing", "crashes": "bug", "dark mode": "feature request", "log in": "account access",
           "Cancel": "cancellation"}
PROMPTS = ["I was billed twice", "The app crashes", "Add dark mode", "Cannot log in", "Cancel my plan"]
TERMINAL = ("completed", "failed", "expired", "cancelled")


@pytest.fixture
def server():
    with FakeLLMServer(keyword_replier(REPLIES)) as started:
        yield started


def _openai(server: FakeLLMServer) -> openai.OpenAI:
    return openai.OpenAI(api_key="test", base_url=server.base_url + "/v1", max_retries=0)


def _anthropic(server: FakeLLMServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="test", base_url=server.base_url, max_retries=0)


def _body(prompt: str, model: str = "fake-model") -> dict:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": 5}


def _input_file(lines: list[dict]) -> io.BytesIO:
    return io.BytesIO("".join(json.dumps(line) + "\n" for line in lines).encode())


def _lines(prompts: list[str] = PROMPTS, model: str = "fake-model") -> list[dict]:
    return [{"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions", "body": _body(p, model)}
            for i, p in enumerate(prompts)]


def _submit(client: openai.OpenAI, lines: list[dict]):
    uploaded = client.files.create(file=("batch.jsonl", _input_file(lines)), purpose="batch")
    return client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                 completion_window="24h", metadata={"run": "r1"})


def _poll_to_end(client: openai.OpenAI, batch_id: str) -> tuple[list[str], object]:
    seen = []
    batch = client.batches.retrieve(batch_id)
    seen.append(batch.status)
    while batch.status not in TERMINAL:
        batch = client.batches.retrieve(batch_id)
        seen.append(batch.status)
    return seen, batch


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_openai_batch_completes_through_every_stage_with_realtime_answers(server):
    client = _openai(server)
    created = _submit(client, _lines())
    assert created.status == "validating" and created.request_counts.total == 5
    assert created.metadata == {"run": "r1"} and created.completion_window == "24h"
    seen, batch = _poll_to_end(client, created.id)
    assert seen == ["in_progress", "finalizing", "completed"]
    assert batch.request_counts.completed == 5 and batch.request_counts.failed == 0
    assert batch.error_file_id is None and batch.model == "fake-model"
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at and batch.expires_at
    assert batch.usage.input_tokens > 0
    output = _jsonl(client.files.content(batch.output_file_id).text)
    assert [line["custom_id"] for line in output] != [f"req-{i}" for i in range(5)]  # out of order
    by_id = {line["custom_id"]: line for line in output}
    assert set(by_id) == {f"req-{i}" for i in range(5)}
    for i, prompt in enumerate(PROMPTS):
        line = by_id[f"req-{i}"]
        assert line["error"] is None and line["response"]["status_code"] == 200
        assert line["id"].startswith("batch_req_") and line["response"]["request_id"]
        realtime = client.chat.completions.create(**_body(prompt))
        assert line["response"]["body"]["choices"][0]["message"]["content"] == realtime.choices[0].message.content
    output_file = client.files.retrieve(batch.output_file_id)
    assert output_file.purpose == "batch_output"
    stats = server.batches.log
    assert stats.creations == Counter({"openai": 1}) and stats.files_uploaded == 1
    assert stats.answered == Counter({f"req-{i}": 1 for i in range(5)})
    assert client.batches.retrieve(batch.id).status == "completed"  # stays at its end; nothing answered again
    assert stats.answered == Counter({f"req-{i}": 1 for i in range(5)})


def test_openai_batch_fails_at_validation_naming_each_bad_line(server):
    client = _openai(server)
    lines = _lines(PROMPTS[:3])
    lines.append({**lines[0], "body": _body("again")})  # duplicate custom_id
    lines.append({"custom_id": "other", "method": "POST", "url": "/v1/chat/completions",
                  "body": _body("x", model="another-model")})
    lines.append({"custom_id": "wrong-url", "method": "POST", "url": "/v1/embeddings", "body": _body("x")})
    created = _submit(client, lines)
    seen, batch = _poll_to_end(client, created.id)
    assert seen == ["failed"] and batch.failed_at
    errors = {(e.code, e.line, e.param) for e in batch.errors.data}
    assert errors == {("duplicate_custom_id", 4, "custom_id"), ("model_mismatch", 5, "body.model"),
                      ("mismatched_endpoint", 6, "url")}
    assert batch.output_file_id is None and batch.error_file_id is None and batch.request_counts.total == 0
    assert server.batches.log.creations["openai"] == 1 and not server.batches.log.answered
    assert not server.batches.log.submitted


def test_openai_scripted_failure_fails_at_validation(server):
    server.batches.queue(BatchScript(outcome="failed", validating_polls=2))
    client = _openai(server)
    seen, batch = _poll_to_end(client, _submit(client, _lines()).id)
    assert seen == ["validating", "failed"] and [e.code for e in batch.errors.data] == ["invalid_request"]
    assert batch.output_file_id is None and batch.error_file_id is None and not server.batches.log.answered


def test_openai_batch_expires_with_some_lines_done(server):
    server.batches.script = BatchScript(outcome="expired", done_lines=2, shuffle_seed=None)
    client = _openai(server)
    seen, batch = _poll_to_end(client, _submit(client, _lines()).id)
    assert seen == ["in_progress", "expired"] and batch.expired_at
    assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 3)
    output = _jsonl(client.files.content(batch.output_file_id).text)
    errors = _jsonl(client.files.content(batch.error_file_id).text)
    assert [line["custom_id"] for line in output] == ["req-0", "req-1"]
    assert [line["custom_id"] for line in errors] == ["req-2", "req-3", "req-4"]
    assert all(line["response"] is None and line["error"]["code"] == "batch_expired" for line in errors)
    assert server.batches.log.answered == Counter({"req-0": 1, "req-1": 1})


def test_openai_batch_cancelled_part_way_keeps_what_was_done(server):
    server.batches.script = BatchScript(done_lines=3)
    client = _openai(server)
    created = _submit(client, _lines())
    assert client.batches.retrieve(created.id).status == "in_progress"
    cancelling = client.batches.cancel(created.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    seen, batch = _poll_to_end(client, created.id)
    assert seen == ["cancelled"] and batch.cancelled_at
    assert len(_jsonl(client.files.content(batch.output_file_id).text)) == 3
    errors = _jsonl(client.files.content(batch.error_file_id).text)
    assert len(errors) == 2 and {line["error"]["code"] for line in errors} == {"batch_cancelled"}
    with pytest.raises(openai.BadRequestError, match="Cannot cancel a batch with status 'cancelled'"):
        client.batches.cancel(created.id)
    assert server.batches.log.cancels == 1 and sum(server.batches.log.answered.values()) == 3


def test_openai_batch_cancelled_while_validating_answers_nothing(server):
    client = _openai(server)
    created = _submit(client, _lines())
    assert client.batches.cancel(created.id).status == "cancelling"
    _, batch = _poll_to_end(client, created.id)
    assert batch.status == "cancelled" and batch.output_file_id is None
    assert len(_jsonl(client.files.content(batch.error_file_id).text)) == 5 and not server.batches.log.answered


def test_openai_per_line_http_failures_land_in_the_error_file(server):
    server.batches.script = BatchScript(line_errors={"crashes": 400, "dark mode": 500})
    client = _openai(server)
    _, batch = _poll_to_end(client, _submit(client, _lines()).id)
    assert batch.status == "completed" and (batch.request_counts.completed, batch.request_counts.failed) == (3, 2)
    errors = {line["custom_id"]: line for line in _jsonl(client.files.content(batch.error_file_id).text)}
    assert {cid: line["response"]["status_code"] for cid, line in errors.items()} == {"req-1": 400, "req-2": 500}
    assert all(line["error"] is None and "message" in line["response"]["body"]["error"] for line in errors.values())
    assert len(_jsonl(client.files.content(batch.output_file_id).text)) == 3


def test_openai_lowered_limits_fail_the_batch(server):
    server.batches.limits = BatchLimits(openai_requests=3)
    client = _openai(server)
    _, batch = _poll_to_end(client, _submit(client, _lines()).id)
    assert batch.status == "failed" and [e.code for e in batch.errors.data] == ["too_many_requests"]
    server.batches.limits = BatchLimits(openai_bytes=100)
    _, batch = _poll_to_end(client, _submit(client, _lines(PROMPTS[:1])).id)
    assert [e.code for e in batch.errors.data] == ["file_too_large"]


def test_openai_create_rejects_bad_parameters(server):
    client = _openai(server)
    uploaded = client.files.create(file=("batch.jsonl", _input_file(_lines())), purpose="batch")
    with pytest.raises(openai.BadRequestError) as window:
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                              completion_window="1h")  # type: ignore[arg-type]
    assert window.value.body["param"] == "completion_window"
    with pytest.raises(openai.BadRequestError) as missing:
        client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
    assert missing.value.body["param"] == "input_file_id"
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h",
                              metadata={f"k{i}": "v" for i in range(17)})
    assert server.batches.log.rejected == 3 and not server.batches.log.creations


def test_openai_files_list_retrieve_download_delete(server):
    client = _openai(server)
    data = _input_file(_lines()).getvalue()
    uploaded = client.files.create(file=("mine.jsonl", io.BytesIO(data)), purpose="batch")
    assert (uploaded.filename, uploaded.bytes, uploaded.purpose, uploaded.status) == \
        ("mine.jsonl", len(data), "batch", "processed")
    assert client.files.retrieve(uploaded.id).id == uploaded.id
    assert client.files.content(uploaded.id).content == data
    assert [f.id for f in client.files.list()] == [uploaded.id]
    assert [f.id for f in client.files.list(purpose="batch")] == [uploaded.id]
    assert not list(client.files.list(purpose="batch_output"))
    assert client.files.delete(uploaded.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)


def test_openai_batches_list_newest_first(server):
    client = _openai(server)
    ids = [_submit(client, _lines(PROMPTS[:1])).id for _ in range(3)]
    assert [b.id for b in client.batches.list()] == ids[::-1]
    assert [b.id for b in client.batches.list(limit=2)] == ids[::-1]  # the client pages on
    assert server.batches.log.creations["openai"] == 3 and server.batches.log.files_uploaded == 3


def _requests(prompts: list[str] = PROMPTS) -> list[dict]:
    return [{"custom_id": f"req-{i}", "params": {"model": "fake-model", "max_tokens": 5,
                                                 "messages": [{"role": "user", "content": p}]}}
            for i, p in enumerate(prompts)]


def _anthropic_to_end(client: anthropic.Anthropic, batch_id: str) -> tuple[list[str], object]:
    seen = []
    while True:
        batch = client.messages.batches.retrieve(batch_id)
        seen.append(batch.processing_status)
        if batch.processing_status == "ended":
            return seen, batch


def test_anthropic_batch_ends_with_results_out_of_order_and_realtime_answers(server):
    client = _anthropic(server)
    created = client.messages.batches.create(requests=_requests())
    assert created.processing_status == "in_progress" and created.type == "message_batch"
    assert created.request_counts.processing == 5 and created.request_counts.succeeded == 0
    assert created.results_url is None and (created.expires_at - created.created_at).total_seconds() == 86400
    with pytest.raises(anthropic.AnthropicError, match="No `results_url`"):
        client.messages.batches.results(created.id)
    seen, batch = _anthropic_to_end(client, created.id)
    assert seen == ["ended"] and batch.ended_at
    assert batch.request_counts.succeeded == 5 and batch.request_counts.processing == 0
    assert batch.results_url.startswith(server.base_url)
    results = list(client.messages.batches.results(created.id))
    assert [r.custom_id for r in results] != [f"req-{i}" for i in range(5)]
    by_id = {r.custom_id: r for r in results}
    for i, prompt in enumerate(PROMPTS):
        realtime = client.messages.create(model="fake-model", max_tokens=5,
                                          messages=[{"role": "user", "content": prompt}])
        assert by_id[f"req-{i}"].result.type == "succeeded"
        assert by_id[f"req-{i}"].result.message.content[0].text == realtime.content[0].text
    assert server.batches.log.answered == Counter({f"req-{i}": 1 for i in range(5)})
    assert [b.id for b in client.messages.batches.list()] == [created.id]
    assert client.messages.batches.delete(created.id).type == "message_batch_deleted"


def test_anthropic_create_validates_custom_ids_and_limits(server):
    client = _anthropic(server)
    bad = _requests(PROMPTS[:2])
    bad[1]["custom_id"] = "has a space"
    with pytest.raises(anthropic.BadRequestError, match=r"requests\.1\.custom_id"):
        client.messages.batches.create(requests=bad)
    duplicate = _requests(PROMPTS[:2])
    duplicate[1]["custom_id"] = "req-0"
    with pytest.raises(anthropic.BadRequestError, match="Duplicate custom_id 'req-0'"):
        client.messages.batches.create(requests=duplicate)
    with pytest.raises(anthropic.BadRequestError, match="String should match pattern"):
        client.messages.batches.create(requests=[{**_requests()[0], "custom_id": "x" * 65}])
    server.batches.limits = BatchLimits(anthropic_requests=2)
    with pytest.raises(anthropic.BadRequestError, match="at most 2 requests"):
        client.messages.batches.create(requests=_requests())
    server.batches.limits = BatchLimits(anthropic_bytes=200)
    with pytest.raises(anthropic.APIStatusError) as too_large:
        client.messages.batches.create(requests=_requests())
    assert too_large.value.status_code == 413 and too_large.value.body["error"]["type"] == "request_too_large"
    assert server.batches.log.rejected == 5 and not server.batches.log.creations


def test_anthropic_expired_cancelled_and_errored_lines(server):
    client = _anthropic(server)
    server.batches.queue(BatchScript(outcome="expired", done_lines=1),
                         BatchScript(done_lines=2, line_errors={"crashes": 500}))
    expired = client.messages.batches.create(requests=_requests())
    _, batch = _anthropic_to_end(client, expired.id)
    counts = batch.request_counts
    assert (counts.succeeded, counts.expired, counts.errored, counts.canceled) == (1, 4, 0, 0)
    assert Counter(r.result.type for r in client.messages.batches.results(expired.id)) == \
        Counter({"succeeded": 1, "expired": 4})

    cancelled = client.messages.batches.create(requests=_requests())
    canceling = client.messages.batches.cancel(cancelled.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at
    _, batch = _anthropic_to_end(client, cancelled.id)
    results = {r.custom_id: r.result for r in client.messages.batches.results(cancelled.id)}
    assert results["req-0"].type == "succeeded"
    assert results["req-1"].type == "errored" and results["req-1"].error.error.type == "api_error"
    assert results["req-1"].error.request_id
    assert [results[f"req-{i}"].type for i in (2, 3, 4)] == ["canceled"] * 3
    assert (batch.request_counts.succeeded, batch.request_counts.errored, batch.request_counts.canceled) == (1, 1, 3)
    with pytest.raises(anthropic.BadRequestError, match="ended"):
        client.messages.batches.cancel(cancelled.id)

    message = [{"role": "user", "content": "hi"}]
    malformed = [{"custom_id": "no-max", "params": {"model": "m", "messages": message}},
                 {"custom_id": "unmerged", "params": {"model": "m", "messages": message, "max_tokens": 5,
                                                      "extra_body": {"temperature": 0}}}]
    plain = client.messages.batches.create(requests=malformed)
    _anthropic_to_end(client, plain.id)
    results = {line.custom_id: line.result for line in client.messages.batches.results(plain.id)}
    assert {cid: (r.type, r.error.error.type) for cid, r in results.items()} == {
        "no-max": ("errored", "invalid_request_error"), "unmerged": ("errored", "invalid_request_error")}
    assert "extra_body" in results["unmerged"].error.error.message
    assert server.batches.log.answered == Counter({"req-0": 2})


def test_control_endpoints_script_batches_and_report_counters(server):
    """A server in another process is scripted and read over HTTP (python -m harness.testing.fake_server
    takes the same JSON as --batch-script / --batch-limits)."""
    payload = {"script": {"outcome": "expired", "done_lines": 0}, "next": [{"validating_polls": 2}],
               "limits": {"openai_requests": 10}}
    request = urllib.request.Request(server.base_url + "/_fake/batches/script", data=json.dumps(payload).encode(),
                                     headers={"content-type": "application/json"}, method="POST")
    urllib.request.urlopen(request).read()
    client = _openai(server)
    first, second = _submit(client, _lines()), _submit(client, _lines())
    seen, batch = _poll_to_end(client, first.id)
    assert seen == ["validating", "in_progress", "finalizing", "completed"]  # the queued script
    _, batch = _poll_to_end(client, second.id)
    assert batch.status == "expired" and batch.output_file_id is None
    stats = json.loads(urllib.request.urlopen(server.base_url + "/_fake/batches/stats").read())
    assert stats["creations"] == {"openai": 2} and stats["files_uploaded"] == 2
    assert stats["answered"] == {f"req-{i}": 1 for i in range(5)}
    assert stats["batches"] == {first.id: "completed", second.id: "expired"}
    bad = urllib.request.Request(server.base_url + "/_fake/batches/script", data=b'{"script": {"oops": 1}}',
                                 method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(bad)
    assert refused.value.code == 400


def test_the_server_started_from_a_shell_takes_batch_scripts_and_limits():
    """`python -m harness.testing.fake_server --batch-script ... --batch-limits ...` (for benchmarks and
    tests that run the server in its own process)."""
    import subprocess
    import sys

    script = json.dumps({"outcome": "expired", "done_lines": 1, "validating_polls": 0})
    process = subprocess.Popen([sys.executable, "-m", "harness.testing.fake_server", "--reply", "billing",
                                "--batch-script", script, "--batch-limits", json.dumps({"openai_requests": 2})],
                               stdout=subprocess.PIPE, text=True)
    try:
        base_url = process.stdout.readline().strip()
        client = openai.OpenAI(api_key="test", base_url=base_url + "/v1", max_retries=0)
        created = _submit(client, _lines(PROMPTS[:2]))
        seen, batch = _poll_to_end(client, created.id)
        assert seen == ["in_progress", "expired"]
        (answered,) = _jsonl(client.files.content(batch.output_file_id).text)
        assert answered["response"]["body"]["choices"][0]["message"]["content"] == "billing"
        _, too_many = _poll_to_end(client, _submit(client, _lines(PROMPTS[:3])).id)
        assert [e.code for e in too_many.errors.data] == ["too_many_requests"]
        stats = json.loads(urllib.request.urlopen(base_url + "/_fake/batches/stats").read())
        assert stats["creations"] == {"openai": 2} and stats["answered"] == {"req-0": 1}
    finally:
        process.terminate()
        process.wait(timeout=10)
