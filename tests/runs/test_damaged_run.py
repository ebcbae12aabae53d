"""A damaged run folder stops the run with a clear error naming the file (exit 2, nothing sent);
--new starts over instead of picking the broken run again."""

from __future__ import annotations

import pytest

from harness.testing.fake_server import FakeLLMServer, FaultRule, keyword_replier
from tests.conftest import TICKET_REPLIES, base_suite


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DAMAGE = {
    "truncated store": ("run.sqlite", _truncate),
    "overwritten store": ("run.sqlite", lambda path: path.write_bytes(b"not a database\n" * 300)),
    "emptied store": ("run.sqlite", lambda path: path.write_bytes(b"")),
    "deleted store": ("run.sqlite", lambda path: path.unlink()),
    "corrupt manifest": ("manifest.json", lambda path: path.write_text('{"run_id": "x", "status": ')),
    "deleted manifest": ("manifest.json", lambda path: path.unlink()),
}


@pytest.fixture
def unfinished_run(project, cli):
    """An incomplete run (one request failed terminally) that a plain rerun would resume."""
    faults = [FaultRule(status=400, times=1, match="billed")]
    with FakeLLMServer(keyword_replier(TICKET_REPLIES), faults=faults) as server:
        project.write_suite(base_suite(server.base_url))
        assert cli("run", str(project.suite_path)).exit_code == 1
        [run_dir] = project.run_dirs()
        server.log.reset()
        yield run_dir, server


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_run_is_reported_and_nothing_is_sent(project, cli, unfinished_run, damage):
    run_dir, server = unfinished_run
    name, harm = DAMAGE[damage]
    harm(run_dir / name)
    for args in ([], ["--resume", run_dir.name]):
        result = cli("run", str(project.suite_path), *args)
        assert result.exit_code == 2, result.output
        text = " ".join(result.output.split())
        assert str(run_dir / name) in text and "--new" in text and "Traceback" not in text, text
        assert server.log.total == 0, f"{damage}: requests were sent ({args})"
    assert project.run_dirs() == [run_dir]

    started_over = cli("run", str(project.suite_path), "--new")  # the way out: a new run
    assert started_over.exit_code in (0, 1), started_over.output  # 1: the injected 400 fails again
    assert len(project.run_dirs()) == 2 and server.log.total == 6


@pytest.mark.parametrize("store_bytes", [b"", None], ids=["empty file", "no tables"])
def test_a_folder_left_by_a_kill_at_start_does_not_block_the_suite(project, cli, store_bytes):
    """SIGKILL between the folder's mkdir and its manifest leaves a store with nothing in it:
    a plain rerun removes that folder and sends every request once."""
    import sqlite3

    from tests.conftest import TICKETS

    stale = project.root / "reports" / "demo" / "20990101T000000Z-deadbeef"
    stale.mkdir(parents=True)
    (stale / "run.lock").touch()
    if store_bytes is None:  # killed after the WAL pragma, before the first migration
        db = sqlite3.connect(stale / "run.sqlite")
        db.execute("PRAGMA journal_mode=WAL")
        db.close()
    else:
        (stale / "run.sqlite").write_bytes(store_bytes)
        (stale / "run.sqlite-journal").write_bytes(b"")
    with FakeLLMServer(keyword_replier(TICKET_REPLIES)) as server:
        project.write_suite(base_suite(server.base_url))
        result = cli("run", str(project.suite_path))
        assert result.exit_code == 0, result.output
        assert "removed run folder" in result.output
        assert not stale.exists()
        assert len(server.log.attempts) == len(TICKETS)
        assert set(server.log.attempts.values()) == {1}
        assert len(project.run_dirs()) == 1
        server.log.reset()
        assert cli("run", str(project.suite_path)).exit_code == 0  # and again: nothing left to block it
