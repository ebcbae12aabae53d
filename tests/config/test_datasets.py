"""Datasets through Hugging Face `datasets` (JSONL, CSV, Parquet) and slice selection."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from harness.config.datasets import load_dataset_items, select_slices
from harness.config.suite import DatasetSpec, SliceSpec
from harness.errors import UserError

RECORDS = [{"id": f"i{n}", "text": f"text {n}", "label": "ab"[n % 2] if n < 80 else "c", "lang": "en" if n % 5 else "de"}
           for n in range(100)]


def _load(tmp_path, records=RECORDS, name="d.jsonl", **spec):
    path = tmp_path / name
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif name.endswith(".csv"):
        import csv
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.Table.from_pylist(records), path)
    return load_dataset_items(DatasetSpec(path=name, **spec), lambda rel: tmp_path / rel)


@pytest.mark.parametrize("name", ["d.jsonl", "d.csv", "d.parquet"])
def test_formats_load_with_ids_and_locations(tmp_path, name):
    dataset = _load(tmp_path, name=name)
    assert [item.id for item in dataset.items[:2]] == ["i0", "i1"]
    assert dataset.items[1].location == {"d.jsonl": "line 2", "d.csv": "line 3", "d.parquet": "row 2"}[name]
    assert len(dataset.fingerprint) == 64


def test_items_without_id_get_a_stable_content_hash(tmp_path):
    records = [{"text": "a"}, {"text": "b"}]
    first = _load(tmp_path, records, id_field=None)
    second = _load(tmp_path, records, id_field=None)
    assert [i.id for i in first.items] == [i.id for i in second.items]
    assert first.items[0].id != first.items[1].id


def test_slices_filter_sample_and_stratify(tmp_path):
    dataset = _load(tmp_path)
    slices = [
        SliceSpec(name="german", where={"lang": "de"}),
        SliceSpec(name="head", first_n=10),
        SliceSpec(name="s30", sample=30, seed=1),
        SliceSpec(name="strat", sample=20, stratify_by="label", seed=3),
    ]
    german = select_slices(dataset, slices, ["german"])
    assert len(german) == 20 and all(i.fields["lang"] == "de" for i in german)
    assert [i.id for i in select_slices(dataset, slices, ["head"])] == [f"i{n}" for n in range(10)]
    sample = select_slices(dataset, slices, ["s30"])
    assert len(sample) == 30 and [i.id for i in sample] == [i.id for i in select_slices(dataset, slices, ["s30"])]
    strat = select_slices(dataset, slices, ["strat"])
    assert Counter(i.fields["label"] for i in strat) == {"a": 8, "b": 8, "c": 4}  # 40/40/20 of the data
    union = select_slices(dataset, slices, ["german", "head"])
    assert len(union) == 20 + 10 - 2  # i0 and i5 are in both
    assert set(union[0].slices) >= {"german", "head"}


def test_filter_on_unknown_field_is_a_user_error(tmp_path):
    dataset = _load(tmp_path)
    with pytest.raises(UserError, match="field 'langauge'"):
        select_slices(dataset, [SliceSpec(name="x", where={"langauge": "de"})], ["x"])


def test_unreadable_file_is_a_user_error(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"id": 1}\n{not json\n')
    with pytest.raises(UserError, match="invalid JSON") as caught:
        load_dataset_items(DatasetSpec(path="bad.jsonl"), lambda rel: tmp_path / rel)
    assert caught.value.location == "line 2"
    (tmp_path / "bad.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(UserError, match="cannot read the dataset"):
        load_dataset_items(DatasetSpec(path="bad.csv"), lambda rel: tmp_path / rel)


def test_date_strings_stay_strings(tmp_path):
    dataset = _load(tmp_path, [{"id": "a", "expected": {"date": "2025-03-19"}}])
    assert dataset.items[0].fields["expected"]["date"] == "2025-03-19"


def test_a_lone_surrogate_escape_is_bad_input_naming_its_line(tmp_path):
    """Valid JSON, but not text any API (or our own results file) can hold: reported before anything
    is sent, instead of crashing the run at its first write."""
    path = tmp_path / "data.jsonl"
    path.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": "bad \\ud800 half"}\n'
                    '{"id": "c", "text": "a pair \\ud83d\\ude00 is fine"}\n', encoding="utf-8")
    with pytest.raises(UserError, match="without its pair") as raised:
        load_dataset_items(DatasetSpec(path="data.jsonl"), lambda rel: tmp_path / rel)
    assert raised.value.location == "line 2"
