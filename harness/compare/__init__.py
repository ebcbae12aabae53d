"""Statistics for comparing runs: the promotion gate and drift checks.

Pure functions over in-memory data (no file I/O, no CLI), following
docs/statistics.md:

- `paired`:  paired comparison of baseline and candidate item scores
  (mean difference, CLT/clustered SE, CI, MDE, McNemar/Wilcoxon/permutation),
  Stuart-Maxwell for label shift, Wilson intervals;
- `verdict`: per-metric non-inferiority verdicts (PASS/WARN/FAIL/INCONCLUSIVE)
  and their combination with Holm-corrected guardrails and BH-corrected slices;
- `power`:   sample sizes, minimum detectable effects, group-sequential
  (Lan-DeMets O'Brien-Fleming) boundaries and look decisions;
- `drift`:   ground-truth-free drift signals with permutation-calibrated
  effect-size thresholds and BH across signals.
"""
