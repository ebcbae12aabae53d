"""Progress where no terminal is: plain lines at a steady interval, with an ETA from the recent rate.

The unit tests drive `PlainProgress` with a fake clock (its own input, nothing of ours mocked);
the CLI test runs a real `evalbatch run` through CliRunner, whose stdout is not a terminal."""

from __future__ import annotations

import io
import re
import time

import pytest
from rich.console import Console

from harness.engine.progress import PlainProgress, PlainProgressSettings, RecentRate
from harness.engine.providers.base import Completion
from tests.compare.test_gate_cli import use_generated_data

LINE = re.compile(r"^requests (\d+)/(\d+) \(\d+%\)  failed (\d+)  retrying (\d+)  tokens [\d,]+  "
                  r"([\d.]+|\?) req/s  ETA (\d+:\d\d:\d\d|\?)$", re.M)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _plain(total: int, clock: FakeClock, **settings) -> tuple[PlainProgress, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, width=200, highlight=False)
    return PlainProgress(total, 0, console, PlainProgressSettings(clock=clock, ticker=False, **settings)), out


def _done(progress: PlainProgress) -> None:
    progress.succeeded(Completion(text="ok", input_tokens=3, output_tokens=1))


def test_eta_follows_the_recent_rate_not_the_first_items():
    clock = FakeClock()
    progress, _ = _plain(1000, clock)
    for _ in range(10):  # a slow start (a model loading, a cold pool): one request every 5 s
        clock.now += 5.0
        _done(progress)
    for _ in range(600):  # then 10 requests a second, for 60 s
        clock.now += 0.1
        _done(progress)
    line = progress.line()
    assert "requests 610/1,000 (61%)" in line and "10.0 req/s" in line, line
    # 390 left at 10 req/s; the whole run's average (610 in 110 s) would say 70 s.
    assert re.search(r"ETA 0:00:(39|40)", line), line


def test_recent_rate_spans_its_window():
    rate = RecentRate(window_s=30.0)
    assert rate.per_second() is None and rate.eta_s(5) is None
    rate.record(0.0, 0)
    rate.record(10.0, 100)
    rate.record(40.0, 130)  # 30 s window: from t=10 (100 done) to t=40 (130 done)
    assert rate.per_second() == pytest.approx(1.0)
    assert rate.eta_s(60) == pytest.approx(60.0) and rate.eta_s(0) == 0.0


def test_a_line_every_tenth_of_the_requests_or_every_interval():
    clock = FakeClock()
    progress, out = _plain(50, clock)
    for _ in range(5):
        clock.now += 0.01
        _done(progress)
    assert [m.group(1) for m in LINE.finditer(out.getvalue())] == ["5"]  # 10% of 50
    clock.now += 10.0  # nothing finished for 10 s: the interval prints a line all the same
    progress.tick()
    progress.failed(final=False)
    clock.now += 10.0
    progress.tick()
    lines = LINE.findall(out.getvalue())
    assert [line[0] for line in lines] == ["5", "5", "5"]
    assert lines[-1][3] == "1"  # retrying 1
    progress.retry_started()
    progress.failed(final=True)
    with progress:
        pass
    last = LINE.findall(out.getvalue())[-1]
    assert (last[0], last[2], last[3]) == ("6", "1", "0")


def test_run_in_a_ci_log_prints_plain_progress_lines(project, cli, fake_server):
    use_generated_data(project, fake_server.base_url, 40)
    result = cli("run", str(project.suite_path))
    assert result.exit_code == 0, result.output
    lines = LINE.findall(result.output)
    done = [int(line[0]) for line in lines]
    # Every 10% of the 40 requests at least, before the end as well as at it.
    assert all(line[1] == "40" for line in lines) and done[-1] == 40
    assert {4, 8, 12, 16, 20, 24, 28, 32, 36} <= set(done), result.output
    assert not re.search(r"requests ━", result.output)  # no redrawing bar in a log


def test_a_rate_limit_pause_shows_in_the_line():
    """A target waiting for a 429's reset looks slow, not stuck."""
    progress, _ = _plain(10, FakeClock())
    assert "paused" not in progress.line()
    progress.paused(time.monotonic() + 42)
    assert re.search(r"  paused by rate limits \(0:00:4[12] left\)$", progress.line())
    progress.paused(time.monotonic() - 1)  # an earlier, shorter pause does not shorten it
    assert "paused by rate limits" in progress.line()
