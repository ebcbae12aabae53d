"""Anthropic chunks are sized by the exact body of the create call ({"requests":[...]}, commas),
and a 413 on a chunk of more than one request splits it instead of failing every request."""

from harness.testing.fake_batch_lifecycle import BatchLimits
from harness.testing.fake_batches import FakeBatches
from tests.engine.batch_support import batch_suite, only_run, states


def _body_size(project, cli, fake_server, monkeypatch, tmp_path) -> int:
    """The create body of the demo suite's 6 requests, measured on a run of its own."""
    sizes = []
    original = FakeBatches._create_anthropic

    def measuring(self, raw):
        sizes.append(len(raw))
        return original(self, raw)

    monkeypatch.setattr(FakeBatches, "_create_anthropic", measuring)
    project.write_suite(batch_suite(fake_server.base_url, "anthropic"))
    assert cli("run", str(project.suite_path), "--reports-dir", str(tmp_path / "probe")).exit_code == 0
    assert len(sizes) == 1
    return sizes[0]


def test_a_chunk_is_sized_by_its_exact_body(project, cli, fake_server, monkeypatch, tmp_path):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    body = _body_size(project, cli, fake_server, monkeypatch, tmp_path)
    fake_server.batches.limits = BatchLimits(anthropic_bytes=body - 1)
    project.write_suite(batch_suite(fake_server.base_url, "anthropic", max_bytes=body - 1))
    result = cli("run", str(project.suite_path))
    got = states(only_run(project.root / "reports"))
    assert set(got.values()) == {"succeeded"}, (got, result.output)
    assert fake_server.batches.log.rejected == 0  # no chunk was over the provider's limit


def test_a_413_splits_the_chunk(project, cli, fake_server, monkeypatch, tmp_path):
    """The provider's limit is below the one we know: the chunk is refused 413 and planned again
    in halves, and every request is answered."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    body = _body_size(project, cli, fake_server, monkeypatch, tmp_path)
    fake_server.batches.limits = BatchLimits(anthropic_bytes=body // 2)
    project.write_suite(batch_suite(fake_server.base_url, "anthropic"))
    result = cli("run", str(project.suite_path))
    got = states(only_run(project.root / "reports"))
    assert set(got.values()) == {"succeeded"}, (got, result.output)
    assert fake_server.batches.log.rejected >= 1  # the provider did refuse the whole chunk
