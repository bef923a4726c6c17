"""Tidy tables from analysed runs: (metrics.json, analysis.json) pairs in, pandas DataFrames out.

`analysis_tables(pairs)` returns four tables (pure: no files read or written; get the pairs with
`tunebench.analysis.run.load_analysis_pairs(results_dir)`):

  runs     one row per run: run_id, experiment, task, method, seed, lora_r (<NA> for full), setting
           ("LoRA r=8" | "full"), primary_metric, test_primary (the test split's primary metric, on the scale
           metrics.json uses), forgetting (loss_before, loss_after, ppl_before, ppl_after, delta_loss,
           tokens, text), spectrum summary (n_matrices, mean_effective_rank, max_effective_rank,
           mean_stable_rank, intruders_total, fro_norm_total) and per group the same with a suffix
           (mean_effective_rank_attention, intruders_total_mlp, ...).
  modules  one row per run and adapted matrix: the run's keys, module, layer, type, group, effective_rank,
           stable_rank, intruders, fro_norm, rel_fro_norm, top_singular_value.
  layers   per task x method x lora_r x layer x module type: means over seeds of effective_rank, stable_rank,
           intruders and fro_norm, and n_runs.
  by_rank  per task x method x lora_r: mean and sd over seeds (sd NaN for one seed) of test_primary,
           delta_loss, intruders_total, mean_effective_rank and mean_stable_rank, and n_runs.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

RUN_KEYS = ["run_id", "experiment", "task", "method", "seed", "lora_r", "setting"]
FORGETTING_COLUMNS = ["loss_before", "loss_after", "ppl_before", "ppl_after", "delta_loss", "tokens", "text"]
SUMMARY_COLUMNS = ["n_matrices", "mean_effective_rank", "max_effective_rank", "mean_stable_rank",
                   "intruders_total", "fro_norm_total"]
GROUP_SUMMARY_COLUMNS = ["mean_effective_rank", "mean_stable_rank", "intruders_total"]
MODULE_COLUMNS = ["module", "layer", "type", "group", "effective_rank", "stable_rank", "intruders", "fro_norm",
                  "rel_fro_norm"]
LAYER_MEASURES = ["effective_rank", "stable_rank", "intruders", "fro_norm"]
BY_RANK_MEASURES = ["test_primary", "delta_loss", "intruders_total", "mean_effective_rank", "mean_stable_rank"]
SETTING_KEYS = ["task", "method", "lora_r"]


def analysis_tables(pairs: Iterable[tuple[dict, dict]]) -> dict[str, pd.DataFrame]:
    """{"runs", "modules", "layers", "by_rank"}: see the module docstring."""
    pairs = list(pairs)
    runs = runs_table(pairs)
    modules = modules_table(pairs)
    return {"runs": runs, "modules": modules, "layers": layers_table(modules), "by_rank": by_rank_table(runs)}


# ---------------------------------------------------------------- per run


def run_keys(metrics: dict, analysis: dict) -> dict:
    """The identifying columns of a run (metrics.json first, analysis.json as a fallback)."""
    method = metrics.get("method", analysis.get("method"))
    r = metrics.get("lora_r", analysis.get("lora_r")) if method == "lora" else None
    return {
        "run_id": metrics.get("run_id", analysis.get("run_id")),
        "experiment": metrics.get("experiment"),
        "task": metrics.get("task", analysis.get("task")),
        "method": method,
        "seed": metrics.get("seed"),
        "lora_r": r,
        "setting": f"LoRA r={r}" if method == "lora" else "full",
    }


def test_primary(metrics: dict) -> float:
    """The test split's primary metric, NaN when absent."""
    value = (metrics.get("test") or {}).get(metrics.get("primary_metric") or "")
    return float(value) if value is not None else np.nan


