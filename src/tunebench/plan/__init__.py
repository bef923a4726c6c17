"""Experiment plans: a YAML file -> runs with stable ids, a two-stage protocol, resume, shards and Ray.

Stages. A plan without `sweep:` has one stage, `final`: every grid point x `seeds`. A plan with `sweep:` has
two: `sweep` runs every grid point x `sweep.seeds` (results in <output_dir>/<name>-sweep/) and picks, per task
and method, the grid point with the best mean `best_validation.value` (tunebench.plan.select); `final` runs
the picked point x `seeds` (results in <output_dir>/<name>/) and writes <output_dir>/<name>/selection.json
with the choice and its evidence. The report then reads <output_dir>/<name>/ (`tunebench report`: the
study's phase 2b). Sweep and final runs live in separate folders so the report's folder holds exactly the
final runs; a final run that the sweep already computed (same run id: the picked point on a sweep seed) is
copied from the sweep's folder, not trained again (tunebench.plan.reuse; metrics.json says `reused_from`).

On several machines over one shared results folder: every machine runs `--stage sweep --shard K/N`, then,
once all are done, `--stage final --shard K/N` (the final stage refuses while any sweep run is unfinished).

Modules: spec (file format, load_plan), expand (runs, ids, shards), select (the sweep's choice), cost
(tokens and FLOPs), execute (resume, stages, selection.json), ray_backend, progress. The pure parts are
spec/expand/select/cost; execute, ray_backend and progress are the edges.
"""

from tunebench.plan.cost import RunCost, estimate_run_cost, lookup_model_size
from tunebench.plan.execute import Options, StageResult, compute_selection, run_plan, stage_status
from tunebench.plan.expand import PlannedRun, expand_final, expand_sweep, parse_shard, shard_runs
from tunebench.plan.select import select_sweep
from tunebench.plan.spec import Plan, load_plan

__all__ = [
    "Options", "Plan", "PlannedRun", "RunCost", "StageResult", "compute_selection", "estimate_run_cost",
    "expand_final", "expand_sweep", "load_plan", "lookup_model_size", "parse_shard", "run_plan",
    "select_sweep", "shard_runs", "stage_status",
]
