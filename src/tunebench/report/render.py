"""Render the report as a self-contained HTML page and a Markdown summary, and write the report folder.

Layout of the report folder (`write_report`):
  report.html                 self-contained: figures embedded as base64 PNG data URIs, tables inline
  summary.md                  verdicts, headline / efficiency / failed-runs tables, notes
  verdicts.json               {task: sentence}
  tables/runs.csv, runs.parquet   the tidy table: one row per run folder
  tables/<name>.csv           comparison, example_tests, metric_summary, efficiency, stability,
                              generalization, settings, failed_runs
  plots/<name>.png            metric_by_task, loss_curves, metric_vs_params, metric_vs_memory, lr_sweep
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import pandas as pd

from tunebench.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from tunebench.report.build import Report

FIGURE_CAPTIONS = {
    "metric_by_task.png": "Test primary metric per task and method (mean and 95% t-interval over seeds).",
    "loss_curves.png": "Training and validation loss, aligned on step; line = mean over seeds, band = +-1 sd.",
    "metric_vs_params.png": "Test primary metric against trainable parameters (log scale).",
    "metric_vs_memory.png": "Test primary metric against peak memory.",
    "lr_sweep.png": "Learning-rate sweep: validation primary metric (mean +- sd over seeds); star = headline.",
    "effective_rank_by_layer.png": "Effective rank (90% energy) of the weight update per layer; LoRA ranks and "
                                   "full fine-tuning.",
    "intruders_vs_rank.png": "Intruder dimensions (top-10 singular vectors of W_after with max |cos| < 0.5 to "
                             "every singular vector of W_before) against LoRA rank; full fine-tuning as reference.",
    "forgetting_vs_rank.png": "Forgetting: LM loss on held-out text after minus before fine-tuning, against rank.",
    "accuracy_vs_rank.png": "Test primary metric against LoRA rank; full fine-tuning as reference.",
}

METHODS_TEXT = [
    "Points: classification metrics x 100 (percentage points); SQuAD v2 metrics as the official script "
    "reports them (0-100). Differences are LoRA - full.",
    "Headline setting per task x method: the one named by the plan engine's selection.json when present, "
    "otherwise the setting with the best mean validation primary metric over seeds (never test).",
    "Seed level (the verdict): runs paired by seed, only seeds present in both methods; paired t-test "
    "(decision at alpha) with a 95% t-interval of the mean difference, Wilcoxon signed-rank as a "
    "distribution-free check (with 5 seeds its exact p cannot go below 0.0625), Cohen's d_z. Arms without "
    "2 shared seeds: Welch's t-test and Mann-Whitney U. One seed per arm: no test, no significance claimed.",
    "Example level (test-set noise only): McNemar per seed pair (exact binomial when b + c < 25, else "
    "chi-square with continuity correction; b = only LoRA right, c = only full right, odds ratio b / c) and "
    "on the majority vote over seeds; SQuAD: paired bootstrap (fixed seed) of per-question F1, per seed pair "
    "and on the seed-averaged F1. Per-seed tests are reported separately, never pooled.",
    "Equivalence: two one-sided tests (TOST) on the same seeds and design, against a margin of +-M points "
    "declared before looking (`tunebench report --margin`, default 1): 'LoRA matches full fine-tuning' only "
    "when both one-sided tests reject at alpha (equivalently, the 1 - 2 alpha interval, 90% at alpha = 0.05, "
    "lies inside +-M). "
    "Non-significant alone means no significant difference, not equivalence. Failed, running and unreadable "
    "runs are listed and never averaged.",
]


# ---------------------------------------------------------------- formatting


def format_value(x: object) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return ""
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        if abs(x) >= 1e4 and x.is_integer():
            return f"{x:.0f}"  # parameter counts, bytes: all digits
        return f"{x:.3e}" if abs(x) >= 1e6 or 0 < abs(x) < 1e-3 else f"{x:.4g}"
    return str(x)


def format_frame(df: pd.DataFrame) -> pd.DataFrame:
    return df.astype(object).map(format_value) if len(df) else df.astype(object)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (pandas' to_markdown needs tabulate, which the study does not pin)."""
    if df.empty:
        return "_(none)_\n"
    cells = format_frame(df)
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(v.replace("|", "\\|") for v in row) + " |" for row in cells.to_numpy().tolist()]
    return "\n".join([header, rule, *body]) + "\n"


