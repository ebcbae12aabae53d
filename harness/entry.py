"""The `evalbatch` console script.

Start-up makes some 10^5 objects that live as long as the process (modules, classes, pydantic
schemas, later the SDKs' types). With the garbage collector running, each full collection during
start-up walks all of them again: about a tenth of the time the imports take. So the collector
is paused while they are made, and what they made is frozen out of later collections. At exit
the same holds for the interpreter's last collections.
"""

from __future__ import annotations

import gc

from harness.collector import collector_paused


def main() -> None:
    with collector_paused():
        from harness.cli import main as cli

        gc.freeze()
    try:
        cli()
    finally:
        # The process exits next, and its last collections would walk every object only to free
        # memory the OS takes back anyway (a tenth of a second or more): frozen, they are skipped.
        # Nothing waits on them: stores and files are closed where they are used.
        gc.freeze()
