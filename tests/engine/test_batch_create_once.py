"""Resuming a chunk whose input file was uploaded but whose batch was not created: a create that
reached the provider but whose reply was lost (502 after processing) is not simply sent again:
the provider's list is searched for the batch made from the file first, so one file makes one
batch and every request is answered (and billed) once."""
from starlette.responses import JSONResponse

from harness.testing.fake_batches import FakeBatches
from harness.testing.fake_server import FakeLLMServer, keyword_replier
from tests.conftest import TICKET_REPLIES
from tests.engine.batch_support import batch_suite, only_run, states, store_rows

MODE = {"n": 0}


def test_a_lost_create_reply_makes_one_batch(project, cli, monkeypatch):
    original = FakeBatches._openai_create

    async def create(self, request):
        MODE["n"] += 1
        if MODE["n"] == 1:  # first session: the create is refused outright (nothing created)
            return JSONResponse({"error": {"message": "upstream", "type": "server_error"}}, status_code=502)
        if MODE["n"] == 2:  # resume: created, but the reply is lost on the way back
            await original(self, request)
            return JSONResponse({"error": {"message": "upstream", "type": "server_error"}}, status_code=502)
        return await original(self, request)

    monkeypatch.setattr(FakeBatches, "_openai_create", create)
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        project.write_suite(batch_suite(server.base_url))
        first = cli("run", str(project.suite_path))
        print(first.output)
        run_dir = only_run(project.root / "reports")
        print(store_rows(run_dir, "SELECT status, input_file_id, batch_id FROM provider_batches"))
        second = cli("run", str(project.suite_path), "--resume", run_dir.name)
        print(second.output)
        print("creations", server.batches.log.creations, "submitted", dict(server.batches.log.submitted))
        assert server.batches.log.creations["openai"] == 1, server.batches.log.creations
        assert max(server.batches.log.answered.values()) == 1
        assert set(states(run_dir).values()) == {"succeeded"}, states(run_dir)
