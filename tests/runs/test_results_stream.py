"""results.jsonl and the scores are streamed through the run store in bounded batches; the summary
reads light lines. Batching must change nothing: the same lines, scores and summary as whole reads."""

from __future__ import annotations

import io
import json

from rich.console import Console

from harness.config.loader import load_suite
from harness.engine.store import RunStore
from harness.report.summary import SummaryOptions, print_summary
from harness.runs.results import (
    RESULTS_FILE,
    iter_result_lines,
    read_results_file,
    result_lines,
    summary_lines,
    write_results,
)
from harness.scoring.apply import score_run
from harness.scoring.registry import ScoringContext, bind_scorers
from tests.conftest import base_suite


def finished_run(project, cli, fake_server, epochs: int = 2):
    suite = base_suite(fake_server.base_url)
    suite["epochs"] = epochs
    suite["targets"][0]["params"]["temperature"] = 0.7
    suite["slices"] = [{"name": "all"}, {"name": "first2", "first_n": 2}]
    suite["evaluate"] = ["all", "first2"]
    project.write_suite(suite)
    result = cli("run", str(project.suite_path))
    assert result.exit_code == 0, result.output
    [folder] = project.run_dirs()
    return folder


def test_results_written_in_batches_are_the_lines_of_the_store(project, cli, fake_server):
    folder = finished_run(project, cli, fake_server)
    store = RunStore.in_folder(folder)
    try:
        whole = result_lines(store)
        assert len(whole) == 12 and all(line.scores for line in whole)
        assert list(iter_result_lines(store, batch=5)) == whole  # batches of 5 over 12 requests
        assert list(read_results_file(folder / RESULTS_FILE)) == whole
        write_results(folder, iter_result_lines(store, batch=1))
        assert list(read_results_file(folder / RESULTS_FILE)) == whole
        assert [json.loads(text)["request_id"] for text in (folder / RESULTS_FILE).read_text().splitlines()] == \
            [line.request_id for line in whole]
    finally:
        store.close()


def test_scoring_in_batches_scores_every_succeeded_request(project, cli, fake_server):
    folder = finished_run(project, cli, fake_server)
    store = RunStore.in_folder(folder)
    try:
        before = store.scores_by_request()
        store.db.execute("DELETE FROM scores")  # autocommit: the scores are gone for good
        loaded = load_suite(project.suite_path)
        scorers = bind_scorers(loaded.spec.scorers, ScoringContext(suite_dir=loaded.path.parent))
        assert score_run(store, scorers, store.items(), batch=5) == 12
        assert store.scores_by_request() == before
    finally:
        store.close()


def test_the_summary_reads_light_lines_and_prints_the_same(project, cli, fake_server):
    # a1 and a2 are both answered right (the fake server answers by keyword): alike scores.
    folder = finished_run(project, cli, fake_server)
    store = RunStore.read_only(folder / RunStore.FILENAME)
    try:
        whole = result_lines(store)
    finally:
        store.close()
    light = summary_lines(folder)
    assert [line.request_id for line in light] == [line.request_id for line in whole]
    for short, full in zip(light, whole, strict=True):
        assert (short.item_id, short.target, short.slices, short.state, short.input_tokens, short.output_tokens) == \
            (full.item_id, full.target, full.slices, full.state, full.input_tokens, full.output_tokens)
        assert {name: score["value"] for name, score in short.scores.items()} == \
            {name: score["value"] for name, score in full.scores.items()}
        assert not hasattr(short, "item") and not hasattr(short, "output")  # nothing printed reads them
    assert light[0].scores is light[2].scores  # lines that scored alike share one dict

    options = SummaryOptions(["accuracy"], ["all", "first2"])
    printed = []
    for lines in (whole, light):
        console = Console(file=io.StringIO(), width=160)
        print_summary(console, lines, 1.0, options)
        printed.append(console.file.getvalue())
    assert printed[0] == printed[1] and "first2" in printed[0]
