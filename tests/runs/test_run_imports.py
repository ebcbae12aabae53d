"""What a whole `evalbatch run` process imports: start-up is part of every run's time, so the
libraries only other commands need (statistics, charts, dataframes, other providers' SDKs)
must not be loaded on the way."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO, base_suite

# Imported by comparisons, charts, reports, the HF `datasets` loader, other providers, or only
# when a suite asks for them (a JSON Schema scorer, a terminal's progress bar, a tokenizer when
# the model has one): a plain run of an OpenAI-compatible target needs none of them.
NOT_ON_THE_RUN_PATH = ("scipy", "numpy", "pandas", "pyarrow", "matplotlib", "statsmodels", "datasets",
                       "anthropic", "llama_cpp", "jsonschema", "rich.progress", "bpe_openai",
                       "harness.compare", "harness.report.html")

_RECORD_MODULES = """
import atexit, json, runpy, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "evalbatch"
runpy.run_module("harness.cli", run_name="__main__", alter_sys=True)
"""


def _loaded(modules: list[str], prefix: str) -> list[str]:
    return [name for name in modules if name == prefix or name.startswith(prefix + ".")]


def _run_recording_modules(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    out = tmp_path / "modules.json"
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", _RECORD_MODULES, str(out), *args], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=300)
    return done, json.loads(out.read_text(encoding="utf-8"))


def _openai_model_suite(server_url: str) -> dict:
    """A model name the tokenizer knows (the fake server answers any): loading it is then a choice."""
    suite = base_suite(server_url)
    suite["targets"][0]["model"] = "gpt-4o-mini"
    suite["scorers"].append({"type": "exact_match", "name": "exact", "target": "label"})
    return suite


def test_a_whole_run_loads_none_of_the_libraries_other_commands_need(project, fake_server, tmp_path):
    project.write_suite(_openai_model_suite(fake_server.base_url))
    done, modules = _run_recording_modules(tmp_path, "run", str(project.suite_path))
    assert done.returncode in (0, 1), done.stderr  # a6 is answered wrongly: scores, not failures
    assert "6 requests" in done.stdout and "complete" in done.stdout, done.stdout
    assert "openai" in modules and "harness.engine.runner" in modules  # it did run
    assert {name: _loaded(modules, name) for name in NOT_ON_THE_RUN_PATH if _loaded(modules, name)} == {}


def test_the_command_line_alone_loads_no_provider_sdk_or_statistics(tmp_path):
    done, modules = _run_recording_modules(tmp_path, "--help")
    assert done.returncode == 0 and "run" in done.stdout
    heavy = NOT_ON_THE_RUN_PATH + ("openai", "httpx2", "httpx")
    assert {name: _loaded(modules, name) for name in heavy if _loaded(modules, name)} == {}


def test_the_tokenizer_is_loaded_when_a_token_limit_is_declared(project, fake_server, tmp_path):
    # Then prompts are counted exactly from the first request on; without one, chars/4 scaled by
    # the usage replies report does, and the tokenizer's ~0.8 s load is spared (above).
    project.write_suite(_openai_model_suite(fake_server.base_url))
    done, modules = _run_recording_modules(tmp_path, "run", str(project.suite_path), "--tpm", "1000000")
    assert done.returncode in (0, 1), done.stderr
    assert "bpe_openai" in modules
