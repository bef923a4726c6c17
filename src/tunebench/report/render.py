"""Render the report as a self-contained HTML page and a Markdown summary, and write the report folder.

The page reads top-down, most important first:
  1. the verdict figure (LoRA - full per task: interval, the equivalence margin's band, each seed as a dot) and
     the verdict table (task, metric, LoRA, full, baseline, difference [CI], p, the verdict in a word, seeds);
     the verdict sentences folded below them; for SQuAD v2, its answerable / unanswerable breakdown (report.qa:
     HasAns and NoAns F1 per method next to always no answer, the question counts, the null threshold, and
     whether each method answers);
  2. efficiency (human units), stability across seeds, generalization: each one small table and one figure;
  3. forgetting and weight-update spectra when `tunebench analyze` has run;
  4. long tables (every test, example-level tests, all metrics, settings) and the other figures, folded
     under <details>; runs not ok; notes; the methods last.
Intervals never leave the metric's range: a difference lies in [-100, 100] points and a score in [0, 100];
a clipped interval is marked (figures: an arrow head; tables: "‡").

Layout of the report folder (`write_report`):
  report.html                 self-contained: figures embedded as base64 PNG data URIs, tables inline, no script
  summary.md                  the verdict table and sentences, the SQuAD v2 breakdown, efficiency / stability /
                              generalization, failed runs
  verdicts.json               {task: verdict row} (report.verdict.verdict_row; JSON-safe: NaN -> null, seed
                              keys as strings; SQuAD v2's row adds report.qa.QaBreakdown.verdict_fields)
  tables/runs.csv, runs.parquet   the tidy table: one row per run folder
  tables/<name>.csv           comparison, example_tests, metric_summary, efficiency, stability,
                              generalization, settings, failed_runs (and analysis_* after `tunebench analyze`,
                              squad_v2_breakdown when there are SQuAD v2 runs)
  plots/<name>.png            verdict, metric_by_task, efficiency, stability, generalization, loss_curves,
                              metric_vs_params, metric_vs_memory, lr_sweep (and the analysis figures)
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
from tunebench.report.qa import BASELINE_NAME, QA_TASK, OverSeeds, QaBreakdown, over_seeds_text, score, signed
from tunebench.report.tables import finite_or_nan

FIGURE_CAPTIONS = {
    "verdict.png": "LoRA − full per task, in points of the task's metric, each row on its own scale. Diamond: "
                   "mean difference over seeds; thin bar: its 95% t-interval; thick bar: the equivalence test's "
                   "{tost_level} interval (“matches” when it lies inside the green ±margin band); dots: each "
                   "seed's difference. Intervals are clipped at ±100 points (arrow head).",
    "metric_by_task.png": "Test primary metric per task and method: mean and 95% t-interval over seeds (clipped "
                          "to 0–100, arrow head where clipped); dots: each seed.",
    "efficiency.png": "Efficiency per task (means over seeds of the headline setting): trainable parameters (log "
                      "scale), peak memory, wall time per run, training tokens per second.",
    "stability.png": "Seed-to-seed spread: each seed's test score (dots), the mean (bar) and the standard deviation "
                     "over seeds; each task on its own scale.",
    "generalization.png": "Generalization: train score (a re-scored subset of train, triangle) against test score "
                          "(dot), means over seeds; the number is the gap train − test in points.",
    "loss_curves.png": "Training and validation loss, aligned on step; line = mean over seeds, band = ±1 sd.",
    "pareto.png": "Each arm's test primary metric (mean, 95% CI over seeds) against its trainable parameters, peak "
                  "memory and time per run. The Pareto front (green) reads the verdicts, not the means: an arm's "
                  "quality is better / matches / worse than the reference as its tests decided (the reference "
                  "counts as matching itself); an undecided arm (hollow: inconclusive or not learned) is never on "
                  "it; a decided arm is on it when no other decided arm costs no more and is better, or costs less "
                  "and is as good.",
    "metric_vs_params.png": "Test primary metric (mean, 95% CI) against trainable parameters (log scale).",
    "metric_vs_memory.png": "Test primary metric (mean, 95% CI) against peak memory.",
    "lr_sweep.png": "Learning-rate sweep: validation primary metric (mean ± sd over seeds); star = headline.",
}
SECTION_FIGURES = {"efficiency": "efficiency.png", "stability": "stability.png",
                   "generalization": "generalization.png"}
ANALYSIS_FIGURES = ("forgetting_vs_rank.png", "energy_rank_by_layer.png", "effective_rank_by_layer.png",
                    "intruders_vs_rank.png", "accuracy_vs_rank.png")  # tunebench.analysis.figures, page order

METHODS_TEXT = [
    "Points: classification metrics x 100 (percentage points); SQuAD v2 metrics as the official script "
    "reports them (0-100). Differences are LoRA - full, so they lie in [-100, 100]. A t-interval on a few "
    "seeds can reach past those bounds: intervals are shown clipped to the metric's range and marked where "
    "clipped (the tables in tables/*.csv keep the unclipped values), and each seed is shown as a dot.",
    "Headline setting per task x method: the one named by the plan engine's selection.json when present, "
    "otherwise the setting with the best mean validation primary metric over seeds (never test).",
    "Seed level (the verdict): runs paired by seed, only seeds present in both methods; paired t-test "
    "(decision at alpha) with a 95% t-interval of the mean difference, Wilcoxon signed-rank as a "
    "distribution-free check (with 5 seeds its exact p cannot go below 0.0625), Cohen's d_z. Arms without "
    "3 shared seeds: Welch's t-test and Mann-Whitney U. Fewer than 3 seeds per arm: no seed-level verdict, and "
    "the example-level tests are shown as evidence but decide nothing.",
    "Example level (test-set noise only), on the verdict's metric: for accuracy, McNemar per seed pair (exact "
    "binomial when b + c < 25, else chi-square with continuity correction; b = only LoRA right, c = only full "
    "right, odds ratio b / c), and on the seed average a paired bootstrap of each example's correctness "
    "averaged over seeds (its mean is exactly the difference of the seed-mean accuracies; a majority vote is "
    "not); for MRPC's F1 and SQuAD's F1, a paired bootstrap (fixed seed) over examples, per seed pair and on the "
    "seed average. Per-seed tests are reported separately, never pooled.",
    "Equivalence: two one-sided tests (TOST) on the same seeds and design, against a margin of +-M points "
    "declared before looking (`tunebench report --margin`, default 1): 'LoRA matches full fine-tuning' only "
    "when both one-sided tests reject at alpha (equivalently, the 1 - 2 alpha interval, 90% at alpha = 0.05, "
    "lies inside +-M). "
    "Non-significant alone means no significant difference, not equivalence. Failed, running and unreadable "
    "runs are listed and never averaged.",
]

WORD_MEANING = {
    "matches": "the equivalence test puts LoRA − full within ±margin",
    "better": "LoRA significantly better",
    "worse": "LoRA significantly worse",
    "inconclusive": "neither a significant difference nor equivalence",
    "not learned": "no arm is shown to beat the best constant predictor (one-sided test per arm): not compared",
    "only LoRA learned": "only LoRA is shown to beat the best constant predictor: not compared",
    "only full learned": "only full fine-tuning is shown to beat the best constant predictor: not compared",
    "no comparison": "an arm has no completed run",
}
CLIPPED_MARK = "‡"
NO_CI_MARK = "†"


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


def _pts(x: object, digits: int = 1, sign: bool = False) -> str:
    v = finite_or_nan(x)
    if math.isnan(v):
        return "–"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _p_text(p: object) -> str:
    v = finite_or_nan(p)
    if math.isnan(v):
        return "–"
    return "< 0.001" if v < 0.001 else f"{v:.3f}"


def clipped_interval_text(lo: object, hi: object, bounds: tuple[float, float] = (-100.0, 100.0),
                          digits: int = 2) -> tuple[str, bool]:
    """'[-3.40, 0.94]' with each end clipped to bounds; whether an end was clipped. '' when undefined."""
    lo_v, hi_v = finite_or_nan(lo), finite_or_nan(hi)
    if math.isnan(lo_v) or math.isnan(hi_v):
        return "", False
    cut = lo_v < bounds[0] or hi_v > bounds[1]
    lo_v, hi_v = max(lo_v, bounds[0]), min(hi_v, bounds[1])
    return f"[{lo_v:.{digits}f}, {hi_v:.{digits}f}]", cut


def _ci(mean: float, lo: float, hi: float) -> str:
    if pd.isna(mean):
        return ""
    return f"{mean:.2f}" + ("" if pd.isna(lo) else f" [{lo:.2f}, {hi:.2f}]")


def json_safe(obj: object) -> object:
    """JSON-safe copy: NaN / inf -> None, numpy scalars -> Python, dict keys -> str, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy / pandas scalars
        try:
            obj = obj.item()
        except (TypeError, ValueError):
            pass
    if obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