def run_row(metrics: dict, analysis: dict) -> dict:
    row = run_keys(metrics, analysis)
    row["primary_metric"] = metrics.get("primary_metric")
    row["test_primary"] = test_primary(metrics)
    forgetting = analysis.get("forgetting") or {}
    row.update({c: forgetting.get(c, np.nan) for c in FORGETTING_COLUMNS})
    summary = analysis.get("summary") or {}
    row.update({c: summary.get(c, np.nan) for c in SUMMARY_COLUMNS})
    for group, values in (summary.get("by_group") or {}).items():
        row.update({f"{c}_{group}": values.get(c, np.nan) for c in GROUP_SUMMARY_COLUMNS})
    return row


def runs_table(pairs: list[tuple[dict, dict]]) -> pd.DataFrame:
    columns = RUN_KEYS + ["primary_metric", "test_primary"] + FORGETTING_COLUMNS + SUMMARY_COLUMNS
    df = pd.DataFrame([run_row(m, a) for m, a in pairs])
    df = df.reindex(columns=columns + [c for c in df.columns if c not in columns])
    return _sorted(_typed(df))


def modules_table(pairs: list[tuple[dict, dict]]) -> pd.DataFrame:
    keys = [k for k in RUN_KEYS if k != "experiment"]
    rows = []
    for metrics, analysis in pairs:
        ids = {k: v for k, v in run_keys(metrics, analysis).items() if k in keys}
        for m in analysis.get("spectrum") or []:
            s = m.get("top_singular_values") or [np.nan]
            rows.append({**ids, **{c: m.get(c, np.nan) for c in MODULE_COLUMNS}, "top_singular_value": s[0]})
    df = pd.DataFrame(rows, columns=keys + MODULE_COLUMNS + ["top_singular_value"])
    return _sorted(_typed(df), extra=["layer", "module"])


# ---------------------------------------------------------------- aggregates


def layers_table(modules: pd.DataFrame) -> pd.DataFrame:
    """Means over seeds per task x method x lora_r x layer x module type."""
    keys = SETTING_KEYS + ["layer", "type", "group"]
    grouped = modules.groupby(keys, dropna=False, sort=False)
    out = grouped[LAYER_MEASURES].mean()
    out["n_runs"] = grouped["run_id"].nunique()
    return _sorted(out.reset_index(), extra=["layer", "type"])


def by_rank_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over seeds per task x method x lora_r (the rank sweep's points)."""
    grouped = runs.groupby(SETTING_KEYS, dropna=False, sort=False)
    parts = {}
    for c in BY_RANK_MEASURES:
        parts[f"{c}_mean"] = grouped[c].mean()
        parts[f"{c}_sd"] = grouped[c].std(ddof=1)
    out = pd.DataFrame(parts)
    out["n_runs"] = grouped["run_id"].nunique()
    return _sorted(out.reset_index())


# ---------------------------------------------------------------- helpers


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """lora_r and seed as nullable integers (<NA> for full fine-tuning's rank); measures as floats."""
    df = df.copy()
    for c in ("lora_r", "seed", "layer"):
        if c in df:
            df[c] = pd.array([None if v is None or pd.isna(v) else int(v) for v in df[c]], dtype="Int64")
    for c in BY_RANK_MEASURES + ["effective_rank", "stable_rank", "intruders", "fro_norm", "loss_before",
                                 "loss_after", "ppl_before", "ppl_after"]:
        if c in df:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return df


def _sorted(df: pd.DataFrame, extra: list[str] | None = None) -> pd.DataFrame:
    """Task, then LoRA before full, then rank ascending (then `extra`)."""
    if df.empty:
        return df.reset_index(drop=True)
    keys = [k for k in ["task", "method", "lora_r", *(extra or [])] if k in df]
    method_order = {"lora": 0, "full": 1}

    def order(col: pd.Series) -> pd.Series:
        return col.map(method_order).fillna(2) if col.name == "method" else col

    return df.sort_values(keys, key=order, na_position="last").reset_index(drop=True)
