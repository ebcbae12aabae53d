"""The CI gate on prompt changes (`evalbatch ci` and the pytest plugin): which suites a change
affects, their pre-rollout samples and what they cost, running and gating them, and the
summary, HTML and JUnit a reviewer reads.

Nothing heavy is imported here: the pytest plugin (harness.ci.pytest_plugin) is loaded into
every pytest session of an environment where evalbatch is installed.
"""