# ---------------------------------------------------------------- the verdict table


def verdict_table_rows(report: Report) -> list[dict]:
    """The verdict table as display strings, one dict per task (shared by HTML and Markdown).

    Keys: task, metric, lora, full, baseline (or absent), difference (with its CI, clipped), p, word,
    seeds; plus the footnotes `clipped` (bool) and `no_ci` (the reason the seed-level test is undefined)."""
    rows = report.verdict_rows or []
    show_baseline = any(r.get("baseline") for r in rows)
    out = []
    for r in rows:
        d: dict[str, object] = {"task": str(r.get("task", "")), "metric": str(r.get("metric", "")),
                                "lora": _pts(r.get("lora")), "full": _pts(r.get("full"))}
        if r.get("arm_label"):                          # named arms: which arm, against which reference
            d["arm"], d["reference"] = str(r["arm_label"]), str(r.get("reference_label") or "")
        if show_baseline:
            b = r.get("baseline") or {}
            learned = _learned_text(r)
            name = str(b.get("name", "")) + (f"; {learned}" if learned else "")
            d["baseline"] = (_pts(b.get("value")), name) if b else ("–", learned)
        ci, cut = clipped_interval_text(r.get("ci_low"), r.get("ci_high"))
        diff = _pts(r.get("difference"), 2, sign=True)
        reason = r.get("seed_test_undefined_reason")
        no_ci = not ci and not math.isnan(finite_or_nan(r.get("difference")))
        d["difference"] = diff + (f" {ci}" if ci else "") + (CLIPPED_MARK if cut else "") + \
            (NO_CI_MARK if no_ci and reason else "")
        d["clipped"], d["no_ci"] = cut, (str(reason) if no_ci and reason else "")
        d["p"] = _p_cell(r)
        d["word"] = str(r.get("word") or "")
        n = r.get("n_seeds")
        design = r.get("design")
        d["seeds"] = ("–" if math.isnan(finite_or_nan(n)) else str(int(finite_or_nan(n)))) + \
            {"unpaired": " (unpaired)", "none": " (no test)"}.get(str(design), "")
        d["sentence"] = str(r.get("sentence") or "")
        out.append(d)
    return out


