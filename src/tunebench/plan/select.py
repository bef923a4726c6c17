"""The sweep stage's decision: per task and arm, the grid point with the best mean validation value (pure).

Input: one dict per sweep run -- its metrics.json (docs/results.md) plus the plan's `overrides` (the grid
point), `task`, `method`, `arm` (tunebench.arms; default the method), `seed`, `run_id` and `learning_rate`.
Output: selection.json's content (arms named by their method in a plan without `arms:`),

    {"<task>": {"<arm>": {"overrides": {...}, "learning_rate": x, "validation_value": v,
                             "primary_metric": "accuracy", "sweep_seeds": [42],
                             "candidates": [{"overrides", "learning_rate", "validation_value", "values",
                                             "seeds", "run_ids", "status", "reasons"}, ...]}}}

Rules: only `best_validation.value` (the primary metric on the validation split) is read -- never test, so
the final stage's test numbers are not chosen on themselves. Every primary metric is higher-is-better
(accuracy, F1). A candidate counts only when every one of its sweep runs is ok (a setting that diverged on
one seed is not a setting to recommend); its value is the mean over its seeds. Ties go to more seeds, then
to the lower learning rate, then to the grid point that sorts first as JSON -- deterministic on every machine.

`setting_rank` is this rule's one home (with `rank_key`, its order among settings whose seeds all count): the
report ranks its settings with it too when no selection.json names one (tunebench.report.select), so both pick
the same setting from the same runs. A setting with a seed that failed -- not ok, or without a finite validation
value -- ranks after every setting whose seeds all count, whatever its other seeds scored: the mean of the seeds
that survived flatters a setting that diverges. The plan never chooses such a setting (unresolved when no other
is left); the report, which must show something, falls back to it only when every setting has one, and says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from tunebench.data.tasks import get_task
from tunebench.plan.expand import setting_key
from tunebench.results import STATUS_OK


def select_sweep(results: Iterable[dict]) -> dict[str, dict[str, dict]]:
    """Group sweep results by task, arm (`arm`, else the method: tunebench.arms) and grid point; pick the best
    point of each task and arm."""
    groups: dict[str, dict[str, dict[str, list[dict]]]] = {}
    for r in results:
        point = setting_key(r.get("overrides") or {})
        groups.setdefault(r["task"], {}).setdefault(r.get("arm") or r["method"], {}).setdefault(point, []).append(r)
    return {task: {arm: select_candidate(task, list(points.values()))
                   for arm, points in sorted(by_arm.items())}
            for task, by_arm in sorted(groups.items())}


def select_candidate(task: str, candidates: list[list[dict]]) -> dict[str, Any]:
    """One task x method: its candidates ranked best first; `overrides` is None when every candidate failed."""
    summaries = sorted((summarize_candidate(runs) for runs in candidates), key=candidate_rank)
    best = summaries[0] if summaries and summaries[0]["status"] == STATUS_OK else None
    first = candidates[0][0] if candidates and candidates[0] else {}
    return {
        "overrides": best["overrides"] if best else None,
        "learning_rate": best["learning_rate"] if best else None,
        "validation_value": best["validation_value"] if best else None,
        "primary_metric": first.get("primary_metric") or get_task(task).primary_metric,
        "sweep_seeds": sorted({r.get("seed") for runs in candidates for r in runs if r.get("seed") is not None}),
        "candidates": summaries,
    }


def summarize_candidate(runs: list[dict]) -> dict[str, Any]:
    runs = sorted(runs, key=lambda r: (r.get("seed") is None, r.get("seed")))
    values = [validation_value(r) for r in runs]
    ok = complete(values)
    return {
        "overrides": runs[0].get("overrides") or {},
        "learning_rate": runs[0].get("learning_rate"),
        # fsum: the mean must not depend on the order the seeds finished in (ties are compared exactly)
        "validation_value": math.fsum(values) / len(values) if ok else None,
        "values": values,
        "seeds": [r.get("seed") for r in runs],
        "run_ids": [r.get("run_id") for r in runs],
        "status": STATUS_OK if ok else "failed",
        "reasons": [_reason(r) for r, v in zip(runs, values, strict=True) if v is None],
    }


def validation_value(result: dict) -> float | None:
    """best_validation.value of an ok run with a finite value, else None."""
    if result.get("status") != STATUS_OK:
        return None
    value = (result.get("best_validation") or {}).get("value")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return None
    return float(value)


def rank_key(value: float | None, n_seeds: int, learning_rate: float | None, tiebreak: str) -> tuple:
    """The selection rule, smallest first: a usable (not None) mean validation value, the highest one, then
    more seeds, then the lower learning rate (None last), then `tiebreak` (deterministic on every machine)."""
    return (value is None, -(value or 0.0), -n_seeds, learning_rate if learning_rate is not None else math.inf,
            tiebreak)


def complete(values: Sequence[float | None]) -> bool:
    """Whether every seed of a setting counts (setting_rank ranks it among the first)."""
    return bool(values) and all(v is not None for v in values)


def setting_rank(values: Sequence[float | None], learning_rate: float | None, tiebreak: str) -> tuple:
    """The selection rule for one setting, smallest first, the plan's and the report's: `values` holds one entry
    per seed the setting ran, its validation value, None for a seed that does not count (its run is not ok, or
    has no finite value). First every setting whose seeds all count, then the rest; within each, rank_key on the
    mean of the seeds that count (fsum: the same whatever order the seeds finished in) and their number."""
    counted = [v for v in values if v is not None]
    mean = math.fsum(counted) / len(counted) if counted else None
    return (not complete(values), *rank_key(mean, len(counted), learning_rate, tiebreak))


def candidate_rank(candidate: dict) -> tuple:
    """setting_rank of a summarized candidate; its grid point as JSON breaks the last ties."""
    return setting_rank(candidate["values"], candidate["learning_rate"], setting_key(candidate["overrides"]))


def _reason(result: dict) -> str:
    if result.get("status") != STATUS_OK:
        return f"{result.get('run_id')}: {result.get('status')}: {result.get('reason') or 'no reason recorded'}"
    return f"{result.get('run_id')}: no finite best_validation.value"


def unresolved(selection: dict[str, dict[str, dict]]) -> list[tuple[str, str, list[str]]]:
    """(task, method, reasons) for every task x method where no candidate is usable."""
    return [(task, method, [r for c in entry["candidates"] for r in c["reasons"]])
            for task, by_method in selection.items() for method, entry in by_method.items()
            if entry["overrides"] is None]
