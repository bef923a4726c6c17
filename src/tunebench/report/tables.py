"""Report tables as DataFrames (pure). Primary metrics are compared in *points*: classification fractions
x 100 (percentage points), SQuAD v2 metrics as they are (the official script already reports 0-100).
"""

from __future__ import annotations

import math
import re

import pandas as pd

from tunebench.data.tasks import TASKS
from tunebench.report.compare import TaskComparison
from tunebench.report.stats import summarize
from tunebench.results import STATUS_OK, STATUS_RUNNING


def finite_or_nan(x: object) -> float:
    """A finite float, or NaN for None, NA, strings and infinities (report cells and plotted values)."""
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan

FAILED_COLUMNS = ["task", "method", "arm", "seed", "learning_rate", "experiment", "run_id", "status", "reason",
                  "run_dir"]
EFFICIENCY_MEANS = ["params_trainable", "params_total", "params_trainable_share", "peak_memory_bytes", "wall_s",
                     "train_s", "eval_s", "tokens_per_s", "time_to_best_validation_s", "best_validation_step"]

EFFICIENCY_COLUMNS = ["task", "method", "arm", "n_seeds", *EFFICIENCY_MEANS, "peak_memory_mib", "memory_kind",
                      "test_primary_mean", "test_primary_ci_low", "test_primary_ci_high"]
STABILITY_COLUMNS = ["task", "method", "arm", "n_seeds", "test_sd", "test_min", "test_max", "validation_sd",
                     "train_loss_mean", "train_loss_sd"]
GENERALIZATION_COLUMNS = ["task", "method", "arm", "n", "train_mean", "test_mean", "gap_mean", "gap_sd", "gap_ci_low",
                          "gap_ci_high"]


def points_scale(task: str) -> float:
    """Factor that turns a task's metric into points (0-100)."""
    return TASKS[task].points_scale


def add_primary_columns(runs: pd.DataFrame) -> pd.DataFrame:
    """test_primary / validation_primary / train_eval_primary: each run's primary metric in points."""
    out = runs.copy()
    for split in ("test", "validation", "train_eval"):
        out[f"{split}_primary"] = [_primary_value(r, split) for _, r in out.iterrows()]
    return out


def _primary_value(row: pd.Series, split: str) -> float:
    task, metric = row.get("task"), row.get("primary_metric")
    if task not in TASKS or not isinstance(metric, str):
        return math.nan
    value = row.get(f"{split}_{metric}", math.nan)
    if split == "validation" and pd.isna(value):
        value = row.get("best_validation_value", math.nan)  # the same number: the restored best checkpoint's
    return float(value) * points_scale(task) if pd.notna(value) else math.nan


