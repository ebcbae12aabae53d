"""`evalbatch import` takes answers of the model asked for or a dated snapshot of it, never of
another model whose name merely starts the same (gpt-4o-mini is not gpt-4o)."""

import pytest

from tests.conftest import base_suite
from tests.runs.test_export_import import _answer, _export, _run_folder, _vllm_line, _write_jsonl


def _import_answered_by(project, cli, tmp_path, asked: str, answered_by: str):
    suite = base_suite()
    suite["targets"][0]["model"] = asked
    project.write_suite(suite)
    reports = tmp_path / "runs"
    exported = _export(cli, project, reports, tmp_path / "requests.jsonl")
    assert {line["body"]["model"] for line in exported} == {asked}
    lines = [_vllm_line(line["custom_id"], _answer(line["body"]["messages"][-1]["content"]), model=answered_by)
             for line in exported]
    return cli("import", str(_run_folder(reports)), str(_write_jsonl(tmp_path / "out.jsonl", lines)))


@pytest.mark.parametrize(("asked", "answered_by"), [("gpt-4o", "gpt-4o-mini"), ("gpt-4", "gpt-4-turbo"),
                                                    ("llama-3", "llama-3-8b")])
def test_another_model_with_the_same_prefix_is_refused(project, cli, tmp_path, asked, answered_by):
    result = _import_answered_by(project, cli, tmp_path, asked, answered_by)
    assert result.exit_code == 2, result.output
    assert answered_by in " ".join(result.output.split())


@pytest.mark.parametrize(("asked", "answered_by"), [("gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
                                                    ("claude-sonnet-4", "claude-sonnet-4-20250514")])
def test_a_dated_snapshot_is_the_same_model(project, cli, tmp_path, asked, answered_by):
    result = _import_answered_by(project, cli, tmp_path, asked, answered_by)
    assert result.exit_code == 0, result.output
