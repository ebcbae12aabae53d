"""A run's lines read while another connection is writing the run show one state of its store:
a succeeded request always comes with the scores committed together with it."""

from __future__ import annotations

import threading

from harness.engine.providers.base import Completion
from harness.engine.store import NewRequest, RunStore, StoredItem
from harness.runs.results import read_run_lines

REQUESTS = 4000


def test_lines_read_during_a_run_never_show_a_success_without_its_scores(tmp_path):
    writer_store = RunStore.in_folder(tmp_path)
    writer_store.add_requests([NewRequest(f"r{n:05d}", f"i{n}", "t", 0, {"prompt": f"p{n}"}) for n in range(REQUESTS)],
                              [StoredItem(f"i{n}", f"line {n}", ("all",), None, {"text": f"t{n}"})
                               for n in range(REQUESTS)])
    done = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            for n in range(REQUESTS):
                request_id = f"r{n:05d}"
                attempt = writer_store.start_attempt(request_id)
                assert attempt is not None
                writer_store.succeed(request_id, attempt.number, Completion("billing"), 1.0,
                                     [(request_id, "accuracy", 1.0, True, {})])
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    reads = 0
    try:
        while reads < 200 and not done.is_set():
            lines = read_run_lines(tmp_path)
            reads += 1
            unscored = [line.request_id for line in lines if line.state == "succeeded" and not line.scores]
            assert unscored == [], f"read {reads}: {len(unscored)} succeeded line(s) without scores"
    finally:
        done.wait()
        writer.join()
        writer_store.close()
    assert failures == []
    lines = read_run_lines(tmp_path)
    assert len(lines) == REQUESTS and all(line.scores for line in lines)