def sort_by_task(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in the task table's order (sst2, mrpc, rte, squad_v2), LoRA before full, arms of one method in
    natural order of their names (lora_r8 before lora_r16)."""
    if df.empty or "task" not in df:
        return df.reset_index(drop=True)
    order = {t: i for i, t in enumerate(TASKS)}
    keys = [(order.get(t, len(order)),) for t in df["task"]]
    if "method" in df:
        arms = df["arm"] if "arm" in df else df["method"]
        keys = [k + (0 if m == "lora" else 1, natural_key(str(a))) for k, m, a in zip(keys, df["method"], arms,
                                                                                      strict=True)]
    ranks = sorted(range(len(keys)), key=lambda i: keys[i])            # stable: ties keep their order
    return df.iloc[ranks].reset_index(drop=True)


def natural_key(name: str) -> tuple:
    """'lora_r16' -> ('lora_r', 16, ''): numbers inside names compare as numbers."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if p.isdigit() else p for p in parts)


def build_failed_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run that is not ok (failed, running, unreadable) with its reason; never averaged."""
    bad = runs.loc[runs["status"] != STATUS_OK, FAILED_COLUMNS].reset_index(drop=True)
    running = (bad["status"] == STATUS_RUNNING) & bad["reason"].isna()
    bad["reason"] = bad["reason"].astype(object)
    bad.loc[running, "reason"] = "still running, or killed before it wrote a final status"
    return bad


def finding_notes(runs: pd.DataFrame) -> list[str]:
    """One note per ok run with findings (metrics.json `findings`, e.g. a collapse to one class): it stays
    averaged, and the reader is told."""
    if "findings" not in runs:
        return []
    flagged = runs[(runs["status"] == STATUS_OK) & runs["findings"].notna()]
    return [f"{r.run_dir}: {r.findings} (finished ok: averaged with the other runs)" for r in flagged.itertuples()]


def build_metric_summary(headline: pd.DataFrame) -> pd.DataFrame:
    """Long table per task x method x metric (test_*, validation_*, train_eval_*, raw units): n, mean, sd
    and 95% t-interval over seeds."""
    metric_cols = [c for c in headline.columns
                   if c.startswith(("test_", "validation_", "train_eval_")) and not c.endswith("_primary")]
    rows = []
    for (task, arm), g in headline.groupby(["task", "arm"], sort=True):
        for col in metric_cols:
            s = summarize(g[col])
            if s.n:
                rows.append({"task": task, "method": g["method"].iloc[0], "arm": arm, "metric": col} | s.as_dict())
    return sort_by_task(pd.DataFrame(rows, columns=["task", "method", "arm", "metric", "n", "mean", "sd", "ci_low",
                                                    "ci_high"]))


def build_comparison_table(comparisons: list[TaskComparison]) -> pd.DataFrame:
    """The headline table: per task, each method's mean +- CI (points) and LoRA - full with its tests."""
    rows = []
    for c in comparisons:
        row = {"task": c.task, "metric": c.primary_metric}
        if c.pair != c.task:             # named arms: the arm's values under lora_*, the reference's under full_*
            row |= {"pair": c.pair, "arm": c.arm, "reference": c.reference}
        for name, s in (("lora", c.lora), ("full", c.full)):
            row |= {f"{name}_n": s.n, f"{name}_mean": s.mean, f"{name}_sd": s.sd,
                    f"{name}_ci_low": s.ci_low, f"{name}_ci_high": s.ci_high}
        if c.seeds is not None:
            k = c.seeds
            row |= {"design": k.design, "n_pairs": k.n_pairs, "diff": k.mean_diff, "diff_ci_low": k.ci_low,
                    "diff_ci_high": k.ci_high, "t_stat": k.t_stat, "t_p": k.t_p, "rank_stat": k.rank_stat,
                    "rank_p": k.rank_p, "effect_size": k.effect_size}
        if c.equivalence is not None:
            e = c.equivalence
            row |= {"equivalence_margin": e.margin, "tost_p": e.p, "tost_ci_low": e.ci_low,
                    "tost_ci_high": e.ci_high, "equivalent": e.equivalent}
        if c.seeds is not None:
            row |= {"seed_test_undefined_reason": c.seed_test_undefined_reason, "decided_on": c.decided_on,
                    "p_decision": c.decision_p, "p_adjusted": c.decision_p_adjusted}
        if c.baseline is not None:
            row |= {"baseline": c.baseline.name, "baseline_value": c.baseline.value}
        rows.append(row)
    return pd.DataFrame(rows)


def build_example_tests_table(comparisons: list[TaskComparison]) -> pd.DataFrame:
    """Every example-level test; with named arms a `pair` column ("sst2/dora_r16") says which arm's."""
    named = any(c.pair != c.task for c in comparisons)
    rows = [({"pair": c.pair} if named else {}) | r for c in comparisons for r in c.example_tests]
    return pd.DataFrame(rows, columns=[*(["pair"] if named else []), "task", "comparison", "seeds", "test", "metric",
                                       "n_examples", "b", "c", "odds_ratio", "mean_diff", "ci_low", "ci_high",
                                       "statistic", "p", "effect_size"])


def build_efficiency_table(headline: pd.DataFrame) -> pd.DataFrame:
    """Per task x method: means over seeds of parameters, memory, time and throughput, plus test primary."""
    rows = []
    for (task, arm), g in headline.groupby(["task", "arm"], sort=True):
        row = {"task": task, "method": g["method"].iloc[0], "arm": arm, "n_seeds": len(g)}
        for col in EFFICIENCY_MEANS:
            row[col] = float(g[col].mean()) if col in g and g[col].notna().any() else math.nan
        row["peak_memory_mib"] = row["peak_memory_bytes"] / 2**20
        row["memory_kind"] = ",".join(sorted(set(g["memory_kind"].dropna().astype(str)))) or None
        s = summarize(g["test_primary"])
        row |= {"test_primary_mean": s.mean, "test_primary_ci_low": s.ci_low, "test_primary_ci_high": s.ci_high}
        rows.append(row)
    return sort_by_task(pd.DataFrame(rows, columns=EFFICIENCY_COLUMNS))


def efficiency_ratios(efficiency: pd.DataFrame, task: str, arm: str = "lora",
                      reference: str = "full") -> dict[str, float | str | None]:
    """The arm's trainable share and arm / reference ratios of memory, wall time and throughput for one task
    (the study's arms: LoRA's share, LoRA / full)."""
    if efficiency.empty:
        return {}
    e = efficiency[efficiency["task"] == task].set_index("arm")
    if arm not in e.index:
        return {}
    lora = e.loc[arm]
    out: dict[str, float | str | None] = {"lora_trainable_share": lora["params_trainable_share"]}
    if reference not in e.index:
        return out
    full = e.loc[reference]
    same_kind = lora["memory_kind"] == full["memory_kind"]
    out["memory_kinds"] = f"{lora['memory_kind']} vs {full['memory_kind']}" if not same_kind else lora["memory_kind"]
    out["memory_ratio"] = _ratio(lora["peak_memory_bytes"], full["peak_memory_bytes"]) if same_kind else math.nan
    out["wall_ratio"] = _ratio(lora["wall_s"], full["wall_s"])
    out["tokens_per_s_ratio"] = _ratio(lora["tokens_per_s"], full["tokens_per_s"])
    return out


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if pd.notna(a) and pd.notna(b) and b else math.nan


def build_stability_table(headline: pd.DataFrame) -> pd.DataFrame:
    """Seed-to-seed spread per task x method: sd and range of the primary metric (points), sd of train loss."""
    rows = []
    for (task, arm), g in headline.groupby(["task", "arm"], sort=True):
        t, v, loss = summarize(g["test_primary"]), summarize(g["validation_primary"]), summarize(g["train_loss"])
        rows.append({"task": task, "method": g["method"].iloc[0], "arm": arm, "n_seeds": t.n, "test_sd": t.sd,
                     "test_min": g["test_primary"].min(), "test_max": g["test_primary"].max(),
                     "validation_sd": v.sd, "train_loss_mean": loss.mean, "train_loss_sd": loss.sd})
    return sort_by_task(pd.DataFrame(rows, columns=STABILITY_COLUMNS))


def build_generalization_table(headline: pd.DataFrame) -> pd.DataFrame:
    """Train (re-scored train subset) minus test primary metric, points: the generalization gap."""
    rows = []
    for (task, arm), g in headline.groupby(["task", "arm"], sort=True):
        gap = summarize(g["train_eval_primary"] - g["test_primary"])
        rows.append({"task": task, "method": g["method"].iloc[0], "arm": arm, "n": gap.n,
                     "train_mean": summarize(g["train_eval_primary"]).mean,
                     "test_mean": summarize(g["test_primary"]).mean,
                     "gap_mean": gap.mean, "gap_sd": gap.sd, "gap_ci_low": gap.ci_low, "gap_ci_high": gap.ci_high})
    return sort_by_task(pd.DataFrame(rows, columns=GENERALIZATION_COLUMNS))
