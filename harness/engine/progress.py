"""The progress bar: done / failed / retrying counts, tokens and an ETA (rich, on stderr)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness.engine.providers.base import Completion


class RichProgress:
    """Implements the engine's ProgressSink. Already-finished requests of a resumed run count as done."""

    def __init__(self, total: int, already_done: int, console: Console) -> None:
        self.failed_count = 0
        self.retrying = 0
        self.tokens = 0
        self._last_refresh = 0.0
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, transient=False)
        self._task = self._progress.add_task("requests", total=total, completed=already_done, stats="")

    def __enter__(self) -> RichProgress:
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

    def _refresh(self) -> None:
        # The bar redraws 10 times a second; formatting the counts more often only costs CPU
        # that the requests in flight need.
        now = time.monotonic()
        if now - self._last_refresh < 0.1:
            return
        self._last_refresh = now
        stats = f"failed {self.failed_count}  retrying {self.retrying}  tokens {self.tokens:,}"
        self._progress.update(self._task, stats=stats)