def _p_cell(r: dict) -> str:
    """The p-values the word rests on, raw and Holm-adjusted ('0.012 → 0.048'): where LoRA was compared, the
    difference's and the equivalence test's ('diff … · equiv …'), '(examples)' when the example level decided;
    where it was not, each arm's learned test ('learned: LoRA … · full …')."""
    if r.get("compared") is False and r.get("learned"):
        parts = [f"{_side_name(r, a)} {_raw_adjusted(t.get('p'), t.get('p_adjusted'))}"
                 for a, t in r["learned"].items() if not math.isnan(finite_or_nan(t.get("p")))]
        return "learned: " + " · ".join(parts) if parts else "–"
    text = _raw_adjusted(r.get("p_decision", r.get("p")), r.get("p_adjusted"))
    if "p_equivalence" in r:
        text = f"diff {text} · equiv {_raw_adjusted(r.get('p_equivalence'), r.get('p_equivalence_adjusted'))}"
    if r.get("decided_on") == "examples":
        text += " (examples)"
    return text


_ARM = {"lora": "LoRA", "full": "full"}


def _raw_adjusted(raw: object, adjusted: object) -> str:
    text = _p_text(raw)
    adj = finite_or_nan(adjusted)
    if not math.isnan(adj) and adj != finite_or_nan(raw):
        text += f" → {_p_text(adj)}"
    return text


def _learned_text(r: dict) -> str:
    """"LoRA learned, full not shown" from the verdict row's learned tests ("" when none)."""
    states = {a: t.get("state") for a, t in (r.get("learned") or {}).items()}
    if not states:
        return ""
    words = {"shown": "learned", "not shown": "not shown to learn", "unknown": "not checked"}
    if len(set(states.values())) == 1:
        return f"both {words.get(next(iter(states.values())), '?')}"
    return ", ".join(f"{_side_name(r, a)} {words.get(s, '?')}" for a, s in states.items())


def _side_name(r: dict, side: str) -> str:
    """A verdict row's side ("lora" / "full") by its arm's name: LoRA / full, or the named arm's label."""
    label = r.get("arm_label") if side == "lora" else r.get("reference_label")
    return str(label) if label else _ARM[side]


def _holm_shown(report: Report) -> bool:
    return any("p_adjusted" in r for r in report.verdict_rows or [])


def verdict_table_html(report: Report) -> str:
    rows = verdict_table_rows(report)
    if not rows:
        return "<p><em>(no task to compare)</em></p>"
    esc = html.escape
    baseline = "baseline" in rows[0]
    p_head = "p (raw → Holm)" if _holm_shown(report) else "p"
    named = "arm" in rows[0]
    reference = str(rows[0].get("reference", "")) if named else "full"
    heads = ["task", "metric", *(["arm", "score", reference] if named else ["LoRA", "full"]),
             *(["best constant predictor"] if baseline else []),
             f"{'arm' if named else 'LoRA'} − {'reference' if named else 'full'} [95% CI]", p_head, "verdict", "seeds"]
    body = []
    for d in rows:
        cells = [f'<td><b>{esc(d["task"])}</b></td>', f'<td>{esc(d["metric"])}</td>',
                 *([f"<td>{esc(str(d['arm']))}</td>"] if named else []),
                 f"<td>{esc(d['lora'])}</td>", f"<td>{esc(d['full'])}</td>"]
        if baseline:
            value, name = d["baseline"]  # type: ignore[misc]
            cells.append(f'<td class="b">{esc(value)}<br><span class="small">{esc(name)}</span></td>')
        word = d["word"]
        cls = "w-" + word.replace(" ", "-") if word else "w-none"
        p_cell = "<br>".join(esc(part) for part in str(d["p"]).split(" · "))   # diff / equiv on their own lines
        cells += [f"<td>{esc(d['difference'])}</td>", f"<td>{p_cell}</td>",
                  f'<td class="c"><span class="word {esc(cls)}" title="{esc(WORD_MEANING.get(word, ""))}">'
                  f"{esc(word or '?')}</span></td>", f"<td>{esc(d['seeds'])}</td>"]
        body.append("<tr>" + "".join(cells) + "</tr>")
    head = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in heads) + "</tr>"
    table = f'<table class="tbl verdict"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'
    return table + _verdict_footnotes_html(report, rows)


def _verdict_footnotes_html(report: Report, rows: list[dict]) -> str:
    esc = html.escape
    notes = []
    if any(d["clipped"] for d in rows):
        notes.append(f"{CLIPPED_MARK} interval clipped to the metric's range (a difference lies in [−100, 100] "
                     "points); the unclipped t-interval is in tables/comparison.csv.")
    for d in rows:
        if d["no_ci"]:
            notes.append(f"{NO_CI_MARK} {d['task']}: no seed-level interval: {d['no_ci']}")
    margins = sorted({m for r in report.verdict_rows if not math.isnan(m := finite_or_nan(r.get("margin")))})
    margin = " / ".join(f"±{m:g}" for m in margins) + (" point" if margins == [1.0] else " points") \
        if margins else "the margin"
    words = [w for w in WORD_MEANING if any(d["word"] == w for d in rows)]
    legend = "; ".join(f"<b>{esc(w)}</b>: {esc(WORD_MEANING[w].replace('±margin', margin))}"
                       for w in words)
    p_note = (" p: raw → Holm-adjusted. Where LoRA is compared: diff, the difference test (seed-level t-test, or "
              "the example-level test where marked); equiv, the equivalence test (TOST over seeds, or the "
              "example-level bound); both in one Holm family over the tasks with both arms. Where it is not: each "
              "arm's one-sided test against the best constant predictor (Holm over all arms). Decisions at "
              f"alpha = {report.alpha:g}." if _holm_shown(report)
              else f" p: seed-level t-test; decisions at alpha = {report.alpha:g}.")
    parts = [f'<p class="small">{legend}.{esc(p_note)} Scores are means over seeds, in points.</p>']
    seeds = seeds_needed_lines(report)
    if seeds:
        parts.append(f'<p class="seeds"><b>{esc(SEEDS_NEEDED_HEAD)}</b></p><ul class="seeds">'
                     + "".join(f"<li>{esc(line)}</li>" for line in seeds) + "</ul>")
    parts += [f'<p class="small">{esc(n)}</p>' for n in notes]
    return "".join(parts)


