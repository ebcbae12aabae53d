"""A run's files on disk: the manifest, results.jsonl, the gate record, the lock, and where runs live.

Everything that reads or writes a run folder goes through here; `report/` only presents.
"""
