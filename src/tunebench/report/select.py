"""Which hyperparameter setting of each task x arm is the headline one (pure).

A sweep runs several settings (usually learning rates) per task x arm (tunebench.arms: a method plus the
settings that define it; without named arms, one per method). The headline comparison uses one setting per
task x arm, chosen without looking at test metrics:

1. If a ``selection.json`` written by the plan engine names the setting (its ``learning_rate`` and
   ``overrides``), use the ok setting that matches it (the one with most seeds when several match, e.g. a
   1-seed sweep point and its 5-seed final runs).
2. Otherwise pick the setting with the best mean *validation* primary metric over its seeds (higher is
   better for every primary metric: accuracy, F1; ties: more seeds, then the lower learning rate): the plan
   engine's rule, `tunebench.plan.select.setting_rank`, so the report picks what the plan would from the same
   runs. Choosing on test would bias the test comparison upwards -- the reason GLUE dev is our test split and
   model selection has its own validation split. A setting with a seed that does not count (its run failed,
   was interrupted or is still running, with no ok run of that seed; or an ok run without a validation value)
   ranks after every setting whose seeds all count, as in the plan; a note says when that passed over a setting
   whose surviving seeds scored best, and when every setting has such a seed (the headline is then the best on
   its seeds that count: the plan would have chosen none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from tunebench.config import METHODS, get_dotted
from tunebench.plan.select import complete, rank_key, setting_rank
from tunebench.report.stats import summarize
from tunebench.results import STATUS_OK
from tunebench.tasks import TASKS

SettingKey = tuple[str, str, str]             # (task, arm, setting_id)


@dataclass(frozen=True)
class Selection:
    task: str
    arm: str
    setting_id: str
    source: str            # "selection.json (<path>)" or "best mean validation <metric>"
    note: str | None = None


def summarize_settings(ok: pd.DataFrame) -> pd.DataFrame:
    """One row per task x arm x setting: its method, learning rate, r, seeds and the primary metric (points) on
    validation and test. `ok` needs the derived columns validation_primary / test_primary (tables.py)."""
    rows = []
    for (task, arm, sid), g in ok.groupby(["task", "arm", "setting_id"], sort=True):
        val, test = summarize(g["validation_primary"]), summarize(g["test_primary"])
        rows.append({
            "task": task, "method": g["method"].iloc[0], "arm": arm, "setting_id": sid,
            "learning_rate": g["learning_rate"].iloc[0], "lora_r": g["lora_r"].iloc[0],
            "n_seeds": len(g), "seeds": _seed_list(g["seed"]),
            "validation_mean": val.mean, "validation_sd": val.sd, "test_mean": test.mean, "test_sd": test.sd,
        })
    return pd.DataFrame(rows, columns=["task", "method", "arm", "setting_id", "learning_rate", "lora_r", "n_seeds",
                                       "seeds", "validation_mean", "validation_sd", "test_mean", "test_sd"])


def seed_values(runs: pd.DataFrame, ok: pd.DataFrame | None = None) -> dict[SettingKey, dict[Any, float | None]]:
    """Per setting, what plan.select.setting_rank ranks it on: seed -> its validation primary metric (points), None
    for a seed that does not count. `ok`: the ok runs counted (default: every ok run of `runs`; the report passes
    them with duplicate seeds dropped); a run that is not ok (failed, interrupted, still running, unreadable) of a
    known task and method marks its seed None unless an ok run of that seed counts. Both need the columns task,
    method, arm, setting_id, seed, status; `ok` also validation_primary (tables.add_primary_columns)."""
    ok = runs[runs["status"] == STATUS_OK] if ok is None else ok
    out: dict[SettingKey, dict[Any, float | None]] = {}
    for task, arm, sid, seed, run_dir, value in zip(ok["task"], ok["arm"], ok["setting_id"], ok["seed"],
                                                    ok["run_dir"], ok["validation_primary"], strict=True):
        v = _number(value)
        counted = v if v is not None and math.isfinite(v) else None
        out.setdefault((task, arm, sid), {})[_seed(seed, run_dir)] = counted
    known = runs["task"].isin(list(TASKS)) & runs["method"].isin(METHODS) & runs["setting_id"].notna()
    bad = runs[(runs["status"] != STATUS_OK) & known]
    for task, arm, sid, seed, run_dir in zip(bad["task"], bad["arm"], bad["setting_id"], bad["seed"],
                                             bad["run_dir"], strict=True):
        out.setdefault((task, arm, sid), {}).setdefault(_seed(seed, run_dir), None)
    return out


def select_settings(
    settings: pd.DataFrame,
    selections: dict[str, dict[str, dict]],
    configs: dict[str, dict[str, Any]] | None = None,
    primary_metrics: dict[str, str] | None = None,
    *,
    seeds: dict[SettingKey, dict[Any, float | None]],
) -> dict[tuple[str, str], Selection]:
    """The headline setting per (task, arm). `configs` maps setting_id -> one run's resolved config; `seeds`
    (seed_values of the same runs) is what the rule ranks each setting on."""
    out = {}
    for (task, arm), g in settings.groupby(["task", "arm"], sort=True):
        entry = selections.get(task, {}).get(arm)
        metric = (primary_metrics or {}).get(task, "primary metric")
        out[(task, arm)] = _select_headline(g, entry, configs or {}, metric, seeds)
    return out


def _select_headline(group: pd.DataFrame, entry: dict | None, configs: dict[str, dict], metric: str,
                     seeds: dict[SettingKey, dict[Any, float | None]]) -> Selection:
    task, method = group["task"].iloc[0], group["arm"].iloc[0]      # `method`: the arm, in the notes
    note = None
    if entry is not None and entry.get("overrides") is None and entry.get("learning_rate") is None:
        note = (f"{entry.get('source', 'selection.json')} has no usable setting for {task}/{method} (every sweep "
                f"candidate failed); fell back to the best mean validation {metric}")
        entry = None
    if entry is not None:
        matches = group[[matches_selection(r, entry, configs.get(r["setting_id"])) for _, r in group.iterrows()]]
        if len(matches):
            best = _most_seeds(matches)
            return Selection(task, method, best["setting_id"], f"selection.json ({entry.get('source', '?')})")
        note = (f"{entry.get('source', 'selection.json')} names learning_rate={entry.get('learning_rate')} "
                f"but no ok run matches it; fell back to the best mean validation {metric}")
    ranked = _ranked(group, seeds)
    best = ranked[0]
    rule_note = _uncounted_seeds_note(task, method, ranked, seeds, metric)
    notes = [n for n in (note, rule_note) if n]
    return Selection(task, method, best["setting_id"], f"best mean validation {metric}",
                     "; ".join(notes) if notes else None)


def _most_seeds(matches: pd.DataFrame) -> pd.Series:
    """Of the settings selection.json names, the first under rank_key: the best mean, then the most ok seeds."""
    return min((row for _, row in matches.iterrows()),
               key=lambda r: rank_key(_number(r["validation_mean"]), int(r["n_seeds"]),
                                      _number(r["learning_rate"]), str(r["setting_id"])))


def _values(row: pd.Series, seeds: dict[SettingKey, dict[Any, float | None]]) -> list[float | None]:
    """The setting's value per seed, setting_rank's input."""
    return list(seeds[(row["task"], row["arm"], row["setting_id"])].values())


def _ranked(group: pd.DataFrame, seeds: dict[SettingKey, dict[Any, float | None]]) -> list[pd.Series]:
    """The settings best first under the plan engine's rule (plan.select.setting_rank); the setting id breaks the
    last ties."""
    return sorted((row for _, row in group.iterrows()), key=lambda r: _rank(r, seeds))


def _rank(row: pd.Series, seeds: dict[SettingKey, dict[Any, float | None]]) -> tuple:
    """plan.select.setting_rank of one setting row."""
    return setting_rank(_values(row, seeds), _number(row["learning_rate"]), str(row["setting_id"]))


def _uncounted_seeds_note(task: str, method: str, ranked: list[pd.Series],
                          seeds: dict[SettingKey, dict[Any, float | None]], metric: str) -> str | None:
    """Say when a seed that does not count decided the headline: every setting has one (the plan would have chosen
    none), or a setting whose counted seeds rank first was passed over for it. Nothing when there was no choice
    (one setting: its runs that are not ok are in the failed-runs table)."""
    if len(ranked) < 2:
        return None
    best = ranked[0]
    values = _values(best, seeds)
    if not complete(values):
        return (f"{task}/{method}: every setting has a seed that did not finish ok with a validation value; the "
                f"headline, {_describe(best, seeds)}, is the best mean validation {metric} of the seeds that did "
                "(the plan engine would choose none)")
    best_rank = _rank(best, seeds)[1:]
    passed = [r for r in ranked[1:] if _rank(r, seeds)[1:] < best_rank]
    if not passed:
        return None
    return (f"{task}/{method}: the headline is {_describe(best, seeds)}, although "
            + "; ".join(_describe(r, seeds) for r in passed)
            + f" scored higher on the mean validation {metric} of the seeds that finished ok: a setting with a seed "
            "that did not ranks after every setting whose seeds all did (the plan engine's rule)")


def _describe(row: pd.Series, seeds: dict[SettingKey, dict[Any, float | None]]) -> str:
    """'learning_rate=0.0003 (setting 1a2b3c4d; seed 3 did not count)'."""
    missing = [str(s) for s, v in seeds[(row["task"], row["arm"], row["setting_id"])].items() if v is None]
    lost = f"; seed{'s' if len(missing) > 1 else ''} {', '.join(missing)} did not count" if missing else ""
    return f"learning_rate={_number(row['learning_rate'])} (setting {row['setting_id']}{lost})"


def _seed(seed: Any, run_dir: Any) -> Any:
    """A seed as a key: an int, or the run folder when the run records none."""
    return run_dir if seed is None or pd.isna(seed) else int(seed)


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