SEEDS_NEEDED_HEAD = ("Seeds it would take (inconclusive tasks: exact power of the paired equivalence test at "
                     "alpha / the hypotheses of the Holm family, a true difference of 0, the 80% upper bound of "
                     "the observed sd; `tunebench plan seeds` for other settings):")


def seeds_needed_lines(report: Report) -> list[str]:
    """The seeds-needed line of each inconclusive task (build.add_seeds_needed), in task order."""
    return [r["seeds_needed"]["line"] for r in report.verdict_rows or [] if r.get("seeds_needed")]


def verdict_display(report: Report) -> pd.DataFrame:
    """The verdict table for Markdown."""
    rows = verdict_table_rows(report)
    out = []
    for d in rows:
        named = "arm" in d
        row = ({"task": d["task"], "metric": d["metric"], "arm": d["arm"], "score": d["lora"],
                str(d["reference"]): d["full"]} if named else
               {"task": d["task"], "metric": d["metric"], "LoRA": d["lora"], "full": d["full"]})
        if "baseline" in d:
            value, name = d["baseline"]  # type: ignore[misc]
            row["best constant predictor"] = f"{value} ({name})" if name else value
        row |= {"arm - reference [95% CI]" if named else "LoRA - full [95% CI]": d["difference"], "p": d["p"],
                "verdict": d["word"], "seeds": d["seeds"]}
        out.append(row)
    return pd.DataFrame(out)


# ---------------------------------------------------------------- small tables in human units


def headline_display(comparison: pd.DataFrame) -> pd.DataFrame:
    """The comparison table for people: mean [95% CI] per method, the difference and its tests."""
    rows = []
    named = "arm" in comparison
    a, f = ("arm", "reference") if named else ("LoRA", "full")
    for _, r in comparison.iterrows():
        row = {"task": r["task"], **({"arm": r["arm"], "reference": r["reference"]} if named else {}),
               "metric": r["metric"],
               f"{a} (points)": _ci(r["lora_mean"], r["lora_ci_low"], r["lora_ci_high"]), f"{a} n": r["lora_n"],
               f"{f} (points)": _ci(r["full_mean"], r["full_ci_low"], r["full_ci_high"]), f"{f} n": r["full_n"]}
        if pd.notna(r.get("design")):
            row |= {f"{a} - {f}": _ci(r["diff"], r["diff_ci_low"], r["diff_ci_high"]), "design": r["design"],
                    "pairs": r["n_pairs"], "t-test p": r["t_p"], "rank test p": r["rank_p"],
                    "effect size": r["effect_size"]}
        if pd.notna(r.get("p_adjusted")):
            row["decision p (Holm)"] = r["p_adjusted"]
        if pd.notna(r.get("tost_p")):
            row |= {f"TOST p (±{r['equivalence_margin']:g})": r["tost_p"],
                    "equivalent": "yes" if r["equivalent"] else "not shown"}
        rows.append(row)
    return pd.DataFrame(rows)


