"""Versioned prompts: sandboxed strict rendering, chat messages, fingerprints over includes."""

from __future__ import annotations

import pytest

from harness.config.prompts import PromptVersion
from harness.errors import UserError
from tests.conftest import base_suite


def _prompt(tmp_path, files: dict[str, str], version: str = "v1") -> PromptVersion:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return PromptVersion(tmp_path, "p", version)


def test_completion_prompt_renders_item_fields(tmp_path):
    prompt = _prompt(tmp_path, {"p/v1.j2": "Q: {{ question }}\nA:"})
    assert prompt.kind == "completion" and prompt.variables == {"question"}
    assert prompt.render({"question": "2+2?"}).text == "Q: 2+2?\nA:"


def test_chat_prompt_renders_messages(tmp_path):
    prompt = _prompt(tmp_path, {"p/v1.chat.yaml": "- role: system\n  content: Be brief.\n"
                                                  "- role: user\n  content: '{{ item.q }}'\n"})
    rendered = prompt.render({"q": "hi"})
    assert [(m.role, m.content) for m in rendered.messages] == [("system", "Be brief."), ("user", "hi")]


def test_missing_variable_is_an_error_not_an_empty_string(tmp_path):
    prompt = _prompt(tmp_path, {"p/v1.j2": "{{ question }} {{ context }}"})
    with pytest.raises(UserError, match="'context' is undefined"):
        prompt.render({"question": "q"})


def test_sandbox_blocks_unsafe_attribute_access(tmp_path):
    prompt = _prompt(tmp_path, {"p/v1.j2": "{{ q.__class__.__mro__ }}"})
    with pytest.raises(UserError):
        prompt.render({"q": "x"})


def test_fingerprint_covers_included_files(tmp_path):
    prompt = _prompt(tmp_path, {"p/v1.j2": "{% include 'shared/examples.j2' %}\n{{ q }}",
                                "shared/examples.j2": "Example: a"})
    before = prompt.fingerprint
    assert PromptVersion(tmp_path, "p", "v1").fingerprint == before
    (tmp_path / "shared" / "examples.j2").write_text("Example: b")
    assert PromptVersion(tmp_path, "p", "v1").fingerprint != before


def test_bad_chat_role_and_syntax_errors(tmp_path):
    with pytest.raises(UserError, match="message 0: role"):
        _prompt(tmp_path, {"p/v1.chat.yaml": "- role: robot\n  content: hi\n"})
    with pytest.raises(UserError, match="template syntax error"):
        _prompt(tmp_path, {"p/v2.j2": "{% if %}"}, version="v2")


def test_edit_under_the_same_label_is_reported(project, cli, fake_server):
    project.write_suite(base_suite(fake_server.base_url))
    assert cli("run", str(project.suite_path)).exit_code == 0
    (project.root / "prompts" / "route" / "v1.j2").write_text("Ticket text: {{ text }}\nTeam:")
    result = cli("run", str(project.suite_path))
    assert result.exit_code == 0
    assert "prompt route@v1 changed since run" in result.output
    assert "new version" in result.output
    assert len(project.run_dirs()) == 2  # different text, different requests: a new run
