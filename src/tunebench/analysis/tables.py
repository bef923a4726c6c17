"""Tidy tables from analysed runs: (metrics.json, analysis.json) pairs in, pandas DataFrames out.

`analysis_tables(pairs)` returns four tables (pure: no files read or written; get the pairs with
`tunebench.analysis.run.load_analysis_pairs(results_dir)`):

  runs     one row per run: run_id, experiment, task, method, arm (tunebench.arms; the method without named
           arms), family (LoRA / DoRA / rsLoRA / full: the rank curve it belongs to), seed, lora_r (<NA> for
           full), setting ("LoRA r=8" | "full", a named arm's label: "DoRA r=16"), primary_metric,
           test_primary (the test split's primary metric, on the scale metrics.json uses), forgetting
           (loss_before, loss_after, ppl_before, ppl_after, delta_loss, tokens, text), spectrum summary
           (n_matrices, mean_energy_rank, max_energy_rank, mean_effective_rank, mean_stable_rank,
           intruders_total, fro_norm_total) and per group the same with a suffix (mean_energy_rank_attention,
           intruders_total_mlp, ...).
  modules  one row per run and adapted matrix: the run's keys, module, layer, type, group, energy_rank,
           effective_rank, stable_rank, intruders, fro_norm, rel_fro_norm, top_singular_value, energy.
  layers   per task x method x lora_r x layer x module type: means over seeds of energy_rank, effective_rank,
           stable_rank, intruders and fro_norm, and n_runs.
  by_rank  per task x arm x lora_r: mean, sd and 95% t-interval over seeds (NaN for one seed) of test_primary,
           delta_loss, intruders_total, mean_energy_rank, mean_effective_rank and mean_stable_rank, and n_runs.

Two ranks, two names (tunebench.analysis.spectrum): energy_rank is the number of singular values holding
`energy` (0.9) of ||dW||_F^2 (Biderman et al., 2024); effective_rank is Roy and Vetterli's (2007)
exp(entropy of s / sum s). analysis.json files of schema 1 called the energy rank effective_rank:
`upgrade_analysis` reads them as the energy rank, with the Roy-Vetterli rank unknown (NaN; re-run
`tunebench analyze` to fill it). COLUMN_LABELS are the names to show a reader.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy import stats

from tunebench.arms import arm_label, lora_family, run_arm

RUN_KEYS = ["run_id", "experiment", "task", "method", "arm", "family", "seed", "lora_r", "setting"]
FORGETTING_COLUMNS = ["loss_before", "loss_after", "ppl_before", "ppl_after", "delta_loss", "tokens", "text"]
SUMMARY_COLUMNS = ["n_matrices", "mean_energy_rank", "max_energy_rank", "mean_effective_rank", "mean_stable_rank",
                   "intruders_total", "fro_norm_total"]
GROUP_SUMMARY_COLUMNS = ["mean_energy_rank", "mean_effective_rank", "mean_stable_rank", "intruders_total"]
MODULE_COLUMNS = ["module", "layer", "type", "group", "energy_rank", "effective_rank", "stable_rank", "intruders",
                  "fro_norm", "rel_fro_norm"]
LAYER_MEASURES = ["energy_rank", "effective_rank", "stable_rank", "intruders", "fro_norm"]
BY_RANK_MEASURES = ["test_primary", "delta_loss", "intruders_total", "mean_energy_rank", "mean_effective_rank",
                    "mean_stable_rank"]
SETTING_KEYS = ["task", "method", "arm", "family", "lora_r"]
DEFAULT_ENERGY = 0.9   # tunebench.analysis.run's default, for records without settings.energy

# What a reader should see for the rank columns (the tables keep the short keys; `mean_` / `max_` are over the
# run's adapted matrices, a `_attention` / `_mlp` suffix over one group of them).
COLUMN_LABELS = {
    "energy_rank": "energy rank (90%)",
    "mean_energy_rank": "mean energy rank (90%)",
    "max_energy_rank": "max energy rank (90%)",
    "effective_rank": "effective rank (Roy-Vetterli)",
    "mean_effective_rank": "mean effective rank (Roy-Vetterli)",
    "stable_rank": "stable rank",
    "mean_stable_rank": "mean stable rank",
}

# schema 1 key -> schema 2 key: the 90%-energy rank was stored as the "effective rank"
_SCHEMA1_RENAMES = {"effective_rank": "energy_rank", "mean_effective_rank": "mean_energy_rank",
                    "max_effective_rank": "max_energy_rank"}


def analysis_tables(pairs: Iterable[tuple[dict, dict]]) -> dict[str, pd.DataFrame]:
    """{"runs", "modules", "layers", "by_rank"}: see the module docstring. Schema-1 records are upgraded."""
    pairs = [(m, upgrade_analysis(a)) for m, a in pairs]
    runs = runs_table(pairs)
    modules = modules_table(pairs)
    return {"runs": runs, "modules": modules, "layers": layers_table(modules), "by_rank": by_rank_table(runs)}


def upgrade_analysis(analysis: dict) -> dict:
    """An analysis.json record in schema 2 (a copy when it was older; the input is never changed).

    Schema 1 (no "schema" key counts as 1) stored the 90%-energy rank as effective_rank, mean_effective_rank
    and max_effective_rank: they become energy_rank, mean_energy_rank and max_energy_rank, and the
    Roy-Vetterli effective_rank / mean_effective_rank, which schema 1 did not compute, are NaN.
    """
    if analysis.get("schema", 1) >= 2:
        return analysis
    out = copy.deepcopy(analysis)
    for row in out.get("spectrum") or []:
        _rename_schema1(row)
    summary = out.get("summary") or {}
    _rename_schema1(summary)
    for values in (summary.get("by_group") or {}).values():
        _rename_schema1(values)
    out["schema"] = 2
    return out


def _rename_schema1(d: dict) -> None:
    present = [k for k in _SCHEMA1_RENAMES if k in d]
    for old in present:
        d[_SCHEMA1_RENAMES[old]] = d.pop(old)
    if "effective_rank" in present:
        d["effective_rank"] = np.nan
    if "mean_effective_rank" in present:
        d["mean_effective_rank"] = np.nan


# ---------------------------------------------------------------- per run


def run_keys(metrics: dict, analysis: dict) -> dict:
    """The identifying columns of a run (metrics.json first, analysis.json as a fallback)."""
    method = metrics.get("method", analysis.get("method"))
    r = metrics.get("lora_r", analysis.get("lora_r")) if method == "lora" else None
    config = metrics.get("config") if isinstance(metrics.get("config"), dict) else {}
    lora = config.get("lora") if isinstance(config.get("lora"), dict) else {}
    family = lora_family(lora) if method == "lora" else "full"
    named = bool(config.get("arm")) and method in ("lora", "full")
    return {
        "run_id": metrics.get("run_id", analysis.get("run_id")),
        "experiment": metrics.get("experiment"),
        "task": metrics.get("task", analysis.get("task")),
        "method": method,
        "arm": run_arm({**metrics, "method": method}) if method is not None else None,
        "family": family,          # LoRA / DoRA / rsLoRA / full: the curve a rank belongs to
        "seed": metrics.get("seed"),
        "lora_r": r,
        "setting": (arm_label(method, {**lora, "r": r or lora.get("r", 16)}) if named else
                    f"LoRA r={r}" if method == "lora" else "full"),
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
        energy = (analysis.get("settings") or {}).get("energy", DEFAULT_ENERGY)
        for m in analysis.get("spectrum") or []:
            s = m.get("top_singular_values") or [np.nan]
            rows.append({**ids, **{c: m.get(c, np.nan) for c in MODULE_COLUMNS}, "top_singular_value": s[0],
                         "energy": energy})
    df = pd.DataFrame(rows, columns=keys + MODULE_COLUMNS + ["top_singular_value", "energy"])
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
    """Mean, sd and 95% t-interval over seeds per task x arm x lora_r (the rank sweep's points; the interval is
    NaN for one seed)."""
    grouped = runs.groupby(SETTING_KEYS, dropna=False, sort=False)
    parts = {}
    for c in BY_RANK_MEASURES:
        parts[f"{c}_mean"] = grouped[c].mean()
        parts[f"{c}_sd"] = grouped[c].std(ddof=1)
        n = grouped[c].count()
        half = pd.Series(stats.t.ppf(0.975, (n - 1).clip(lower=1)), index=n.index) * parts[f"{c}_sd"] / np.sqrt(n)
        half[n < 2] = np.nan
        parts[f"{c}_ci_low"], parts[f"{c}_ci_high"] = parts[f"{c}_mean"] - half, parts[f"{c}_mean"] + half
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
    for c in BY_RANK_MEASURES + LAYER_MEASURES + ["loss_before", "loss_after", "ppl_before", "ppl_after", "energy"]:
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
