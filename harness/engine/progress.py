"""Progress: done / failed / retrying counts, tokens and an ETA.

On a terminal, a rich progress bar. Anywhere else (a CI log, a file, a pipe) a bar that redraws
itself is invisible until the end, so a plain line is printed at a steady interval instead.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.engine.providers.base import Completion

if TYPE_CHECKING:
    from rich.console import Console

Clock = Callable[[], float]


class RecentRate:
    """Requests per second over the last `window_s` seconds, and the ETA that rate gives.

    A rate over the whole run would be dominated by its start (a model loading, a cold
    connection pool, a burst of 429s): the ETA follows what the run does now."""

    def __init__(self, window_s: float = 30.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def record(self, now: float, done: int) -> None:
        self._samples.append((now, done))
        # Keep one sample at or before the window's start, so the rate spans the whole window.
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.window_s:
            self._samples.popleft()

    def per_second(self) -> float | None:
        """None until two samples some time apart exist."""
        if len(self._samples) < 2:
            return None
        (start, done_then), (end, done_now) = self._samples[0], self._samples[-1]
        if end <= start:
            return None
        return (done_now - done_then) / (end - start)

    def eta_s(self, remaining: int) -> float | None:
        if remaining <= 0:
            return 0.0
        rate = self.per_second()
        return remaining / rate if rate else None


@dataclass(frozen=True)
class PlainProgressSettings:
    """When plain progress lines are printed: every `interval_s` seconds or every `fraction` of
    the requests, whichever comes first. `clock` is injectable so tests need not sleep; `ticker`
    starts a thread that prints on time even while no request finishes (requests stuck in long
    timeouts must not look like a hung job)."""

    interval_s: float = 10.0
    fraction: float = 0.1
    window_s: float = 30.0
    clock: Clock = time.monotonic
    ticker: bool = True


class PlainProgress:
    """Implements the engine's ProgressSink with plain lines, e.g.
    `requests 120/1,000 (12%)  failed 0  retrying 2  tokens 9,120  33.1 req/s  ETA 0:00:26`."""

    def __init__(self, total: int, already_done: int, console: Console,
                 settings: PlainProgressSettings | None = None) -> None:
        self.settings = settings or PlainProgressSettings()
        self.total, self.done = total, already_done
        self.failed_count = self.retrying = self.tokens = 0
        self.paused_until = 0.0
        self._console = console
        self._rate = RecentRate(self.settings.window_s)
        self._step = max(1, math.ceil(total * self.settings.fraction))
        self._last_time = self.settings.clock()
        self._last_done = already_done
        self._printed = False
        self._lock = threading.Lock()  # the ticker thread prints too
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._rate.record(self._last_time, already_done)

    def __enter__(self) -> PlainProgress:
        if self.settings.ticker:
            self._ticker = threading.Thread(target=self._tick_until_stopped, name="progress-lines", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            if self.done != self._last_done or not self._printed:
                self._print(self.settings.clock())

    def succeeded(self, completion: Completion) -> None:
        self.tokens += (completion.input_tokens or 0) + (completion.output_tokens or 0)
        self._advance()

    def failed(self, final: bool) -> None:
        if final:
            self.failed_count += 1
            self._advance()
        else:
            self.retrying += 1
            self.tick()

    def retry_started(self) -> None:
        self.retrying -= 1

    def paused(self, until: float) -> None:
        self.paused_until = max(self.paused_until, until)
        self.tick()

    def tick(self) -> None:
        """Prints a line if the interval has passed or another `fraction` of the requests is done."""
        with self._lock:
            now = self.settings.clock()
            if self.done - self._last_done >= self._step or now - self._last_time >= self.settings.interval_s:
                self._print(now)

    def line(self) -> str:
        """The progress line as of now."""
        rate = self._rate.per_second()
        eta = self._rate.eta_s(self.total - self.done)
        percent = 100 * self.done / self.total if self.total else 100.0
        shown_rate = f"{rate:.1f}" if rate is not None else "?"
        return (f"requests {self.done:,}/{self.total:,} ({percent:.0f}%)  failed {self.failed_count}  "
                f"retrying {self.retrying}  tokens {self.tokens:,}  {shown_rate} req/s  ETA {_duration(eta)}"
                + _pause_note(self.paused_until))

    def _advance(self) -> None:
        with self._lock:
            self.done += 1
            self._rate.record(self.settings.clock(), self.done)
        self.tick()

    def _print(self, now: float) -> None:
        self._last_time, self._last_done, self._printed = now, self.done, True
        self._console.print(self.line(), highlight=False, soft_wrap=True)

    def _tick_until_stopped(self) -> None:
        while not self._stop.wait(min(self.settings.interval_s, 1.0)):
            self.tick()


def _pause_note(until: float) -> str:
    """While a target waits for the reset a 429 announced (the run is slow, not stuck)."""
    left = until - time.monotonic()
    return f"  paused by rate limits ({_duration(left)} left)" if left >= 0.5 else ""


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class RichProgress:
    """Implements the engine's ProgressSink. Already-finished requests of a resumed run count as done.

    A terminal gets a rich bar; any other console plain lines (`PlainProgress`), since a bar
    that redraws itself shows nothing in a CI log until the run ends."""

    def __init__(self, total: int, already_done: int, console: Console,
                 plain: PlainProgressSettings | None = None) -> None:
        self._sink: _Bar | PlainProgress | _Silent
        if total == 0:  # nothing to send in realtime (every target in batch mode): no `requests 0/0` line
            self._sink = _Silent()
        elif console.is_terminal:
            self._sink = _Bar(total, already_done, console)
        else:
            self._sink = PlainProgress(total, already_done, console, plain)

    def __enter__(self) -> RichProgress:
        self._sink.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sink.__exit__(*exc)

    def succeeded(self, completion: Completion) -> None:
        self._sink.succeeded(completion)

    def failed(self, final: bool) -> None:
        self._sink.failed(final)

    def retry_started(self) -> None:
        self._sink.retry_started()

    def paused(self, until: float) -> None:
        """A target paused for rate limits until `until` (time.monotonic())."""
        self._sink.paused(until)


class _Silent:
    """Progress of a run that sends nothing in realtime: its batches print their own lines."""

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def succeeded(self, completion: Completion) -> None:
        pass

    def failed(self, final: bool) -> None:
        pass

    def retry_started(self) -> None:
        pass

    def paused(self, until: float) -> None:
        pass


class _Bar:
    """The rich progress bar, for terminals."""

    def __init__(self, total: int, already_done: int, console: Console) -> None:
        # Imported here: only a terminal draws the bar, and rich.progress costs start-up time.
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.failed_count = 0
        self.retrying = 0
        self.tokens = 0
        self.paused_until = 0.0
        self._last_refresh = 0.0
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, transient=False)
        self._task = self._progress.add_task("requests", total=total, completed=already_done, stats="")

    def __enter__(self) -> _Bar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._last_refresh = 0.0
        self._refresh()
        self._progress.stop()

    def succeeded(self, completion: Completion) -> None:
        self.tokens += (completion.input_tokens or 0) + (completion.output_tokens or 0)
        self._progress.advance(self._task)
        self._refresh()

    def failed(self, final: bool) -> None:
        if final:
            self.failed_count += 1
            self._progress.advance(self._task)
        else:
            self.retrying += 1
        self._refresh()

    def retry_started(self) -> None:
        self.retrying -= 1
        self._refresh()

    def paused(self, until: float) -> None:
        self.paused_until = max(self.paused_until, until)
        self._refresh()

    def _refresh(self) -> None:
        # The bar redraws 10 times a second; formatting the counts more often only costs CPU
        # that the requests in flight need.
        now = time.monotonic()
        if now - self._last_refresh < 0.1:
            return
        self._last_refresh = now
        stats = (f"failed {self.failed_count}  retrying {self.retrying}  tokens {self.tokens:,}"
                 + _pause_note(self.paused_until))
        self._progress.update(self._task, stats=stats)
