"""Commands of the `evalbatch` CLI that live outside harness/cli.py, one module per command family;
cli.py adds each to the main group."""