def efficiency_display(efficiency: pd.DataFrame, labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Efficiency in human units: parameters (k / M) with their share, memory in MiB / GiB, times in s / min."""
    from tunebench.report.plots import human_count, human_mib, human_seconds

    if efficiency.empty:
        return efficiency
    e = efficiency
    share = [f" ({_share(s)})" if pd.notna(s) else "" for s in e["params_trainable_share"]]
    return pd.DataFrame({
        "task": e["task"], **_arm_column(e, labels),
        "seeds": e["n_seeds"],
        "trainable params": [human_count(p) + s for p, s in zip(e["params_trainable"], share, strict=True)],
        "peak memory": [human_mib(m) for m in e["peak_memory_mib"]],
        "memory measured as": e["memory_kind"].fillna(""),
        "wall time per run": [human_seconds(s) for s in e["wall_s"]],
        "tokens / s": [human_count(t) for t in e["tokens_per_s"]],
        "time to best validation": [human_seconds(s) for s in e["time_to_best_validation_s"]],
    })


def _method_name(m: object) -> object:
    return {"lora": "LoRA", "full": "full"}.get(m, m) if isinstance(m, str) else m


def _arm_column(df: pd.DataFrame, labels: dict[str, str] | None) -> dict[str, list]:
    """{"method": LoRA / full} for the study's two arms, {"arm": each arm's label} when a table holds named
    arms (tunebench.arms)."""
    arms = df["arm"] if "arm" in df else df["method"]
    if all(a == m for a, m in zip(arms, df["method"], strict=True)):
        return {"method": [_method_name(m) for m in df["method"]]}
    return {"arm": [(labels or {}).get(a) or _method_name(a) for a in arms]}


def _share(fraction: float) -> str:
    pct = 100 * float(fraction)
    return f"{pct:.0f}%" if pct >= 10 else f"{pct:.2g}%"


def stability_display(stability: pd.DataFrame, labels: dict[str, str] | None = None) -> pd.DataFrame:
    if stability.empty:
        return stability
    s = stability
    return pd.DataFrame({
        "task": s["task"], **_arm_column(s, labels), "seeds": s["n_seeds"],
        "test sd (points)": [_pts(v, 2) for v in s["test_sd"]],
        "test range": [f"{_pts(a)} – {_pts(b)}" for a, b in zip(s["test_min"], s["test_max"], strict=True)],
        "validation sd": [_pts(v, 2) for v in s["validation_sd"]],
        "final train loss": [f"{_pts(m, 3)} ± {_pts(sd, 3)}" if pd.notna(sd) else _pts(m, 3)
                             for m, sd in zip(s["train_loss_mean"], s["train_loss_sd"], strict=True)],
    })


def generalization_display(generalization: pd.DataFrame, labels: dict[str, str] | None = None) -> pd.DataFrame:
    if generalization.empty:
        return generalization
    g = generalization
    gaps = []
    for m, lo, hi in zip(g["gap_mean"], g["gap_ci_low"], g["gap_ci_high"], strict=True):
        ci, cut = clipped_interval_text(lo, hi)
        gaps.append(_pts(m, 2, sign=True) + (f" {ci}" if ci else "") + (CLIPPED_MARK if cut else ""))
    return pd.DataFrame({"task": g["task"], **_arm_column(g, labels), "seeds": g["n"],
                         "train": [_pts(v) for v in g["train_mean"]], "test": [_pts(v) for v in g["test_mean"]],
                         "gap train − test [95% CI]": gaps})


# ---------------------------------------------------------------- SQuAD v2: answerable / unanswerable


QA_TITLE = "SQuAD v2: answerable and unanswerable questions (test, points)"


def qa_display(qa: QaBreakdown) -> pd.DataFrame:
    """The breakdown for people: per method and for always no answer, F1 overall, on answerable (HasAns) and
    on unanswerable (NoAns) questions as mean (range) over seeds, the abstention rates on each kind and their
    gap (when there are predictions), the null threshold."""
    abstains = any(m.abstention_runs for m in qa.methods)
    rows = []
    for m in qa.methods:
        row = {"method": _method_name(m.method), "seeds": str(m.n_runs),
               "F1": over_seeds_text(m.f1), "HasAns F1": over_seeds_text(m.has_ans_f1),
               "NoAns F1": over_seeds_text(m.no_ans_f1)}
        if abstains:
            row |= {QA_ABSTAINS_HAS: over_seeds_text(m.abstain_has_ans),
                    QA_ABSTAINS_NO: over_seeds_text(m.abstain_no_ans), QA_ABSTAIN_GAP: _gap_text(m.abstain_gap)}
        row["null threshold"] = score(m.null_threshold.mean, 2)
        rows.append(row)
    base = {"method": f"{BASELINE_NAME} (trivial baseline)", "seeds": "–", "F1": score(qa.baseline_f1),
            "HasAns F1": score(qa.baseline_has_ans_f1), "NoAns F1": score(qa.baseline_no_ans_f1)}
    if abstains:
        both = qa.has_ans_total != 0 and qa.no_ans_total != 0
        base |= {QA_ABSTAINS_HAS: "n/a" if qa.has_ans_total == 0 else "100.0",
                 QA_ABSTAINS_NO: "n/a" if qa.no_ans_total == 0 else "100.0", QA_ABSTAIN_GAP: "0.0" if both else "n/a"}
    rows.append(base | {"null threshold": "–"})
    return pd.DataFrame(rows)


QA_ABSTAINS_HAS = "abstains: answerable (%)"
QA_ABSTAINS_NO = "abstains: unanswerable (%)"
QA_ABSTAIN_GAP = "unanswerable − answerable"


def _gap_text(s: OverSeeds) -> str:
    """'-0.8 (-2.4 to 0.0)': the abstention gap's mean over seeds and, with 2+ seeds that differ, its range."""
    if s.n == 0:
        return "n/a"
    return signed(s.mean) + (f" ({signed(s.low)} to {signed(s.high)})" if s.n >= 2 and s.high > s.low else "")


def qa_counts_text(qa: QaBreakdown) -> str:
    """'Test questions: 499 answerable (HasAns_total), 501 unanswerable (NoAns_total), 1,000 in all. ...'"""
    def n(x: int | None) -> str:
        return "n/a" if x is None else f"{x:,}"

    counts = (f"Test questions: {n(qa.has_ans_total)} answerable (HasAns_total), {n(qa.no_ans_total)} "
              f"unanswerable (NoAns_total), {n(qa.total)} in all")
    if qa.counts_differ:
        counts += " (they differ across runs)"
    answered = (" Abstains: the % of answerable and of unanswerable questions given the empty answer "
                "(predictions), and unanswerable − answerable in points: mean (range) over seeds."
                if any(m.abstention_runs for m in qa.methods) else "")
    return (f"{counts}. F1 overall, on the answerable (HasAns) and on the unanswerable (NoAns) questions, as the "
            f"official script reports them: mean over seeds (range over seeds). {BASELINE_NAME.capitalize()} "
            f"scores 0 on every answerable question and 100 on every unanswerable one.{answered} Null threshold: "
            "chosen on validation, mean over seeds.")


