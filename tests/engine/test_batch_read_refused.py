"""`evalbatch collect` from another shell whose key is wrong/rotated (401) -- or of another OpenAI
project (404 for the batch) -- never settles a live provider batch: the chunk stays open, its
requests stay in it, the command exits 1 naming the batch and the endpoint, and a retry never
submits them a second time."""
from starlette.responses import JSONResponse

from harness.testing.fake_batch_lifecycle import BatchScript
from harness.testing.fake_batches import FakeBatches
from harness.testing.fake_server import FakeLLMServer, keyword_replier
from tests.conftest import TICKET_REPLIES
from tests.engine.batch_support import batch_suite, kill, start, states, store_rows
from tests.engine.test_batch_jobs import _wait_for_batch

DENY = {"on": False}


def test_401_on_retrieve_leaves_a_live_batch_open(project, cli, monkeypatch):
    original = FakeBatches._openai_retrieve

    async def retrieve(self, request):
        if DENY["on"]:
            return JSONResponse({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                           "code": "invalid_api_key"}}, status_code=401)
        return await original(self, request)

    monkeypatch.setattr(FakeBatches, "_openai_retrieve", retrieve)
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        server.batches.script = BatchScript(in_progress_polls=10**6)
        project.write_suite(batch_suite(server.base_url, poll_s=0.05))
        process = start("run", str(project.suite_path))
        run_dir = _wait_for_batch(project, process, "in_progress")
        kill(process)

        DENY["on"] = True  # come back from another shell with a stale key
        out = cli("collect", run_dir.name, "--no-wait", "--reports-dir", str(project.root / "reports"))
        print(out.output, out.exit_code)
        DENY["on"] = False
        rows = store_rows(run_dir, "SELECT batch_id, status, collected FROM provider_batches")
        print(rows, states(run_dir))
        live = [b for b in server.batches.batches() if b.status() not in ("completed", "failed", "expired",
                                                                           "cancelled")]
        assert live, "the batch is still live at the provider"
        # Expected: the chunk stays open (not collected), its requests stay in_batch.
        assert rows[0][2] == 0, rows
        assert set(states(run_dir).values()) == {"in_batch"}
        assert out.exit_code == 1
        said = " ".join(out.output.split())
        assert rows[0][0] in said and server.base_url in said, said


def test_then_retry_submits_nothing_twice(project, cli, monkeypatch):
    original = FakeBatches._openai_retrieve

    async def retrieve(self, request):
        if DENY["on"]:
            return JSONResponse({"error": {"message": "No batch found", "type": "invalid_request_error"}},
                                status_code=404)
        return await original(self, request)

    monkeypatch.setattr(FakeBatches, "_openai_retrieve", retrieve)
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        server.batches.script = BatchScript(in_progress_polls=10**6)
        project.write_suite(batch_suite(server.base_url, poll_s=0.05))
        process = start("run", str(project.suite_path))
        run_dir = _wait_for_batch(project, process, "in_progress")
        kill(process)
        DENY["on"] = True
        cli("collect", run_dir.name, "--no-wait", "--reports-dir", str(project.root / "reports"))
        DENY["on"] = False
        server.batches.script = BatchScript()
        out = cli("retry", run_dir.name, "--failed", "--reports-dir", str(project.root / "reports"))
        print(out.output)
        submitted = server.batches.log.submitted
        assert max(submitted.values()) == 1, dict(submitted)  # each request in one live batch only
