"""Anthropic keeps no link between a message batch and our chunk, so a chunk whose create may
have reached the provider (a lost reply, a refusal, a process that died) proves which batch is
its own by the batch's results: its custom_ids carry a per-chunk tag. Another run's batch of the
same size is never adopted nor cancelled, and the chunk is never created a second time while a
batch that may be its own is still running."""

import anthropic
from starlette.responses import JSONResponse

from harness.testing.fake_batch_lifecycle import BatchScript
from harness.testing.fake_batches import FakeBatches
from harness.testing.fake_server import FakeLLMServer, keyword_replier
from tests.conftest import TICKET_REPLIES
from tests.engine.batch_support import batch_suite, kill, only_run, start, states, store_rows
from tests.engine.test_batch_jobs import _wait_for_batch

CREATE = {"mode": "ok"}


def _patch_create(monkeypatch):
    original = FakeBatches._anthropic_create

    async def create(self, request):
        if CREATE["mode"] == "refuse":  # nothing is created
            return JSONResponse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                                status_code=529)
        reply = await original(self, request)
        if CREATE["mode"] == "lose":  # created, but the reply is lost on the way back
            return JSONResponse({"type": "error", "error": {"type": "api_error", "message": "reply lost"}},
                                status_code=500)
        return reply

    monkeypatch.setattr(FakeBatches, "_anthropic_create", create)
    CREATE["mode"] = "ok"


def _let_end(server, batch_id: str, *, cancel: bool = False) -> None:
    """Time passes for the batch (or its owner cancels it): it is polled until it has ended."""
    client = anthropic.Anthropic(api_key="test-key", base_url=server.base_url, max_retries=0)
    if cancel:
        client.messages.batches.cancel(batch_id)
    for _ in range(20):
        if client.messages.batches.retrieve(batch_id).processing_status == "ended":
            return
    raise AssertionError(f"batch {batch_id} never ended")


def _foreign_live_batch(project, server, suite) -> str:
    """Another run on the same account with a live batch of the same size (6 requests)."""
    server.batches.script = BatchScript(in_progress_polls=10**6)
    project.write_suite(suite)
    other = start("run", str(project.suite_path))
    _wait_for_batch(project, other, "in_progress")
    kill(other)
    [foreign] = [b.id for b in server.batches.batches()]
    server.batches.script = BatchScript()
    return foreign


def _submitted_per_request(server, run_dir) -> dict[str, int]:
    mine = dict(store_rows(run_dir, "SELECT custom_id, request_id FROM batch_members"))
    counts: dict[str, int] = {}
    for custom_id, times in server.batches.log.submitted.items():
        if custom_id in mine:
            counts[mine[custom_id]] = counts.get(mine[custom_id], 0) + times
    return counts


def test_another_runs_batch_is_never_adopted_nor_cancelled(project, cli, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    _patch_create(monkeypatch)
    reports = project.root / "A"
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        project.write_suite(batch_suite(server.base_url, "anthropic"))
        CREATE["mode"] = "refuse"
        cli("run", str(project.suite_path), "--reports-dir", str(reports))
        CREATE["mode"] = "ok"
        run_a = only_run(reports)
        assert store_rows(run_a, "SELECT batch_id, status FROM provider_batches") == [(None, "planned")]

        foreign = _foreign_live_batch(project, server, batch_suite(server.base_url, "anthropic", poll_s=0.05))
        project.write_suite(batch_suite(server.base_url, "anthropic"))

        out = cli("collect", run_a.name, "--no-wait", "--reports-dir", str(reports))
        said = " ".join(out.output.split())
        assert "wait to be identified" in said and foreign in said, said
        assert store_rows(run_a, "SELECT batch_id, status FROM provider_batches") == [(None, "unresolved")]
        status = cli("status", run_a.name, "--reports-dir", str(reports))
        assert "waiting to be identified" in " ".join(status.output.split()), status.output
        cli("cancel", run_a.name, "--reports-dir", str(reports))
        assert server.batches.batch(foreign).status() == "in_progress", "cancel of A cancelled another run's batch"

        # Once the other batch has ended (its run cancels it), its results show it is not A's: A's
        # chunk is created anew.
        _let_end(server, foreign, cancel=True)
        out = cli("collect", run_a.name, "--reports-dir", str(reports))
        assert set(states(run_a).values()) == {"succeeded"}, out.output
        [(batch_id,)] = store_rows(run_a, "SELECT batch_id FROM provider_batches")
        assert batch_id != foreign
        assert set(_submitted_per_request(server, run_a).values()) == {1}


def test_a_lost_create_reply_is_resolved_by_the_results_not_created_twice(project, cli, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    _patch_create(monkeypatch)
    reports = project.root / "A"
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        other = batch_suite(server.base_url, "anthropic", poll_s=0.05)
        other["targets"][0]["model"] = "other-model"
        foreign = _foreign_live_batch(project, server, other)

        project.write_suite(batch_suite(server.base_url, "anthropic"))
        CREATE["mode"] = "lose"
        cli("run", str(project.suite_path), "--reports-dir", str(reports))
        CREATE["mode"] = "ok"
        run_a = only_run(reports)
        [mine] = [b.id for b in server.batches.batches() if b.id != foreign]

        # Both batches are running: neither is adopted nor created again until one proves to be
        # A's; the resumed run waits, and collects A's own once it has ended.
        resumed = cli("run", str(project.suite_path), "--reports-dir", str(reports), "--resume", run_a.name)
        said = " ".join(resumed.output.split())
        assert "wait to be identified" in said, said
        assert resumed.exit_code == 0, said
        assert set(states(run_a).values()) == {"succeeded"}
        assert store_rows(run_a, "SELECT batch_id FROM provider_batches") == [(mine,)]
        assert server.batches.log.creations["anthropic"] == 2
        assert set(_submitted_per_request(server, run_a).values()) == {1}
        assert server.batches.batch(foreign).status() == "in_progress"
