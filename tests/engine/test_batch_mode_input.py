"""Batch mode asked of what cannot do it is bad input (exit 2), refused before anything is sent
or any run folder is made."""

from __future__ import annotations

from tests.conftest import base_suite


def _local_suite(project, mode: str | None = None) -> None:
    suite = base_suite()
    suite["targets"] = [{"name": "tiny", "provider": "local", "model": "none.gguf"}]
    if mode:
        suite["targets"][0]["mode"] = mode
    project.write_suite(suite)


def test_mode_batch_on_a_provider_without_a_batch_api_names_the_field(project, cli):
    _local_suite(project, "batch")
    result = cli("validate", str(project.suite_path))
    assert result.exit_code == 2
    assert "mode" in result.output.split("has no batch API")[0]  # the location names the field
    assert "has no batch API" in result.output


def test_a_mode_the_suite_does_not_know_is_refused(project, cli):
    suite = base_suite()
    suite["targets"][0]["mode"] = "offline"
    project.write_suite(suite)
    result = cli("validate", str(project.suite_path))
    assert result.exit_code == 2 and "mode" in result.output


def test_run_mode_batch_with_a_local_target_sends_nothing(project, cli, fake_server):
    suite = base_suite(fake_server.base_url)
    suite["targets"].append({"name": "tiny", "provider": "local", "model": "none.gguf"})
    project.write_suite(suite)
    result = cli("run", str(project.suite_path), "--mode", "batch")
    assert result.exit_code == 2, result.output
    assert "target 'tiny' (provider 'local') has no batch API" in result.output
    assert project.run_dirs() == []
    assert fake_server.log.total == 0 and fake_server.batches.log.files_uploaded == 0


def test_a_sequential_sample_is_not_sent_in_batch_mode(project, cli, fake_server):
    suite = base_suite(fake_server.base_url)
    project.write_suite(suite)
    assert cli("run", str(project.suite_path)).exit_code == 0
    [baseline] = project.run_dirs()
    assert cli("baseline", "set", str(project.suite_path), "--from", baseline.name).exit_code == 0
    suite["gate"] = {"sample": {"sequential": True}}
    project.write_suite(suite)
    result = cli("run", str(project.suite_path), "--sample", "4", "--mode", "batch")
    assert result.exit_code == 2, result.output
    assert "sequential sample cannot be sent in batch mode" in result.output
    assert project.run_dirs() == [baseline] and fake_server.batches.log.files_uploaded == 0