def html_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p><em>(none)</em></p>"
    return format_frame(df).to_html(index=False, escape=True, border=0, classes="tbl")


def _ci(mean: float, lo: float, hi: float) -> str:
    if pd.isna(mean):
        return ""
    return f"{mean:.2f}" + ("" if pd.isna(lo) else f" [{lo:.2f}, {hi:.2f}]")


def headline_display(comparison: pd.DataFrame) -> pd.DataFrame:
    """The comparison table for people: mean [95% CI] per method, the difference and its tests."""
    rows = []
    for _, r in comparison.iterrows():
        row = {"task": r["task"], "metric": r["metric"],
               "LoRA (points)": _ci(r["lora_mean"], r["lora_ci_low"], r["lora_ci_high"]), "LoRA n": r["lora_n"],
               "full (points)": _ci(r["full_mean"], r["full_ci_low"], r["full_ci_high"]), "full n": r["full_n"]}
        if pd.notna(r.get("design")):
            row |= {"LoRA - full": _ci(r["diff"], r["diff_ci_low"], r["diff_ci_high"]), "design": r["design"],
                    "pairs": r["n_pairs"], "t-test p": r["t_p"], "rank test p": r["rank_p"],
                    "effect size": r["effect_size"]}
        if pd.notna(r.get("tost_p")):
            row |= {f"TOST p (±{r['equivalence_margin']:g})": r["tost_p"],
                    "equivalent": "yes" if r["equivalent"] else "not shown"}
        rows.append(row)
    return pd.DataFrame(rows)


def efficiency_display(efficiency: pd.DataFrame) -> pd.DataFrame:
    if efficiency.empty:
        return efficiency
    return pd.DataFrame({
        "task": efficiency["task"], "method": efficiency["method"], "seeds": efficiency["n_seeds"],
        "trainable params": efficiency["params_trainable"],
        "trainable %": 100 * efficiency["params_trainable_share"],
        "peak memory (MiB)": efficiency["peak_memory_mib"], "memory kind": efficiency["memory_kind"],
        "wall (s)": efficiency["wall_s"], "tokens/s": efficiency["tokens_per_s"],
        "time to best val (s)": efficiency["time_to_best_validation_s"],
    })


# ---------------------------------------------------------------- documents


def render_markdown(report: Report) -> str:
    parts = [f"# LoRA vs full fine-tuning: report for `{report.results_dir}`\n",
             f"{len(report.runs)} runs read, {report.n_ok} ok, {len(report.failed)} not ok.\n",
             "## Verdicts\n", *[f"- {v}" for v in report.verdicts.values()], ""]
    if report.n_ok == 0:
        parts.append("**No run finished ok: nothing can be compared; see the failed runs below.**\n")
    parts += ["## LoRA vs full (test primary metric, points)\n", markdown_table(headline_display(report.comparison)),
              "## Example-level tests (test-set noise only)\n", markdown_table(report.example_tests),
              "## Efficiency (means over seeds of the headline setting)\n",
              markdown_table(efficiency_display(report.efficiency)),
              "## Stability (seed spread, points)\n", markdown_table(report.stability),
              "## Generalization (train_eval - test, points)\n", markdown_table(report.generalization),
              "## Headline settings\n", markdown_table(_selected_settings(report.settings)),
              "## Failed runs (not averaged)\n", markdown_table(report.failed)]
    if report.notes:
        parts += ["## Notes\n", *[f"- {n}" for n in report.notes], ""]
    parts += ["## Methods\n", *[f"- {t}" for t in METHODS_TEXT], ""]
    return "\n".join(parts)


