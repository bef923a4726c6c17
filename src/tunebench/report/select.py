"""Which hyperparameter setting of each task x method is the headline one (pure).

A sweep runs several settings (usually learning rates) per task x method. The headline comparison uses one
setting per task x method, chosen without looking at test metrics:

1. If a ``selection.json`` written by the plan engine names the setting (its ``learning_rate`` and
   ``overrides``), use the ok setting that matches it (the one with most seeds when several match, e.g. a
   1-seed sweep point and its 5-seed final runs).
2. Otherwise pick the setting with the best mean *validation* primary metric over its seeds (higher is
   better for every primary metric: accuracy, F1; ties: more seeds, then the lower learning rate): the plan
   engine's rule, `tunebench.plan.select.rank_key`. Choosing on test would bias the test comparison upwards
   -- the reason GLUE dev is our test split and model selection has its own validation split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from tunebench.config import get_dotted
from tunebench.plan.select import rank_key
from tunebench.report.stats import summarize


@dataclass(frozen=True)
class Selection:
    task: str
    method: str
    setting_id: str
    source: str            # "selection.json (<path>)" or "best mean validation <metric>"
    note: str | None = None


def summarize_settings(ok: pd.DataFrame) -> pd.DataFrame:
    """One row per task x method x setting: learning rate, r, seeds and the primary metric (points) on
    validation and test. `ok` needs the derived columns validation_primary / test_primary (tables.py)."""
    rows = []
    for (task, method, sid), g in ok.groupby(["task", "method", "setting_id"], sort=True):
        val, test = summarize(g["validation_primary"]), summarize(g["test_primary"])
        rows.append({
            "task": task, "method": method, "setting_id": sid,
            "learning_rate": g["learning_rate"].iloc[0], "lora_r": g["lora_r"].iloc[0],
            "n_seeds": len(g), "seeds": _seed_list(g["seed"]),
            "validation_mean": val.mean, "validation_sd": val.sd, "test_mean": test.mean, "test_sd": test.sd,
        })
    return pd.DataFrame(rows, columns=["task", "method", "setting_id", "learning_rate", "lora_r", "n_seeds",
                                       "seeds", "validation_mean", "validation_sd", "test_mean", "test_sd"])


def select_settings(
    settings: pd.DataFrame,
    selections: dict[str, dict[str, dict]],
    configs: dict[str, dict[str, Any]] | None = None,
    primary_metrics: dict[str, str] | None = None,
) -> dict[tuple[str, str], Selection]:
    """The headline setting per (task, method). `configs` maps setting_id -> one run's resolved config."""
    out = {}
    for (task, method), g in settings.groupby(["task", "method"], sort=True):
        entry = selections.get(task, {}).get(method)
        metric = (primary_metrics or {}).get(task, "primary metric")
        out[(task, method)] = _select_headline(g, entry, configs or {}, metric)
    return out


def _select_headline(group: pd.DataFrame, entry: dict | None, configs: dict[str, dict], metric: str) -> Selection:
    task, method = group["task"].iloc[0], group["method"].iloc[0]
    note = None
    if entry is not None and entry.get("overrides") is None and entry.get("learning_rate") is None:
        note = (f"{entry.get('source', 'selection.json')} has no usable setting for {task}/{method} (every sweep "
                f"candidate failed); fell back to the best mean validation {metric}")
        entry = None
    if entry is not None:
        matches = group[[matches_selection(r, entry, configs.get(r["setting_id"])) for _, r in group.iterrows()]]
        if len(matches):
            best = _best(matches)
            return Selection(task, method, best["setting_id"], f"selection.json ({entry.get('source', '?')})")
        note = (f"{entry.get('source', 'selection.json')} names learning_rate={entry.get('learning_rate')} "
                f"but no ok run matches it; fell back to the best mean validation {metric}")
    best = _best(group)
    return Selection(task, method, best["setting_id"], f"best mean validation {metric}", note)


def _best(group: pd.DataFrame) -> pd.Series:
    """The first setting under the plan engine's rule (rank_key); the setting id breaks the last ties."""
    return min((row for _, row in group.iterrows()),
               key=lambda r: rank_key(_number(r["validation_mean"]), int(r["n_seeds"]),
                                      _number(r["learning_rate"]), str(r["setting_id"])))


def _number(value: Any) -> float | None:
    """A finite float, or None for NaN / missing (ranked last)."""
    return None if value is None or pd.isna(value) else float(value)


def matches_selection(setting: pd.Series, entry: dict, config: dict | None) -> bool:
    """Learning rate equal (relative 1e-9) and every dotted override equal in the run's config (when the
    config is available; results without one are matched on the learning rate alone)."""
    lr = entry.get("learning_rate")
    if lr is not None and not _close(setting["learning_rate"], lr):
        return False
    for key, want in (entry.get("overrides") or {}).items():
        if not config:
            continue
        try:
            have = get_dotted(config, key)
        except (KeyError, TypeError):
            continue
        if not _equal(have, want):
            return False
    return True


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return _close(a, b)
    return a == b


def _close(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    except (TypeError, ValueError):
        return False


def _seed_list(seeds: pd.Series) -> str:
    return ",".join(str(int(s)) for s in sorted(seeds.dropna()))