def qa_html(qa: QaBreakdown | None) -> str:
    if qa is None:
        return ""
    esc = html.escape
    sentences = "".join(f"<li>{esc(t)}</li>" for t in _qa_sentences(qa))
    return (f'<h2 id="{QA_TASK}-breakdown">{esc(QA_TITLE)}</h2><p class="small">{esc(qa_counts_text(qa))}</p>'
            f'{html_table(qa_display(qa))}<ul class="qa">{sentences}</ul>')


def qa_markdown(qa: QaBreakdown | None) -> list[str]:
    if qa is None:
        return []
    return [f"## {QA_TITLE}\n", qa_counts_text(qa) + "\n", markdown_table(qa_display(qa)),
            *[f"- {t}" for t in _qa_sentences(qa)], ""]


def _qa_sentences(qa: QaBreakdown) -> list[str]:
    return [*(m.sentence for m in qa.methods), *([qa.split_sentence] if qa.split_sentence else [])]


# ---------------------------------------------------------------- documents


def methods_text(report: Report) -> list[str]:
    """METHODS_TEXT, the verdict's corner cases (Holm, undefined seed tests, baselines) and, when the report
    holds `tunebench analyze` results, how the forgetting and spectrum figures are computed."""
    from tunebench.report.verdict import verdict_methods_text

    analysis: list[str] = []
    if report.analysis:
        from tunebench.analysis.texts import analysis_methods_text

        analysis = analysis_methods_text()
    return [*METHODS_TEXT, *verdict_methods_text(), *analysis]


def context_lines(report: Report) -> list[str]:
    """What the comparison holds fixed (report.groups.describe_context) and, in a folder of several
    comparisons, which one this is; one line each, none when unknown."""
    lines = []
    if report.group:
        lines.append(f"One of several comparisons in the results folder, each reported on its own (the index is "
                     f"one folder up): the runs with {report.group}.")
    if report.context:
        lines.append(f"Compared under the same conditions: {report.context}. The runs differ only in the method, "
                     "its own settings (LoRA's, each method's learning rate) and the seed.")
    return lines


def _minus_text(report: Report) -> str:
    """"LoRA - full", or "arm - reference" with named arms."""
    return "arm - reference" if report.labels else "LoRA - full"


def _versus_text(report: Report) -> str:
    """"LoRA vs full", or "each arm vs the reference" with named arms."""
    return "each arm vs the reference" if report.labels else "LoRA vs full"


def page_question(report: Report) -> str:
    """The page's question: the study's, or with named arms which of them match the reference."""
    if not report.labels or not report.comparisons:
        return "Does LoRA match full fine-tuning?"
    reference = report.comparisons[0].name("full")
    return f"Which arms match {reference}?"


def page_title(report: Report) -> str:
    if not report.labels or not report.comparisons:
        return "LoRA vs full fine-tuning"
    arms = list(dict.fromkeys(c.name("lora") for c in report.comparisons))
    return f"{', '.join(arms)} vs {report.comparisons[0].name('full')}"


def render_markdown(report: Report) -> str:
    parts = [f"# {page_title(report)}: report for `{report.results_dir}`\n",
             f"{len(report.runs)} runs read, {report.n_ok} ok, {len(report.failed)} not ok.\n"]
    parts += [f"{line}\n" for line in context_lines(report)]
    if report.n_ok == 0:
        parts.append("**No run finished ok: nothing can be compared; see the failed runs below.**\n")
    seeds = seeds_needed_lines(report)
    parts += [f"## Verdicts ({_minus_text(report)}, points)\n", markdown_table(verdict_display(report)),
              *([SEEDS_NEEDED_HEAD + "\n", *[f"- {line}" for line in seeds], ""] if seeds else []),
              *[f"- {v}" for v in report.verdicts.values()], "", *qa_markdown(report.qa),
              "## Efficiency (means over seeds of the headline setting)\n",
              markdown_table(efficiency_display(report.efficiency, report.labels)),
              "## Stability (seed spread, points)\n",
              markdown_table(stability_display(report.stability, report.labels)),
              "## Generalization (train_eval - test, points)\n",
              markdown_table(generalization_display(report.generalization, report.labels)),
              "## Failed runs (not averaged)\n", markdown_table(report.failed),
              f"## Every test of {_versus_text(report)} (test primary metric, points)\n",
              markdown_table(headline_display(report.comparison)),
              "## Example-level tests (test-set noise only)\n", markdown_table(report.example_tests),
              "## Headline settings\n", markdown_table(_selected_settings(report.settings))]
    if report.notes:
        parts += ["## Notes\n", *[f"- {n}" for n in report.notes], ""]
    parts += ["## Methods\n", *[f"- {t}" for t in methods_text(report)], ""]
    return "\n".join(parts)


def _selected_settings(settings: pd.DataFrame) -> pd.DataFrame:
    if settings.empty:
        return settings
    cols = ["task", "method", "learning_rate", "lora_r", "n_seeds", "seeds", "validation_mean", "test_mean",
            "selection"]
    return settings.loc[settings["selected"], cols]


def ensure_verdict_figure(report: Report) -> None:
    """Draw the verdict figure from report.verdict_rows into report.figures["verdict.png"] (first), when the
    report has figures at all (build_report(with_figures=False) has none) and has not drawn it already."""
    if not report.figures or "verdict.png" in report.figures or not report.verdict_rows:
        return
    from tunebench.report.plots import plot_verdicts, render_png

    fig = plot_verdicts(report.verdict_rows, _tost_intervals(report.comparison))
    if fig is not None:
        report.figures = {"verdict.png": render_png(fig)} | report.figures