def _selected_settings(settings: pd.DataFrame) -> pd.DataFrame:
    if settings.empty:
        return settings
    cols = ["task", "method", "learning_rate", "lora_r", "n_seeds", "seeds", "validation_mean", "test_mean",
            "selection"]
    return settings.loc[settings["selected"], cols]


def render_html(report: Report) -> str:
    esc = html.escape
    body = [f"<h1>LoRA vs full fine-tuning</h1><p>Results: <code>{esc(str(report.results_dir))}</code> &mdash; "
            f"{len(report.runs)} runs read, {report.n_ok} ok, {len(report.failed)} not ok.</p>",
            "<h2>Verdicts</h2><ul>" + "".join(f"<li>{esc(v)}</li>" for v in report.verdicts.values()) + "</ul>"]
    if report.n_ok == 0:
        body.append("<p><strong>No run finished ok: nothing can be compared.</strong></p>")
    sections = [
        ("LoRA vs full (test primary metric, points)", headline_display(report.comparison)),
        ("Example-level tests (per seed pair and combined)", report.example_tests),
        ("Efficiency (means over seeds)", efficiency_display(report.efficiency)),
        ("Stability (seed spread, points)", report.stability),
        ("Generalization (train_eval - test, points)", report.generalization),
        ("Settings and headline selection", report.settings),
        ("All metrics over seeds (headline settings, raw units)", report.metric_summary),
        ("Failed runs (not averaged)", report.failed),
    ]
    if report.analysis:
        sections += [("Forgetting and update spectra per run (tunebench analyze)", report.analysis["runs"]),
                     ("Update spectra per layer and module type (mean over seeds)", report.analysis["layers"])]
    body += [f"<h2>{esc(title)}</h2>{html_table(df)}" for title, df in sections]
    body.append("<h2>Figures</h2>")
    for name, png in report.figures.items():
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        body.append(f'<figure><img alt="{esc(name)}" src="{uri}"><figcaption>{esc(FIGURE_CAPTIONS.get(name, name))}'
                    "</figcaption></figure>")
    if report.notes:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in report.notes) + "</ul>")
    body.append("<h2>Methods</h2><ul>" + "".join(f"<li>{esc(t)}</li>" for t in METHODS_TEXT) + "</ul>")
    return _HTML_HEAD + "\n".join(body) + "\n</body></html>\n"


_HTML_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tunebench report</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; }
table.tbl { border-collapse: collapse; font-size: 0.85em; margin-bottom: 1em; }
table.tbl th, table.tbl td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
figure img { max-width: 100%; } li { margin-bottom: 0.4em; }
</style></head><body>
"""


# ---------------------------------------------------------------- files


TABLES = ("comparison", "example_tests", "metric_summary", "efficiency", "stability", "generalization",
          "settings", "failed")


def write_report(report: Report, out_dir: str | Path) -> dict[str, Path]:
    """Write the report folder (layout in the module docstring); returns {name: path}."""
    out = Path(out_dir)
    written = {"runs.csv": atomic_write_text(out / "tables" / "runs.csv", report.runs.to_csv(index=False)),
               "runs.parquet": atomic_write_bytes(out / "tables" / "runs.parquet", to_parquet_bytes(report.runs))}
    for name in TABLES:
        file = "failed_runs.csv" if name == "failed" else f"{name}.csv"
        written[file] = atomic_write_text(out / "tables" / file, getattr(report, name).to_csv(index=False))
    for name, df in report.analysis.items():
        file = f"analysis_{name}.csv"
        written[file] = atomic_write_text(out / "tables" / file, df.to_csv(index=False))
    for name, png in report.figures.items():
        written[name] = atomic_write_bytes(out / "plots" / name, png)
    written["verdicts.json"] = atomic_write_json(out / "verdicts.json", report.verdicts)
    written["summary.md"] = atomic_write_text(out / "summary.md", render_markdown(report))
    written["report.html"] = atomic_write_text(out / "report.html", render_html(report))
    return written


def to_parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()
