"""Result files that cannot be fully read: a bad line costs only its own request (named by file
and line), and a results file that cannot be downloaded keeps what was read and leaves the chunk
open, never throwing away answers the provider billed."""
from harness.testing.fake_batches import FakeBatches
from tests.engine.batch_support import batch_suite, only_run, states, store_rows


def test_one_bad_output_line_keeps_the_good_ones(project, cli, fake_server, monkeypatch):
    original = FakeBatches._write_openai_files

    def corrupting(self, batch):
        original(self, batch)
        if batch.output_file_id:
            self._files[batch.output_file_id].data += b"this is not json\n"

    monkeypatch.setattr(FakeBatches, "_write_openai_files", corrupting)
    project.write_suite(batch_suite(fake_server.base_url))
    result = cli("run", str(project.suite_path))
    print(result.output)
    run_dir = only_run(project.root / "reports")
    got = states(run_dir)
    print(got)
    # 6 lines were answered (and billed) by the provider: they must be kept.
    assert sorted(got.values()) == ["succeeded"] * 6, got
    assert "line 7" in " ".join(result.output.split()), result.output  # the bad line is named


def test_retry_after_bad_line_pays_once(project, cli, fake_server, monkeypatch):
    original = FakeBatches._write_openai_files
    calls = {"n": 0}

    def corrupting(self, batch):
        original(self, batch)
        calls["n"] += 1
        if batch.output_file_id and calls["n"] == 1:
            self._files[batch.output_file_id].data += b"this is not json\n"

    monkeypatch.setattr(FakeBatches, "_write_openai_files", corrupting)
    project.write_suite(batch_suite(fake_server.base_url))
    cli("run", str(project.suite_path))
    run_dir = only_run(project.root / "reports")
    retried = cli("retry", run_dir.name, "--failed", "--reports-dir", str(project.root / "reports"))
    print(retried.output)
    answered = fake_server.batches.log.answered
    assert max(answered.values()) == 1, dict(answered)


def test_missing_error_file_keeps_the_output_file_and_the_chunk_open(project, cli, fake_server, monkeypatch):
    """The error file is gone (deleted / 404) but the output file with 3 billed answers is there:
    they are kept; the other 3 stay in the batch, which stays open, and the run exits 1 naming it."""
    from harness.testing.fake_batch_lifecycle import BatchScript

    original = FakeBatches._write_openai_files

    def dropping(self, batch):
        original(self, batch)
        if batch.error_file_id:
            del self._files[batch.error_file_id]

    monkeypatch.setattr(FakeBatches, "_write_openai_files", dropping)
    fake_server.batches.script = BatchScript(outcome="expired", done_lines=3)
    project.write_suite(batch_suite(fake_server.base_url))
    result = cli("run", str(project.suite_path))
    print(result.output)
    run_dir = only_run(project.root / "reports")
    got = states(run_dir)
    assert sorted(got.values()) == ["in_batch"] * 3 + ["succeeded"] * 3, got
    assert store_rows(run_dir, "SELECT collected FROM provider_batches") == [(0,)]
    assert result.exit_code == 1
    [batch] = fake_server.batches.batches()
    assert batch.error_file_id in " ".join(result.output.split()), result.output


def test_one_line_whose_response_body_is_not_an_object(project, cli, fake_server, monkeypatch):
    """A 5xx line whose body is plain text (a gateway's HTML/text error): only its request goes
    without a result (retryable); the 5 good answers are kept."""
    import json as _json

    from harness.testing.fake_batch_lifecycle import BatchScript

    original = FakeBatches._write_openai_files

    def texty(self, batch):
        original(self, batch)
        if batch.error_file_id:
            lines = self._files[batch.error_file_id].data.decode().splitlines()
            first = _json.loads(lines[0])
            first["response"]["body"] = "<html>502 Bad Gateway</html>"
            lines[0] = _json.dumps(first)
            self._files[batch.error_file_id].data = ("\n".join(lines) + "\n").encode()

    monkeypatch.setattr(FakeBatches, "_write_openai_files", texty)
    fake_server.batches.script = BatchScript(line_errors={"billed": 502})
    project.write_suite(batch_suite(fake_server.base_url))
    result = cli("run", str(project.suite_path))
    print(result.output)
    got = states(only_run(project.root / "reports"))
    assert sorted(got.values()) == ["failed_retryable"] + ["succeeded"] * 5, got
