"""A git repository with gated suites for the CI tests: `tickets` (prompt `route`, which includes
a shared header) with a committed baseline, and `fresh` (prompt `plain`) without one. The fake
server answers every ticket correctly, unless the prompt says "Be brief", when it answers `bug`
to everything: the regressing prompt change."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.conftest import base_suite, write_records

LABELS = {"billed": "billing", "crashes": "bug", "dark mode": "feature request", "log in": "account access",
          "Cancel": "cancellation"}
TICKETS = [{"id": f"t{n:02d}", "text": f"{keyword} (ticket {n})", "label": label, "lang": "en" if n % 3 else "de"}
           for n in range(60) for keyword, label in [list(LABELS.items())[n % 5]]]
REGRESSION = "Be brief."


def reply(prompt: str) -> str:
    if REGRESSION in prompt:
        return "bug"
    return next((label for key, label in LABELS.items() if key in prompt), "ok")


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=root,
                          check=True, capture_output=True, text=True)
    return done.stdout


def suite(name: str, prompt: str, server_url: str) -> dict:
    spec = base_suite(server_url)
    spec.update(name=name, dataset={"path": f"data/{name}.jsonl"},
                slices=[{"name": "all"}, {"name": "german", "where": {"lang": "de"}}],
                prompt={"name": prompt, "version": "v1"},
                gate={"primary": [{"metric": "accuracy", "margin": 0.1}],
                      "guardrails": [{"metric": "output_length", "higher_is_better": False}],
                      "slices": ["german"], "sample": {"stratify_by": "label", "seed": 1}})
    return spec


def write_suite(root: Path, spec: dict) -> None:
    (root / "suites" / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")


def make_repo(root: Path, server_url: str, invoke) -> Path:
    """The repository with its baseline committed; `invoke(*args)` runs the CLI and returns its result."""
    files = {"prompts/shared/header.j2": "Route the support ticket to one team.\n",
             "prompts/route/v1.j2": "{% include 'shared/header.j2' %}Ticket: {{ text }}\nTeam:",
             "prompts/plain/v1.j2": "{% include 'shared/header.j2' %}{{ text }} ->"}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    for name, prompt in (("tickets", "route"), ("fresh", "plain")):
        write_records(root / "suites" / "data" / f"{name}.jsonl", TICKETS)
        write_suite(root, suite(name, prompt, server_url))
    (root / ".gitignore").write_text("reports/\n", encoding="utf-8")
    ran = invoke("run", str(root / "suites" / "tickets.yaml"))
    assert ran.exit_code == 0, ran.output
    run_id = next(p.name for p in (root / "reports" / "tickets").iterdir() if p.is_dir())
    made = invoke("baseline", "set", str(root / "suites" / "tickets.yaml"), "--from", run_id)
    assert made.exit_code == 0, made.output
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "suites and the tickets baseline")
    return root


def change_header(root: Path, text: str) -> None:
    (root / "prompts" / "shared" / "header.j2").write_text(text, encoding="utf-8")
