"""Shared fixtures: a throwaway project (prompts, data, suite) and a fake LLM server."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from harness.cli import main
from harness.testing.fake_server import FakeLLMServer, keyword_replier

REPO = Path(__file__).resolve().parent.parent

TICKETS = [
    {"id": "a1", "text": "I was billed twice this month", "label": "billing"},
    {"id": "a2", "text": "The export button crashes the app", "label": "bug"},
    {"id": "a3", "text": "Please add dark mode", "label": "feature request"},
    {"id": "a4", "text": "Cannot log in after password reset", "label": "account access"},
    {"id": "a5", "text": "Cancel my subscription now", "label": "cancellation"},
    {"id": "a6", "text": "Refund the double charge please", "label": "billing"},
]

# What the fake server answers: a keyword of each ticket -> its team (a6 is answered wrongly).
TICKET_REPLIES = {"billed": "billing", "crashes": "bug", "dark mode": "feature request",
                  "log in": "account access", "Cancel": "cancellation", "double charge": "bug"}


@dataclass
class Project:
    root: Path
    suite_path: Path

    def write_suite(self, suite: dict[str, Any]) -> Path:
        self.suite_path.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
        return self.suite_path

    def run_dirs(self, suite_name: str = "demo") -> list[Path]:
        return sorted(p for p in (self.root / "reports" / suite_name).glob("*/") if p.is_dir())


# Four records whose texts repeat a1's and a2's: identical requests under other item IDs.
COPIES = [{"id": f"copy{n}", "text": TICKETS[n % 2]["text"], "label": TICKETS[n % 2]["label"]} for n in range(4)]


def base_suite(server_url: str = "http://127.0.0.1:9", provider: str = "openai") -> dict[str, Any]:
    """A suite against the fake server; OpenAI base URLs end in /v1, Anthropic's do not (as in real use)."""
    base_url = server_url + "/v1" if provider == "openai" else server_url
    return {
        "version": 1,
        "name": "demo",
        "dataset": {"path": "data/tickets.jsonl"},
        "slices": [{"name": "all"}],
        "prompt": {"name": "route", "version": "v1"},
        "targets": [{"name": "fake", "provider": provider, "model": "fake-model", "base_url": base_url,
                     "params": {"temperature": 0, "max_tokens": 5}}],
        "scorers": [{"type": "label_in_set", "name": "accuracy", "target": "label",
                     "labels": ["billing", "bug", "feature request", "account access", "cancellation"]}],
        "engine": {"concurrency": 4, "max_retries": 2, "timeout_s": 5, "backoff_base_s": 0.01,
                   "backoff_max_s": 0.05},
    }


def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


@pytest.fixture
def project(tmp_path: Path) -> Project:
    (tmp_path / "prompts" / "route").mkdir(parents=True)
    (tmp_path / "prompts" / "route" / "v1.j2").write_text("Ticket: {{ text }}\nTeam:", encoding="utf-8")
    write_records(tmp_path / "suites" / "data" / "tickets.jsonl", TICKETS)
    created = Project(tmp_path, tmp_path / "suites" / "demo.yaml")
    created.write_suite(base_suite())
    return created


@pytest.fixture
def fake_server():
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        yield server


@pytest.fixture
def cli():
    def invoke(*args: str):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return invoke


@pytest.fixture(autouse=True)
def _no_real_keys(monkeypatch):
    """Tests never reach a real provider: keys and base URLs from the developer's shell are dropped."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
