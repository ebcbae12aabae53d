"""evalbatch: evaluation and prompt-regression harness for LLM batch work.

Data flows one way through the sub-packages:
config (suite, prompts, datasets) -> engine (requests, store, providers) -> scoring -> report.
"""

__version__ = "0.1.0"
