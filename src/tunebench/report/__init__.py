"""The study's report: tables, statistics, verdicts and plots from run folders (docs/results.md).

Pipeline (pure except the two ends):
  collect  read run folders -> tidy DataFrame (one row per run), loss curves, predictions, selection.json
  select   the headline setting per task x method (selection.json, else best mean validation metric)
  stats    summaries, paired/unpaired seed tests, McNemar, paired bootstrap (values in, values out)
  compare  LoRA vs full per task: seed level (the verdict) and example level (supporting evidence)
  tables   report tables;  verdict  one sentence per task;  plots  PNG bytes
  qa       SQuAD v2 apart: HasAns / NoAns F1 per method next to always no answer, and whether it answers
  groups   which runs may be compared: same model, precision, data, length, ... (only the method, its own
           settings and the seed differ); a folder that mixes them is several comparisons
  build    `build_report(results_dir)` -> Report (reads, then `analyze`, pure; one comparison)
  split    `build_reports` / `write_reports`: one report per comparison and an index when there are several
  render   HTML / Markdown strings and `write_report(report, out_dir)` (the only writer)
The command is `tunebench report RESULTS_DIR [--out DIR]` (tunebench.commands.report).
"""
