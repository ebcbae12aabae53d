"""Anthropic: one result line that is not JSON (a truncated stream, proxy garbage) costs only
itself: the good results are stored, the bad line is named (batch and line), and the run ends
instead of downloading the results again forever."""

from starlette.responses import StreamingResponse

from harness.testing.fake_batches import FakeBatches
from harness.testing.fake_server import FakeLLMServer, keyword_replier
from tests.conftest import TICKET_REPLIES
from tests.engine.batch_support import batch_suite, only_run, start, states


def test_a_bad_anthropic_result_line_keeps_the_others_and_ends(project, monkeypatch):
    original = FakeBatches._anthropic_results

    async def results(self, request):
        response = await original(self, request)
        if not isinstance(response, StreamingResponse):
            return response
        body = b""
        async for chunk in response.body_iterator:
            body += chunk if isinstance(chunk, bytes) else chunk.encode()
        lines = body.splitlines(keepends=True)
        # One good line turns into garbage (its request gets no result), one garbage line is added.
        return StreamingResponse(iter([b"".join(lines[1:]) + b"{truncated\n"]), media_type="application/binary")

    monkeypatch.setattr(FakeBatches, "_anthropic_results", results)
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        project.write_suite(batch_suite(server.base_url, "anthropic", poll_s=0.05))
        process = start("run", str(project.suite_path))
        out, err = process.communicate(timeout=120)  # a guard against looping forever, not a timing
    said = " ".join((out + err).split())
    got = states(only_run(project.root / "reports"))
    assert sorted(got.values()) == ["failed_retryable"] + ["succeeded"] * 5, (got, said)
    assert "line 6" in said and "is not JSON" in said, said
    assert process.returncode == 1, said
