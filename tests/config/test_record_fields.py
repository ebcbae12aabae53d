"""Records are read with their own fields: a field the first record lacks is not lost for the
others, and a record without the answer a scorer compares with is bad input, not a silent 0."""

from __future__ import annotations

import json

from harness.config.datasets import load_dataset_items, select_slices
from harness.config.suite import DatasetSpec, SliceSpec
from tests.conftest import TICKETS, base_suite, write_records


def test_a_field_missing_from_the_first_record_is_kept_for_the_others(tmp_path):
    records = [{"id": "x0", "text": "no label here"}] + [dict(t) for t in TICKETS]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    dataset = load_dataset_items(DatasetSpec(path="d.jsonl"), lambda rel: tmp_path / rel)
    assert "label" not in dataset.items[0].fields
    assert [item.fields["label"] for item in dataset.items[1:]] == [t["label"] for t in TICKETS]


def test_a_record_without_the_filtered_field_is_simply_outside_the_slice(tmp_path):
    records = [{"id": "x0", "text": "t"}, {"id": "x1", "text": "t", "lang": "de"}, {"id": "x2", "text": "t", "lang": "en"}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    dataset = load_dataset_items(DatasetSpec(path="d.jsonl"), lambda rel: tmp_path / rel)
    chosen = select_slices(dataset, [SliceSpec(name="en", where={"lang": "en"})], ["en"])
    assert [item.id for item in chosen] == ["x2"]


def test_a_first_record_without_text_does_not_fail_the_valid_ones(project, cli, fake_server):
    records = [{"id": "a0", "label": "billing", "note": "the text went missing"}] + TICKETS
    write_records(project.root / "suites" / "data" / "tickets.jsonl", records)
    project.write_suite(base_suite(fake_server.base_url))
    result = cli("run", str(project.suite_path))
    assert result.exit_code == 2, result.output
    # Only the record that really lacks `text` is named, with its line.
    assert "line 1 (id 'a0'): missing text" in result.output and "problems" not in result.output
    assert fake_server.log.total == 0


def test_a_missing_expected_answer_is_bad_input_before_anything_is_sent(project, cli, fake_server):
    records = [{"id": "a0", "text": "I was billed twice"}] + TICKETS + [{"id": "a9", "text": "Please add dark mode"}]
    write_records(project.root / "suites" / "data" / "tickets.jsonl", records)
    project.write_suite(base_suite(fake_server.base_url))
    result = cli("run", str(project.suite_path))
    assert result.exit_code == 2, result.output
    assert "2 problems in the input" in result.output
    assert "line 1 (id 'a0'): no 'label' for scorer accuracy" in result.output
    assert "line 8 (id 'a9')" in result.output
    assert fake_server.log.total == 0


def test_a_line_that_is_not_utf8_is_named(project, cli, fake_server):
    path = project.root / "suites" / "data" / "tickets.jsonl"
    write_records(path, TICKETS)
    path.write_bytes(path.read_bytes() + b'{"id": "z", "text": "caf\xe9", "label": "bug"}\n')
    project.write_suite(base_suite(fake_server.base_url))
    result = cli("run", str(project.suite_path))
    assert result.exit_code == 2, result.output
    assert "line 7" in result.output and "not UTF-8" in result.output
    assert fake_server.log.total == 0
