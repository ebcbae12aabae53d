"""`evalbatch changed`: which suites a change affects and why, against git (--base) or the baselines."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import TICKETS, base_suite, write_records


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=root,
                   check=True, capture_output=True)


def _suite(name: str, prompt: str, server: str = "http://127.0.0.1:9") -> dict:
    suite = base_suite(server)
    suite["name"], suite["prompt"]["name"] = name, prompt
    suite["dataset"]["path"] = f"data/{name}.jsonl"
    return suite


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Suites a and b use prompts that include one shared header; c's prompt includes nothing.
    a and b have baselines, c has none."""
    prompts = tmp_path / "prompts"
    for name, text in {"shared/header.j2": "You route support tickets.\n",
                       "pa/v1.j2": "{% include 'shared/header.j2' %}Ticket: {{ text }}\nTeam:",
                       "pb/v1.j2": "{% include 'shared/header.j2' %}{{ text }} ->",
                       "pc/v1.j2": "Ticket: {{ text }}\nTeam:"}.items():
        (prompts / name).parent.mkdir(parents=True, exist_ok=True)
        (prompts / name).write_text(text, encoding="utf-8")
    for name, prompt in (("a", "pa"), ("b", "pb"), ("c", "pc")):
        write_records(tmp_path / "suites" / "data" / f"{name}.jsonl", TICKETS)
        (tmp_path / "suites" / f"{name}.yaml").write_text(yaml.safe_dump(_suite(name, prompt)), encoding="utf-8")
    for name in ("a", "b"):
        (tmp_path / "baselines" / name).mkdir(parents=True)
        (tmp_path / "baselines" / name / "production.json").write_text("{}", encoding="utf-8")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "suites")
    return tmp_path


def _changed(cli, repo: Path, *args: str) -> dict[str, list[str]]:
    """Affected suite -> its reasons, from --json."""
    result = cli("changed", str(repo / "suites"), "--json", *args)
    assert result.exit_code == 0, result.output
    suites = json.loads(result.output)["suites"]
    return {s["suite"]: [f"{r['kind']} {r['name']}: {r['change']}" for r in s["reasons"]]
            for s in suites if s["status"] == "changed"}


def test_nothing_changed(cli, repo: Path):
    assert _changed(cli, repo, "--base", "HEAD") == {}


def test_shared_include_marks_both_suites_using_it(cli, repo: Path):
    (repo / "prompts" / "shared" / "header.j2").write_text("You route tickets.\n", encoding="utf-8")
    reason = ["template prompts/shared/header.j2: differs from HEAD"]
    assert _changed(cli, repo, "--base", "HEAD") == {"a": reason, "b": reason}


def test_one_prompt_marks_only_its_suite(cli, repo: Path):
    (repo / "prompts" / "pc" / "v1.j2").write_text("Ticket: {{ text }}\nTeam (one word):", encoding="utf-8")
    assert _changed(cli, repo, "--base", "HEAD") == {"c": ["prompt prompts/pc/v1.j2: differs from HEAD"]}


def test_dataset_marks_only_its_suite(cli, repo: Path):
    write_records(repo / "suites" / "data" / "a.jsonl", TICKETS[:3])
    assert _changed(cli, repo, "--base", "HEAD") == {"a": ["dataset suites/data/a.jsonl: differs from HEAD"]}


def test_target_setting_is_named(cli, repo: Path):
    suite = _suite("b", "pb")
    suite["targets"][0]["params"]["temperature"] = 0.7
    (repo / "suites" / "b.yaml").write_text(yaml.safe_dump(suite), encoding="utf-8")
    assert _changed(cli, repo, "--base", "HEAD") == {
        "b": ["suite suites/b.yaml: differs from HEAD", "target fake: params differ from HEAD"]}


def test_new_prompt_version_missing_at_base_counts_as_changed(cli, repo: Path):
    (repo / "prompts" / "pc" / "v2.j2").write_text("{{ text }} =>", encoding="utf-8")
    (repo / "suites" / "c.yaml").write_text(yaml.safe_dump(
        {**_suite("c", "pc"), "prompt": {"name": "pc", "version": "v2"}}), encoding="utf-8")
    assert _changed(cli, repo, "--base", "HEAD") == {
        "c": ["suite suites/c.yaml: differs from HEAD", "prompt prompts/pc/v2.j2: not in HEAD"]}


def test_text_output_from_a_subfolder_lists_suites_without_baseline(cli, repo: Path, monkeypatch):
    (repo / "prompts" / "shared" / "header.j2").write_text("changed\n", encoding="utf-8")
    monkeypatch.chdir(repo / "prompts" / "shared")
    result = cli("changed", "--base", "HEAD")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"2 of 3 suite(s) in {(repo / 'suites').resolve()} changed since git HEAD",
        "a (suites/a.yaml): changed",
        "  template prompts/shared/header.j2: differs from HEAD",
        "b (suites/b.yaml): changed",
        "  template prompts/shared/header.j2: differs from HEAD",
        "c (suites/c.yaml): no baseline",
        "  no baseline at baselines/c/production.json",
    ]


def test_unknown_ref_and_no_repository_are_bad_input(cli, repo: Path, tmp_path_factory):
    result = cli("changed", str(repo / "suites"), "--base", "no-such-branch")
    assert result.exit_code == 2
    assert "unknown git revision 'no-such-branch'" in result.output
    elsewhere = tmp_path_factory.mktemp("plain")
    (elsewhere / "suites").mkdir()
    (elsewhere / "suites" / "c.yaml").write_text((repo / "suites" / "c.yaml").read_text(), encoding="utf-8")
    result = cli("changed", str(elsewhere / "suites"), "--base", "HEAD")
    assert result.exit_code == 2
    assert "not a git repository" in result.output


def test_against_the_baseline_a_run_froze(cli, project, fake_server):
    """Without --base: the fingerprints of the run the baseline was set from."""
    project.write_suite(base_suite(fake_server.base_url))
    assert cli("run", str(project.suite_path)).exit_code == 0
    run_id = project.run_dirs()[0].name
    assert cli("baseline", "set", str(project.suite_path), "--from", run_id).exit_code == 0
    assert _changed(cli, project.root) == {}

    (project.root / "prompts" / "route" / "v1.j2").write_text("Ticket: {{ text }}\nTeam name:", encoding="utf-8")
    write_records(project.root / "suites" / "data" / "tickets.jsonl", TICKETS[:4])
    assert _changed(cli, project.root) == {"demo": [
        "prompt route@v1: text differs from the baseline's (prompts/route/v1.j2)",
        "dataset suites/data/tickets.jsonl: content differs from the baseline's"]}
