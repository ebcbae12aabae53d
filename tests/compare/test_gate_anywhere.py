"""`gate` and `compare` find the run, the suite and its baseline whatever the current directory,
also when the suite writes its runs elsewhere (`output.dir`)."""

from __future__ import annotations

import json
import re
import shutil

from tests.compare.test_gate_cli import EXIT_PASS, flat, use_generated_data

GATE = {"primary": [{"metric": "accuracy", "margin": 0.2}]}  # 40 identical items clear it


def _run(cli, suite_path, *args: str) -> str:
    result = cli("run", str(suite_path), *args)
    assert result.exit_code == 0, result.output
    return re.search(r"run (\S+): complete", result.output).group(1)


def test_gate_and_compare_work_from_any_directory_with_output_dir(project, cli, fake_server, tmp_path_factory,
                                                                  monkeypatch):
    use_generated_data(project, fake_server.base_url, 40, gate=GATE, output={"dir": "../elsewhere"})
    base_run = _run(cli, project.suite_path)
    assert cli("baseline", "set", str(project.suite_path), "--from", base_run).exit_code == 0
    candidate = _run(cli, project.suite_path, "--new")
    folder = project.root / "elsewhere" / "demo" / candidate  # output.dir is relative to the suite file
    assert (folder / "manifest.json").is_file() and not (project.root / "reports").exists()

    outside = tmp_path_factory.mktemp("ci-work")  # a CI checkout's scratch folder, outside the project
    monkeypatch.chdir(outside)
    ways = {"run ID and --suite": ("gate", candidate, "--suite", str(project.suite_path)),
            "run folder path": ("gate", str(folder)),
            "compare by folder": ("compare", str(folder))}
    for way, args in ways.items():
        result = cli(*args)
        assert result.exit_code == EXIT_PASS, (way, result.output)
        assert "gate: PASS" in result.output, way
    record = json.loads((folder / "gate.json").read_text())
    assert record["baseline"]["file"] == str(project.root / "baselines" / "demo" / "production.json")
    assert record["baseline"]["run_id"] == base_run

    inside = project.root / "ci-work"
    inside.mkdir()
    monkeypatch.chdir(inside)  # in the project, but neither at its root nor next to the suite
    for command in ("gate", "compare"):
        result = cli(command, candidate)
        assert result.exit_code == EXIT_PASS, (command, result.output)
        assert "gate: PASS" in result.output, command
    assert f"vs baseline production (run {base_run}, route@v1): 40 paired items" in flat(result.output)

    # promotion reads the same record and finds the run through the suite's output.dir
    promoted = cli("promote", str(project.suite_path), "--run", candidate)
    assert promoted.exit_code == 0, promoted.output
    assert f"run {candidate})" in promoted.output


def test_a_run_is_gated_in_another_checkout_of_the_project(project, cli, fake_server, tmp_path_factory,
                                                          monkeypatch):
    """CI runs in one workspace and gates in another: the manifest's suite path is then stale."""
    use_generated_data(project, fake_server.base_url, 40, gate=GATE, output={"dir": "../elsewhere"})
    base_run = _run(cli, project.suite_path)
    assert cli("baseline", "set", str(project.suite_path), "--from", base_run).exit_code == 0
    candidate = _run(cli, project.suite_path, "--new")
    checkout = tmp_path_factory.mktemp("workspace") / "checkout"
    shutil.copytree(project.root, checkout)
    project.suite_path.unlink()  # the first workspace is gone
    monkeypatch.chdir(checkout.parent)

    result = cli("gate", str(checkout / "elsewhere" / "demo" / candidate))
    assert result.exit_code == EXIT_PASS, result.output
    record = json.loads((checkout / "elsewhere" / "demo" / candidate / "gate.json").read_text())
    assert record["baseline"]["file"] == str(checkout / "baselines" / "demo" / "production.json")
