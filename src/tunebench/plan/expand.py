"""A plan -> the list of runs of each stage, with stable ids; and the split of a run list into shards (pure).

`run_grid` is the one tasks x methods x (grid points) x seeds expansion: the plan's stages and `tunebench run`
(`expand_runs`) both list their runs with it, in that order.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunebench.config import Config, with_overrides
from tunebench.errors import TunebenchError
from tunebench.plan.spec import Plan
from tunebench.results import run_dir, run_id

STAGE_SWEEP = "sweep"
STAGE_FINAL = "final"
STAGES = (STAGE_SWEEP, STAGE_FINAL)


@dataclass(frozen=True, eq=False)
class PlannedRun:
    """One run of a stage: its grid point (`overrides`), resolved config and id (results.run_id)."""

    stage: str
    task: str
    method: str
    seed: int
    overrides: dict[str, Any]
    cfg: Config
    run_id: str
    arm: str = ""               # the plan's arm (tunebench.arms); "" = the method's own arm

    def __post_init__(self) -> None:
        if not self.arm:
            object.__setattr__(self, "arm", self.method)

    @property
    def run_dir(self) -> Path:
        return run_dir(self.cfg)

    @property
    def setting(self) -> str:
        """The grid point as canonical JSON: the key that groups a candidate's seeds."""
        return setting_key(self.overrides)


def setting_key(overrides: dict[str, Any]) -> str:
    return json.dumps(overrides, sort_keys=True, separators=(",", ":"))


def grid_points(axes: dict[str, list]) -> list[dict[str, Any]]:
    """Cartesian product in file order: {a: [1, 2], b: [x]} -> [{a: 1, b: x}, {a: 2, b: x}]; {} -> [{}]."""
    keys = list(axes)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(axes[k] for k in keys))]


def run_grid(tasks: Sequence[str], arms: Sequence[str], seeds: Sequence[int] | Callable[[str], Sequence[int]],
             points: Callable[[str, str], list[dict[str, Any]]] = lambda task, arm: [{}],
             ) -> Iterator[tuple[str, str, dict[str, Any], int]]:
    """(task, arm, grid point, seed) per run: per task, per arm (a plan's arm names; `tunebench run`'s
    methods), per grid point (`points(task, arm)`, default the base setting alone), per seed (`seeds`, or
    `seeds(task)` for per-task seeds)."""
    for task, arm in itertools.product(tasks, arms):
        for point in points(task, arm):
            for seed in (seeds(task) if callable(seeds) else seeds):
                yield task, arm, point, seed


def run_keys(task: str, method: str, seed: int) -> dict[str, Any]:
    """The dotted keys that make a config one run of an expansion."""
    return {"task": task, "method": method, "training.seed": seed}


def expand_runs(cfg: Config, tasks: Sequence[str] | None, methods: Sequence[str] | None,
                seeds: Sequence[int] | None) -> list[Config]:
    """`tunebench run`: tasks x methods x seeds, each defaulting to the config's own."""
    return [with_overrides(cfg, run_keys(task, method, seed))
            for task, method, _, seed in run_grid(tasks or [cfg.task], methods or [cfg.method],
                                                  seeds or [cfg.training.seed])]


def build_run(plan: Plan, stage: str, task: str, arm: str, seed: int, overrides: dict[str, Any]) -> PlannedRun:
    """One run of `arm` (a name of plan.arms): its settings under the grid point; a plan that names its arms
    records the name and the reference arm's in the run's config (`arm`, `reference`: not part of its id)."""
    a = plan.arm(arm)
    named = {"arm": a.name, "reference": plan.reference} if plan.named_arms else {}
    cfg = with_overrides(plan.base, {**plan.task_overrides.get(task, {}), **a.settings, **overrides,
                                     **run_keys(task, a.method, seed), **named, "experiment": plan.experiment(stage)})
    return PlannedRun(stage, task, a.method, seed, dict(overrides), cfg, run_id(cfg), a.name)


def expand_sweep(plan: Plan) -> list[PlannedRun]:
    """Every grid point x the sweep seeds, per task and method (empty for a one-stage plan)."""
    if not plan.two_stage:
        return []
    return _expand(plan, STAGE_SWEEP, plan.sweep_seeds or ())


def expand_grid_final(plan: Plan) -> list[PlannedRun]:
    """Every grid point x each task's final seeds: a one-stage plan's runs (and the candidates of a two-stage
    one)."""
    return _expand(plan, STAGE_FINAL, plan.seeds_of)


def expand_final(plan: Plan, selection: dict | None = None) -> list[PlannedRun]:
    """The final stage: a one-stage plan runs its whole grid; a two-stage plan runs the selected setting of
    each task and method (`selection`, see tunebench.plan.select) with the final seeds."""
    if not plan.two_stage:
        return expand_grid_final(plan)
    if selection is None:
        raise ValueError("a two-stage plan's final stage needs the sweep's selection")

    def chosen(task: str, arm: str) -> list[dict[str, Any]]:
        return [selection[task][arm]["overrides"]]

    return check_unique([build_run(plan, STAGE_FINAL, task, arm, seed, point)
                         for task, arm, point, seed in run_grid(plan.tasks, arm_names(plan), plan.seeds_of, chosen)])


def _expand(plan: Plan, stage: str, seeds: Sequence[int] | Callable[[str], Sequence[int]]) -> list[PlannedRun]:
    def grid(task: str, arm: str) -> list[dict[str, Any]]:
        return grid_points(plan.grid[arm])

    return check_unique([build_run(plan, stage, task, arm, seed, point)
                         for task, arm, point, seed in run_grid(plan.tasks, arm_names(plan), seeds, grid)])


def arm_names(plan: Plan) -> list[str]:
    return [a.name for a in plan.arms]


def check_unique(runs: list[PlannedRun]) -> list[PlannedRun]:
    """Two grid points that resolve to the same config would share a run folder: refuse."""
    seen: dict[str, PlannedRun] = {}
    for r in runs:
        if r.run_id in seen:
            other = seen[r.run_id]
            what = (f"arms {other.arm} and {r.arm}" if other.arm != r.arm
                    else f"grid points {other.overrides} and {r.overrides}")
            raise TunebenchError(f"{what} give the same run {r.run_id} ({r.task}/{r.arm}): they compute the same "
                                 "thing; remove one")
        seen[r.run_id] = r
    return runs


# ---------------------------------------------------------------- shards


def parse_shard(text: str) -> tuple[int, int]:
    """'2/3' -> (2, 3); 1-based, 1 <= K <= N."""
    k_text, sep, n_text = text.partition("/")
    try:
        k, n = int(k_text), int(n_text)
    except ValueError:
        k = n = 0
    if not sep or n < 1 or not 1 <= k <= n:
        raise TunebenchError(f"--shard {text}: expected K/N with 1 <= K <= N, e.g. --shard 1/3")
    return k, n


def shard_runs(runs: list[PlannedRun], k: int, n: int) -> list[PlannedRun]:
    """Shard K of N: round-robin over the runs sorted by id, returned in their original order.

    Every machine computes the same split from the plan alone (no coordination), each run lands in exactly
    one shard, and since ids start with task and method every shard gets an even share of each task's runs.
    """
    if not 1 <= k <= n:
        raise ValueError(f"shard {k}/{n}: need 1 <= K <= N")
    ordered = sorted(r.run_id for r in runs)
    mine = {rid for i, rid in enumerate(ordered) if i % n == k - 1}
    return [r for r in runs if r.run_id in mine]
