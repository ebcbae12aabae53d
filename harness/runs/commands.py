"""The commands a run prints for what to do next: they repeat the options that chose its work,
so following one continues that very run instead of failing or re-sending everything."""

from __future__ import annotations

import shlex

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
    words += ["--resume", manifest.run_id]
    if retry_failed:
        words.append("--retry-failed")
    return shlex.join(words)