def _tost_intervals(comparison: pd.DataFrame) -> dict[str, tuple[float, float]]:
    if comparison.empty or "tost_ci_low" not in comparison:
        return {}
    keys = comparison["pair"].fillna(comparison["task"]) if "pair" in comparison else comparison["task"]
    return {str(t): (float(lo), float(hi)) for t, lo, hi in
            zip(keys, comparison["tost_ci_low"], comparison["tost_ci_high"], strict=True)
            if pd.notna(lo) and pd.notna(hi)}


def _figure_html(report: Report, name: str, alt_level: str = "") -> str:
    png = report.figures.get(name)
    if png is None:
        return ""
    esc = html.escape
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    caption = FIGURE_CAPTIONS.get(name) or _analysis_caption(name)
    caption = caption.replace("{tost_level}", alt_level)
    return f'<figure><img alt="{esc(name)}" src="{uri}"><figcaption>{esc(caption)}</figcaption></figure>'


def _analysis_caption(name: str) -> str:
    """The analysis module's caption of one of its figures (its names have no .png), else the name."""
    try:
        from tunebench.analysis.figures import FIGURE_CAPTIONS as ANALYSIS_CAPTIONS
    except ImportError:
        return name
    return ANALYSIS_CAPTIONS.get(name.removesuffix(".png"), name)


def _details(summary: str, content: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{html.escape(summary)}</summary>{content}</details>"


def render_html(report: Report, analysis_label: str | None = None) -> str:
    """The report page (layout in the module docstring). `analysis_label`: a line shown at the top of the
    analysis section (the demo says there that its analysis is a plumbing check on a random model)."""
    esc = html.escape
    ensure_verdict_figure(report)
    tost_level = f"{100 * (1 - 2 * report.alpha):g}%"
    placed: set[str] = set()

    def figure(name: str) -> str:
        placed.add(name)
        return _figure_html(report, name, tost_level)

    n_bad = len(report.failed)
    body = [f"<h1>{esc(page_question(report))}</h1><p class=\"lede\">Results: "
            f"<code>{esc(str(report.results_dir))}</code> &mdash; {len(report.runs)} runs read, {report.n_ok} ok"
            + (f", <b>{n_bad} not ok</b> (listed under “Runs not ok”, never averaged)" if n_bad else "")
            + ".</p>"]
    body += [f'<p class="lede">{esc(line)}</p>' for line in context_lines(report)]
    if report.n_ok == 0:
        body.append("<p><strong>No run finished ok: nothing can be compared.</strong></p>")
    body += [figure("verdict.png"), verdict_table_html(report)]
    if "pareto.png" in report.figures:
        body += ["<h2>Quality against cost</h2>", figure("pareto.png")]
    if report.verdicts:
        body.append(_details("Each verdict in a sentence (tests, p-values, efficiency)",
                             '<ul class="sentences">' + "".join(f"<li>{esc(v)}</li>"
                                                                for v in report.verdicts.values()) + "</ul>"))
    body.append(qa_html(report.qa))
    sections = [
        ("Efficiency", "efficiency", efficiency_display(report.efficiency, report.labels),
         "Means over seeds of each task's headline setting."),
        ("Stability across seeds", "stability", stability_display(report.stability, report.labels),
         "Spread of the test score (points) over seeds."),
        ("Generalization", "generalization", generalization_display(report.generalization, report.labels),
         "Score on a re-scored subset of train minus the test score (points)."),
    ]
    for title, key, df, lede in sections:
        body.append(f'<h2>{esc(title)}</h2><p class="small">{esc(lede)}</p>{html_table(df)}'
                    f"{figure(SECTION_FIGURES[key])}")
    if report.analysis:
        body.append(_analysis_html(report, analysis_label, figure))
    more = [(f"Every test of {_versus_text(report)} (seed level, equivalence)", headline_display(report.comparison)),
            (f"Example-level tests, per seed pair and combined ({len(report.example_tests)} rows)",
             report.example_tests),
            (f"All metrics over seeds, headline settings, raw units ({len(report.metric_summary)} rows)",
             report.metric_summary),
            (f"Settings and headline selection ({len(report.settings)} rows)", report.settings)]
    body.append("<h2>Details</h2>" + "".join(_details(t, html_table(df)) for t, df in more))
    rest = [name for name in report.figures if name not in placed and name not in ANALYSIS_FIGURES]
    if rest:
        body.append(_details("More figures: scores per task, loss curves, metric against cost, learning-rate sweep",
                             "".join(figure(n) for n in rest)))
    if n_bad:
        body.append(f"<h2>Runs not ok ({n_bad})</h2>" + _details(
            "Failed, running and unreadable runs, each with its reason (never averaged)",
            html_table(report.failed), open_=n_bad <= 10))
    if report.notes:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in report.notes) + "</ul>")
    body.append("<h2>Methods</h2><ul class=\"methods\">" + "".join(f"<li>{esc(t)}</li>"
                                                                  for t in methods_text(report)) + "</ul>")
    return _HTML_HEAD + "\n".join(body) + "\n</body></html>\n"


