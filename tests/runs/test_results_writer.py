"""results.jsonl as the run writes it (from the store's rows) equals what `ResultLine` makes of
the same store, line for line, over odd content: non-ASCII and control characters, chat
messages, a request whose item is gone, failed and reused requests, NaN and infinite values."""

from __future__ import annotations

import json
import math

from harness.engine.providers.base import Completion
from harness.engine.store import NewRequest, RunStore, StoredItem
from harness.runs.results import RESULTS_FILE, ResultLine, iter_result_lines, read_results_file
from harness.runs.results_writer import store_result_texts, write_store_results

ODD = 'é "quoted" \\ back\nline \u2028 \x00 😀 中文'


def _store(tmp_path) -> RunStore:
    store = RunStore(tmp_path / "run.sqlite")
    items = [StoredItem("i0", "line 1", ("all", "hard"), "c1", {"id": "i0", "text": ODD, "n": 3, "ok": True,
                                                                  "nested": {"a": [1, 2]}, "long": "x" * 80}),
             StoredItem("i1", "line 2", ("all",), None, {"id": "i1", "text": "plain", "score": float("nan")}),
             StoredItem("i2", "line 3", (), None, {})]
    requests = [NewRequest("r0", "i0", "t", 0, {"prompt": f"Say {ODD}", "model": "m", "params": {"max_tokens": 5}}),
                NewRequest("r1", "i1", "t", 0, {"messages": [{"role": "system", "content": ODD},
                                                              {"role": "user", "content": "hi"}], "model": "m"}),
                NewRequest("r2", "i2", "t", 1, {"prompt": "p"}),
                NewRequest("r3", "gone", "t", 0, {"prompt": "no item stored"}),
                NewRequest("r4", "i0", "u", 0, {"prompt": "reused"})]
    store.add_requests(requests, items)
    attempt = store.start_attempt("r0")
    store.succeed("r0", attempt.number, Completion(ODD, 10, 2, "stop"), 12.5,
                  [("r0", "exact", 1.0, True, {"answer": ODD}), ("r0", "a_len", 0.25, None, None)],
                  cost_usd=1e-7)
    attempt = store.start_attempt("r1")
    store.succeed("r1", attempt.number, Completion("out", None, None), 3.0, [("r1", "exact", float("nan"), False, {})])
    attempt = store.start_attempt("r2")
    store.fail("r2", attempt.number, final=True, error=f"HTTP 400: {ODD}", status=400)
    store.reuse("r4", Completion("cached", 1, 1), "cache", [("r4", "exact", float("inf"), True, None)])
    return store


def test_the_written_lines_are_the_models_lines(tmp_path):
    store = _store(tmp_path)
    by_model = [json.loads(line.model_dump_json()) for line in iter_result_lines(store)]
    written = [json.loads(text) for text in store_result_texts(store)]
    assert written == by_model
    assert [line["request_id"] for line in written] == ["r0", "r1", "r2", "r3", "r4"]
    first = written[0]
    assert first["prompt"] == f"Say {ODD}" and first["output"] == ODD and first["item"]["text"] == ODD
    assert first["fields"] == {"id": "i0", "text": ODD, "n": "3", "ok": "True"}  # short scalars only
    assert list(first["scores"]) == ["a_len", "exact"] and first["scores"]["exact"]["detail"] == {"answer": ODD}
    assert written[1]["messages"][0] == {"role": "system", "content": ODD}
    assert written[1]["scores"]["exact"]["value"] is None and written[1]["item"]["score"] is None  # NaN: null
    assert written[3]["item"] == {} and written[3]["slices"] == []  # its item is not stored
    assert written[4]["origin"] == "cache" and written[4]["scores"]["exact"]["value"] is None  # inf: null


def test_results_file_reads_back_as_result_lines(tmp_path):
    store = _store(tmp_path)
    path = write_store_results(tmp_path, store)
    assert path == tmp_path / RESULTS_FILE
    lines = list(read_results_file(path))
    assert all(isinstance(line, ResultLine) for line in lines) and len(lines) == 5
    assert lines[2].state == "failed_terminal" and lines[2].error == f"HTTP 400: {ODD}"
    assert math.isclose(lines[0].cost_usd, 1e-7) and lines[0].latency_ms == 12.5
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text and "😀" in text  # strict JSON, UTF-8 kept as is
    assert not list(tmp_path.glob("*.tmp"))
