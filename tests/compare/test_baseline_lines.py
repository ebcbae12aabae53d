"""Baselines of large suites are JSON Lines (a versioned header, then one line per item), read item
by item; one-document baselines (all existing files) still load. Real runs against the fake server."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from pathlib import Path

import pytest

from harness.compare.baseline import (
    LINES_FORMAT,
    ItemLine,
    baseline_path,
    read_baseline,
    read_baseline_header,
    set_baseline,
)
from harness.compare.baseline_lines import lean_item_line
from harness.compare.snapshot import ItemRecord, Shared, compact_record, snapshot_run
from harness.errors import UserError
from tests.compare.test_gate_cli import EXIT_INCONCLUSIVE, reports, run, use_generated_data
from tests.conftest import base_suite

REPO = Path(__file__).resolve().parents[2]


def run_folder(project, run_id: str) -> Path:
    return project.root / "reports" / "demo" / run_id


def test_a_large_baseline_is_written_as_lines_and_reads_back_the_same(project, cli, fake_server):
    use_generated_data(project, fake_server.base_url, 30)
    first = run(cli, project.suite_path)
    snapshot = snapshot_run(run_folder(project, first))
    path = set_baseline(project.root, snapshot, "production", note="as lines", line_format_items=10)

    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    assert header["format"] == LINES_FORMAT and header["version"] == 2 and header["items"] == 30
    assert header["snapshot"]["items"] == {} and header["history"][0]["note"] == "as lines"
    assert len(lines) == 31 and {json.loads(line)["id"] for line in lines[1:]} == set(snapshot.items)

    baseline, digest = read_baseline(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert baseline.version == 2 and baseline.snapshot.run_id == first
    assert baseline.snapshot.model_dump(mode="json") == snapshot.model_dump(mode="json")
    assert read_baseline_header(path).history[0].from_run == first

    # Setting it again keeps the history, read from the header alone.
    second = run(cli, project.suite_path)
    set_baseline(project.root, snapshot_run(run_folder(project, second)), "production", line_format_items=10)
    assert [event.from_run for event in read_baseline_header(path).history] == [first, second]


def test_small_baselines_stay_one_document_and_old_files_still_load(project, cli, fake_server):
    project.write_suite(base_suite(fake_server.base_url))
    first = run(cli, project.suite_path)
    assert cli("baseline", "set", str(project.suite_path), "--from", first).exit_code == 0
    stored = json.loads(baseline_path(project.root, "demo", "production").read_text())
    assert stored["version"] == 1 and sorted(stored["snapshot"]["items"]) == [f"a{n}" for n in range(1, 7)]

    committed = REPO / "baselines" / "tickets" / "production.json"
    baseline, digest = read_baseline(committed)
    assert baseline.version == 1 and len(baseline.snapshot.items) == 230
    assert digest == hashlib.sha256(committed.read_bytes()).hexdigest()


def test_the_gate_decides_the_same_on_a_lines_baseline(project, cli, fake_server):
    use_generated_data(project, fake_server.base_url, 40)
    base = run(cli, project.suite_path)
    candidate = run(cli, project.suite_path, "--prompt-version", "v2")
    path = set_baseline(project.root, snapshot_run(run_folder(project, base)), "production", line_format_items=10_000)
    as_document = cli("gate", candidate, "--reports-dir", reports(project), "--json")
    set_baseline(project.root, snapshot_run(run_folder(project, base)), "production", line_format_items=10)
    assert json.loads(path.read_text().splitlines()[0])["format"] == LINES_FORMAT
    as_lines = cli("gate", candidate, "--reports-dir", reports(project), "--json")

    # v2 answers "bug" to everything: far worse, on too few items to say by how much.
    assert as_document.exit_code == as_lines.exit_code == EXIT_INCONCLUSIVE
    decided = [json.loads(result.output) for result in (as_document, as_lines)]
    assert decided[0]["verdict"] == decided[1]["verdict"] == "INCONCLUSIVE"
    assert decided[0]["metrics"] == decided[1]["metrics"]
    assert decided[0]["reasons"] == decided[1]["reasons"]


def test_a_cut_off_lines_baseline_is_bad_input_naming_the_file(project, cli, fake_server):
    use_generated_data(project, fake_server.base_url, 12)
    snapshot = snapshot_run(run_folder(project, run(cli, project.suite_path)))
    path = set_baseline(project.root, snapshot, "production", line_format_items=10)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)

    path.write_text("".join(lines[:-3]), encoding="utf-8")
    with pytest.raises(UserError) as cut:
        read_baseline(path)
    assert cut.value.file == str(path) and "announces 12 items, it holds 9" in cut.value.message

    path.write_text("".join(lines[:5]) + '{"id": "x", "scores": 3}\n', encoding="utf-8")
    with pytest.raises(UserError) as bad:
        read_baseline(path)
    assert bad.value.file == str(path) and "line 6" in bad.value.message


def test_a_comparison_keeps_only_the_fields_it_needs(project, cli, fake_server):
    use_generated_data(project, fake_server.base_url, 20)
    folder = run_folder(project, run(cli, project.suite_path))
    whole = snapshot_run(folder)
    lean = snapshot_run(folder, keep_fields=["label"])
    for item_id, record in whole.items.items():
        kept = lean.items[item_id]
        assert kept.scores == record.scores and kept.outputs == record.outputs and kept.labels == record.labels
        assert kept.fields == {"label": record.fields["label"]} and not kept.output_sha256
        assert len(record.output_sha256) == 1 and set(record.fields) == {"id", "text", "label"}


def compact_by_the_model(raw: bytes, keep: list[str]):
    """The plain way: validate the line with its model, then compact the record."""
    line = ItemLine.model_validate_json(raw)
    compact_record(line.record, keep, Shared())
    return line.id, line.record


def test_lines_read_for_a_comparison_match_the_model_and_odd_lines_still_go_through_it():
    rng = random.Random(12)
    keep = ["lang"]
    for _ in range(200):
        epochs = rng.randint(1, 3)
        record = ItemRecord(
            slices=rng.sample(["all", "hard", "de"], rng.randint(0, 3)),
            scores={m: [rng.choice([None, 0.0, 1.0, rng.random()]) for _ in range(epochs)]
                    for m in rng.sample(["accuracy", "f1"], rng.randint(1, 2))},
            output_sha256=[rng.choice([None, "ab" * 32]) for _ in range(epochs)],
            outputs=[rng.choice([None, "", "billing", "x" * 300]) for _ in range(epochs)],
            output_lengths=[rng.choice([None, 0, 7, 300]) for _ in range(epochs)],
            cluster=rng.choice([None, "c1", "c2"]),
            fields={k: v for k, v in (("lang", rng.choice(["en", "de"])), ("id", "x")) if rng.random() < 0.8},
            labels=[rng.choice([None, "billing", "(none)"]) for _ in range(epochs)], failed=rng.randint(0, epochs))
        raw = ItemLine(id=f"i{rng.randint(0, 99)}", record=record).model_dump_json().encode()
        lean = lean_item_line(raw, keep, Shared())
        assert lean is not None
        expected = compact_by_the_model(raw, keep)
        assert lean[0] == expected[0]
        assert dataclasses.asdict(lean[1]) == dataclasses.asdict(expected[1])
        assert dict(lean[1].scores) == dict(expected[1].scores)
    # Lines the model may read differently (or refuse) are left to it.
    odd = [b'{"id": "a", "record": {"slices": [], "scores": {"m": [true]}, "outputs": [], "output_lengths": []}}',
           b'{"id": "a", "record": {"slices": [], "scores": {"m": ["0.5"]}, "outputs": [], "output_lengths": []}}',
           b'{"id": 3, "record": {}}', b'{"id": "x", "scores": 3}', b'not json']
    assert [lean_item_line(raw, keep, Shared()) for raw in odd] == [None] * len(odd)