def _analysis_html(report: Report, label: str | None, figure) -> str:
    esc = html.escape
    parts = ["<h2>Forgetting and weight-update spectra (tunebench analyze)</h2>"]
    if label:
        parts.append(f'<p class="plumbing">{esc(label)}</p>')
    parts.append('<p class="small">Forgetting: the causal-LM loss on a held-out general text after minus before '
                 "fine-tuning (positive: the model got worse at it). Spectra: per adapted matrix, the ranks of the "
                 "weight update (energy rank, effective rank; defined under each figure), its stable rank and its "
                 "intruder dimensions.</p>")
    parts += [figure(name) for name in _analysis_figures_shown(report)]
    tables = [("Forgetting and update spectra per run (tunebench analyze)", report.analysis.get("runs")),
              ("Update spectra per layer and module type (mean over seeds)", report.analysis.get("layers"))]
    parts += [_details(f"{t} ({len(df)} rows)", html_table(df)) for t, df in tables if df is not None]
    return "".join(parts)


def _analysis_figures_shown(report: Report) -> list[str]:
    """The analysis figures on the page; against LoRA rank with a single rank, the test metric repeats the
    verdict figure and is left out of the page (still in plots/)."""
    names = [n for n in ANALYSIS_FIGURES if n in report.figures]
    by_rank = report.analysis.get("by_rank")
    if by_rank is not None and "lora_r" in by_rank and by_rank["lora_r"].dropna().nunique() <= 1:
        names = [n for n in names if n != "accuracy_vs_rank.png"]
    return names


_WORD_CSS = {"matches": "#2ca02c", "better": "#1f77b4", "worse": "#d62728", "inconclusive": "#7f7f7f",
             "not-learned": "#b5179e", "only-LoRA-learned": "#7b2cbf", "only-full-learned": "#7b2cbf",
             "no-comparison": "#999999", "none": "#555555"}  # = plots.WORD_COLORS

_HTML_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tunebench report</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 1180px; margin: 1.5em auto; padding: 0 1em; color: #222;
       line-height: 1.4; }
h1 { margin-bottom: 0.1em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: 0.15em; }
.lede { color: #555; margin-top: 0.2em; }
table.tbl { border-collapse: collapse; font-size: 0.85em; margin: 0.4em 0 0.8em; }
table.tbl th, table.tbl td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; vertical-align: top; }
table.tbl th { background: #f4f4f4; }
table.verdict { font-size: 1em; } table.verdict td { padding: 5px 10px; }
table.verdict td { white-space: nowrap; } table.verdict td.b { white-space: normal; min-width: 12em; max-width: 16em; }
table.tbl td:nth-child(-n+2), table.tbl th:nth-child(-n+2) { text-align: left; }
table.tbl td.c { text-align: center; }
.word { display: inline-block; min-width: 6.5em; font-weight: 600; padding: 1px 8px; border-radius: 10px;
        color: #fff; text-align: center; }
""" + "".join(f".w-{k} {{ background: {v}; }}\n" for k, v in _WORD_CSS.items()) + """\
.small { font-size: 0.85em; color: #555; margin: 0.3em 0; }
details { margin: 0.35em 0; } summary { cursor: pointer; font-weight: 600; color: #333; }
details > table.tbl, details > ul, details > figure { margin-left: 1em; }
ul.sentences li, ul.methods li { font-size: 0.9em; margin-bottom: 0.4em; }
p.seeds { font-size: 0.9em; margin: 0.6em 0 0.1em; } ul.seeds li { font-size: 0.9em; }
ul.qa li { margin-bottom: 0.2em; }
.plumbing { background: #fff4e5; border-left: 4px solid #f0a020; padding: 0.5em 0.8em; }
figure { margin: 0.6em 0; } figure img { max-width: 100%; }
figcaption { font-size: 0.85em; color: #555; max-width: 60em; }
</style></head><body>
"""


# ---------------------------------------------------------------- files


TABLES = ("comparison", "example_tests", "metric_summary", "efficiency", "stability", "generalization",
          "settings", "failed")


def verdicts_json(report: Report) -> dict[str, object]:
    """{task: verdict row} (JSON-safe; with named arms {"task/arm": row}); a task without a row keeps at least
    its sentence."""
    out: dict[str, object] = {str(r.get("pair") or r.get("task")): json_safe(r) for r in report.verdict_rows or []}
    for task, sentence in report.verdicts.items():
        out.setdefault(task, {"task": task, "sentence": sentence})
    return out


def write_report(report: Report, out_dir: str | Path, analysis_label: str | None = None) -> dict[str, Path]:
    """Write the report folder (layout in the module docstring); returns {name: path}."""
    out = Path(out_dir)
    ensure_verdict_figure(report)
    written = {"runs.csv": atomic_write_text(out / "tables" / "runs.csv", report.runs.to_csv(index=False)),
               "runs.parquet": atomic_write_bytes(out / "tables" / "runs.parquet", to_parquet_bytes(report.runs))}
    for name in TABLES:
        file = "failed_runs.csv" if name == "failed" else f"{name}.csv"
        written[file] = atomic_write_text(out / "tables" / file, getattr(report, name).to_csv(index=False))
    if report.qa is not None:
        file = f"{QA_TASK}_breakdown.csv"
        written[file] = atomic_write_text(out / "tables" / file, report.qa.table().to_csv(index=False))
    for name, df in report.analysis.items():
        file = f"analysis_{name}.csv"
        written[file] = atomic_write_text(out / "tables" / file, df.to_csv(index=False))
    for name, png in report.figures.items():
        written[name] = atomic_write_bytes(out / "plots" / name, png)
    written["verdicts.json"] = atomic_write_json(out / "verdicts.json", verdicts_json(report))
    written["summary.md"] = atomic_write_text(out / "summary.md", render_markdown(report))
    written["report.html"] = atomic_write_text(out / "report.html", render_html(report, analysis_label))
    return written


def to_parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()
