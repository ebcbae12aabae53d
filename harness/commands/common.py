"""What every command shares: the console, exit codes, and turning a UserError into exit code 2."""

from __future__ import annotations

import math
import signal
import sys
from functools import wraps
from typing import NoReturn

import click
from rich.console import Console

from harness.errors import UserError

EXIT_FAILED_REQUESTS, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130


def console() -> Console:
    """Wide tables when output goes to a file or CI log (rich would assume 80 columns). No markup:
    prompts, outputs, labels and slice names are data, and text such as `[/INST]` must print as
    itself, not be read (or rejected) as a style tag; styled words are passed as styles. No emoji
    codes either, for the same reason (`:ok:` in an output stays as it is)."""
    return Console(highlight=False, markup=False, emoji=False, width=None if sys.stdout.isatty() else 160)


def reports_user_errors(command):
    """Turns a UserError anywhere below into its message on stderr and exit code 2."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_BAD_INPUT)

    return wrapper


def exit_interrupted(suite_arg: str, stop) -> NoReturn:
    """After Ctrl-C or SIGTERM (a RunInterrupted `stop`): where the finished work is, and the
    command that resumes this very run; exit code 130."""
    from harness.runs.commands import resume_command

    click.echo(f"\nInterrupted. Everything finished so far is stored in {stop.folder}.\n"
               f"Resume with: {resume_command(suite_arg, stop.manifest)}", err=True)
    sys.exit(EXIT_INTERRUPTED)


def stop_on_sigterm() -> None:
    """A cancelled CI job sends SIGTERM: stop as cleanly as on Ctrl-C."""
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """An option callback: nan and inf are no numbers a user means (FloatRange lets them through)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", ctx=ctx, param=param)
    return value
