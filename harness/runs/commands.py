"""The commands a run prints for what to do next: they repeat the options that chose its work,
so following one continues that very run instead of failing or re-sending everything."""

from __future__ import annotations

import shlex

from harness.engine.providers.http_errors import classify_status, is_context_length_error
from harness.engine.store import TerminalFailure
from harness.runs.manifest import Manifest


def resume_command(suite: str, manifest: Manifest, *, retry_failed: bool = False) -> str:
    """`evalbatch run SUITE <the run's options> --resume RUN_ID`, shell-quoted."""
    options = manifest.options
    words = ["evalbatch", "run", suite]
    for name in options.slices:
        words += ["--slice", name]
    if options.limit is not None:
        words += ["--limit", str(options.limit)]
    if options.prompt_version is not None:
        words += ["--prompt-version", options.prompt_version]
    if options.sample is not None:
        words += ["--sample", str(options.sample)]
    if options.reports_dir is not None:
        words += ["--reports-dir", options.reports_dir]
    for flag, value in (("--rpm", options.rpm), ("--tpm", options.tpm)):
        if value is not None:
            words += [flag, f"{value:g}"]
    words += ["--resume", manifest.run_id]
    if retry_failed:
        words.append("--retry-failed")
    return shlex.join(words)


# Refused for who sent it, not for what it said: fixing the key or its permissions and retrying
# this very run is the remedy.
_AUTH_STATUSES = {401, 402, 403, 404, 405}


def failure_advice(suite: str, manifest: Manifest, failures: list[TerminalFailure], max_retries: int) -> list[str]:
    """What to do about a run's failed_terminal requests. --retry-failed is suggested only for
    transient failures whose retries ran out (and refused credentials, once fixed): re-sending a
    request the server rejected for its content (HTTP 400, context length) fails again."""
    transient = [f for f in failures if retries_ran_out(f, max_retries)]
    refused = [f for f in failures if f not in transient and f.status in _AUTH_STATUSES]
    rejected = [f for f in failures if f not in transient and f not in refused]
    advice = []
    if rejected:
        advice.append(f"{len(rejected)} request(s) failed with errors a retry will not fix (e.g. "
                      f"{_example(rejected)}); fix the input or the suite")
    retry = resume_command(suite, manifest, retry_failed=True)
    if refused:
        advice.append(f"{len(refused)} request(s) were refused (e.g. {_example(refused)}); check the API key, "
                      f"its permissions and quota, the model and base_url, then retry them with: {retry}")
    if transient:
        advice.append(f"{len(transient)} request(s) failed after their retries ran out (e.g. "
                      f"{_example(transient)}). Retry them with: {retry}")
    return advice


def worth_retrying(failures: list[TerminalFailure], max_retries: int) -> list[str]:
    """The failures another round may fix (transient errors whose retries ran out, refused
    credentials that may have been fixed since), not those rejected for their content."""
    return [f.request_id for f in failures if retries_ran_out(f, max_retries) or f.status in _AUTH_STATUSES]


def retries_ran_out(failure: TerminalFailure, max_retries: int) -> bool:
    """A transient error ends a request only once its round's retry budget is spent; any other
    error ends it at once. On the budget's last attempt the error itself tells which it was."""
    if "(gave up: " in (failure.error or ""):
        return True  # its deadline passed, or 429s went on too long: the error was transient
    if failure.round_attempts <= max_retries:
        return False
    if failure.status is None:
        return True  # timeouts, connection errors, malformed replies
    text = failure.error or ""
    return not is_context_length_error(text) and classify_status(failure.status, text) == "transient"


def _example(failures: list[TerminalFailure], limit: int = 120) -> str:
    text = " ".join((failures[0].error or "no error recorded").split())
    return text if len(text) <= limit else text[:limit] + "..."
