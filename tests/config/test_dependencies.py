"""suite_dependencies: every file a suite's results depend on, and its targets' settings."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from harness.config.dependencies import suite_dependencies
from harness.errors import UserError
from tests.conftest import Project, base_suite


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_lists_suite_prompt_nested_includes_schema_dataset_and_targets(project: Project):
    prompts = project.root / "prompts"
    (prompts / "shared").mkdir()
    (prompts / "shared" / "header.j2").write_text("{% import 'shared/macros.j2' as m %}Header\n", encoding="utf-8")
    (prompts / "shared" / "macros.j2").write_text("{% macro x() %}x{% endmacro %}", encoding="utf-8")
    (prompts / "route" / "v1.j2").write_text("{% include 'shared/header.j2' %}Ticket: {{ text }}", encoding="utf-8")
    schema = project.root / "suites" / "schemas" / "s.json"
    schema.parent.mkdir()
    schema.write_text('{"type": "object"}', encoding="utf-8")
    suite = base_suite()
    suite["scorers"].append({"type": "json_valid", "name": "valid", "schema_file": "schemas/s.json"})
    project.write_suite(suite)

    found = suite_dependencies(project.suite_path)

    assert [(d.kind, d.path) for d in found] == [
        ("suite", project.suite_path.resolve()),
        ("prompt", prompts / "route" / "v1.j2"),
        ("template", prompts / "shared" / "header.j2"),
        ("template", prompts / "shared" / "macros.j2"),
        ("schema", schema),
        ("dataset", project.root / "suites" / "data" / "tickets.jsonl"),
        ("target", None),
    ]
    assert all(d.sha256 == _sha(d.path) for d in found if d.path is not None)
    assert found[-1].name == "target fake"
    assert found[-1].settings == {"label": "fake", "provider": "openai", "model": "fake-model",
                                  "base_url": "http://127.0.0.1:9/v1", "params": {
                                      "temperature": 0.0, "max_tokens": 5, "stop": [], "top_p": None, "seed": None}}


def test_target_fingerprint_follows_settings_not_pricing(project: Project):
    before = suite_dependencies(project.suite_path)[-1].sha256
    suite = base_suite()
    suite["targets"][0]["limits"] = {"rpm": 10}
    project.write_suite(suite)
    assert suite_dependencies(project.suite_path)[-1].sha256 == before
    suite["targets"][0]["params"]["temperature"] = 0.5
    project.write_suite(suite)
    assert suite_dependencies(project.suite_path)[-1].sha256 != before


def test_chat_prompt_messages_include_templates(project: Project):
    prompts = project.root / "prompts"
    (prompts / "route" / "v1.j2").unlink()
    (prompts / "route" / "sys.j2").write_text("You route tickets.", encoding="utf-8")
    (prompts / "route" / "v1.chat.yaml").write_text(
        "- {role: system, content: \"{% include 'route/sys.j2' %}\"}\n- {role: user, content: '{{ text }}'}\n",
        encoding="utf-8")
    kinds = [(d.kind, d.path) for d in suite_dependencies(project.suite_path)]
    assert ("prompt", prompts / "route" / "v1.chat.yaml") in kinds
    assert ("template", prompts / "route" / "sys.j2") in kinds


def test_missing_include_is_bad_input_naming_the_prompt(project: Project):
    (project.root / "prompts" / "route" / "v1.j2").write_text("{% include 'nope.j2' %}", encoding="utf-8")
    with pytest.raises(UserError, match="included file 'nope.j2' not found") as caught:
        suite_dependencies(project.suite_path)
    assert caught.value.file == str(project.root / "prompts" / "route" / "v1.j2")
