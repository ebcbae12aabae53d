"""`python -m harness`: the `evalbatch` command, started as the console script starts it."""

from harness.entry import main

main()
