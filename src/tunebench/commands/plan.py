"""`tunebench plan show|run|status PLAN`: experiment plans (grids, two-stage sweeps, shards, Ray).

    tunebench plan show configs/plans/phase2a.yaml                 # grid, runs per stage, cost estimate
    tunebench plan run configs/plans/demo.yaml                      # every stage, here, resuming what exists
    tunebench plan run phase2a.yaml --stage sweep --shard 2/3       # machine 2 of 3, shared results folder
    tunebench plan run phase2a.yaml --stage final --shard 2/3       # once every shard finished the sweep
    tunebench plan run phase2a.yaml --backend ray --address auto    # one run per GPU of a Ray cluster
    tunebench plan status phase2a.yaml                              # done / failed / interrupted / pending

A plan file (details: tunebench.plan.spec; shipped plans: configs/plans/):
    name: phase2a                        # results/<name>/ (final runs, selection.json), results/<name>-sweep/
    config: [../experiments/x.yaml]      # optional; relative to the plan file
    overrides: {data.source: local}      # dotted config keys for every run
    tasks: [sst2, mrpc, rte, squad_v2]
    methods: [lora, full]
    seeds: [42, 43, 44, 45, 46]          # final-stage seeds
    grid:                                # crossed with everything; flat or per method
      lora: {training.learning_rate: [1.0e-4, 2.0e-4, 5.0e-4]}
      full: {training.full_finetune_learning_rate: [1.0e-5, 2.0e-5, 5.0e-5]}
    sweep: {seeds: [42]}                 # optional: pick each task x method's best grid point on validation
Re-running skips finished runs, retries failed ones (--no-retry-failed keeps them) and resumes interrupted
ones from their last checkpoint.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from tunebench.commands._common import add_config_args
from tunebench.plan.cost import (
    RunCost,
    format_count,
    format_flops,
    lookup_model_size,
    lora_params,
    total_cost,
)
from tunebench.plan.execute import (
    Options,
    read_results,
    read_selection,
    run_cost,
    run_plan,
    run_state,
    stage_runs,
    stage_status,
)
from tunebench.plan.expand import (
    STAGE_FINAL,
    PlannedRun,
    expand_grid_final,
    expand_sweep,
    grid_points,
    parse_shard,
    shard_runs,
)
from tunebench.plan.spec import Plan, load_plan

CONVENTIONS = (
    "tokens = train examples x epochs x mean tokens/example (table for official data, measured for "
    "builtin; max_steps x batch x accumulation when set); FLOPs = 6N/token for full fine-tuning, 4N + 6A "
    "for LoRA (A = adapter parameters), +2N with gradient checkpointing; N = non-embedding parameters; "
    "evaluation not counted; H100-h at 40% of 989 TFLOP/s (a lower bound on time: small batches reach less)"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="experiment plans: grids, two-stage sweeps, shards, Ray",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="plan_verb", metavar="ACTION", required=True)

    show = verbs.add_parser("show", help="print the grid, the runs per stage and their estimated cost")
    _add_plan_args(show)
    show.set_defaults(func=_show)

    run = verbs.add_parser("run", help="run a plan's stages, skipping finished runs and resuming interrupted ones")
    _add_plan_args(run)
    run.add_argument("--stage", choices=("sweep", "final", "all"), default="all",
                     help="sweep: every grid point on the sweep seeds; final: the selected setting on the final "
                     "seeds (needs the whole sweep); all (default): both in order")
    run.add_argument("--shard", metavar="K/N", help="run only shard K of N (1-based) of each stage's runs; "
                     "every machine takes one K over a shared output_dir")
    run.add_argument("--backend", choices=("local", "ray"), default="local",
                     help="local: one run after another here; ray: one run per GPU (or CPU) of a Ray cluster")
    run.add_argument("--address", help="Ray cluster address (default: start or join a local one)")
    run.add_argument("--no-retry-failed", dest="retry_failed", action="store_false",
                     help="keep runs whose metrics.json says failed instead of running them again")
    run.add_argument("--dry-run", action="store_true", help="list what would run, run nothing")
    run.add_argument("--runner", help=argparse.SUPPRESS)  # module:function standing in for the runner (tests)
    run.set_defaults(func=_run)

    status = verbs.add_parser("status", help="count done, failed, interrupted and pending runs per stage")
    _add_plan_args(status)
    status.add_argument("--shard", metavar="K/N", help="only shard K of N")
    status.set_defaults(func=_status)


def _add_plan_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", metavar="PLAN", help="plan file (YAML), e.g. configs/plans/demo.yaml")
    add_config_args(parser)


def _load(args: argparse.Namespace) -> Plan:
    return load_plan(args.plan, args.config, args.overrides)


# ---------------------------------------------------------------- show


def _show(args: argparse.Namespace) -> int:
    plan = _load(args)
    print("\n".join(describe_plan(plan)))
    return 0


def describe_plan(plan: Plan) -> list[str]:
    lines = [f"plan {plan.name} ({plan.path})" + (f": {plan.description}" if plan.description else ""),
             f"results: {plan.output_dir}" + (f" (sweep runs: {plan.output_dir}-sweep)" if plan.two_stage else ""),
             f"tasks: {', '.join(plan.tasks)}; methods: {', '.join(plan.methods)}",
             *_model_lines(plan), "grid:"]
    for method in plan.methods:
        axes = plan.grid[method]
        points = len(grid_points(axes))
        text = "; ".join(f"{k}: {v}" for k, v in axes.items()) or "(base setting only)"
        lines.append(f"  {method}: {text}  -> {points} setting{'s' if points > 1 else ''}")
    lines += _stage_lines(plan)
    lines.append(f"conventions: {CONVENTIONS}")
    if plan.two_stage:
        lines.append("order: every shard runs --stage sweep; then --stage final once they all finished; "
                     f"then `tunebench report {plan.output_dir}` (phase 2b: the analysis)")
    return lines


def _model_lines(plan: Plan) -> list[str]:
    model = plan.base.model
    size = lookup_model_size(model)
    if size is None:
        return [f"model: {model.name}: size unknown (not tiny, no local config.json, not in the known-models "
                "table): FLOPs are not estimated"]
    total = f"{size.total:,} parameters, " if size.total is not None else ""
    lines = [f"model: {model.name}: {total}{size.non_embedding:,} non-embedding (N) [{size.source}]"]
    if "lora" in plan.methods:
        adapters = lora_params(size, plan.base.lora)
        lines.append(f"  LoRA r={plan.base.lora.r} on {len(plan.base.lora.target_modules)} projections: "
                     f"{adapters:,} adapter parameters (A) at the base setting")
    return lines


def _stage_lines(plan: Plan) -> list[str]:
    lines = ["stages:"]
    if plan.two_stage:
        sweep = expand_sweep(plan)
        lines += _cost_block(f"sweep (seeds {list(plan.sweep_seeds or ())}, validation picks the setting)",
                             sweep, [run_cost(r.cfg) for r in sweep])
        final_slots = _costliest_per_slot(expand_grid_final(plan))
        lines += _cost_block(f"final (seeds {list(plan.seeds)}, the selected setting; cost of the costliest "
                             "candidate)", *final_slots)
        total = total_cost([run_cost(r.cfg) for r in sweep] + final_slots[1])
        lines.append(f"  total: {len(sweep) + len(final_slots[0])} runs, {format_count(total.train_tokens)} "
                     f"tokens, {format_flops(total.flops)}")
    else:
        final = expand_grid_final(plan)
        lines += _cost_block(f"final (seeds {list(plan.seeds)}, every setting)", final,
                             [run_cost(r.cfg) for r in final])
    return lines


def _costliest_per_slot(runs: list[PlannedRun]) -> tuple[list[PlannedRun], list[RunCost]]:
    """Before the sweep, a final run's setting is unknown: per task x method x seed, its costliest candidate."""
    best: dict[tuple, tuple[PlannedRun, RunCost]] = {}
    for r in runs:
        cost = run_cost(r.cfg)
        key = (r.task, r.method, r.seed)
        if key not in best or cost.weight > best[key][1].weight:
            best[key] = (r, cost)
    return [v[0] for v in best.values()], [v[1] for v in best.values()]


def _cost_block(title: str, runs: list[PlannedRun], costs: list[RunCost]) -> list[str]:
    total = total_cost(costs)
    lines = [f"  {title}: {len(runs)} runs, {format_count(total.train_tokens)} tokens, {format_flops(total.flops)}"]
    groups: dict[tuple[str, str], list[RunCost]] = defaultdict(list)
    for r, c in zip(runs, costs, strict=True):
        groups[(r.task, r.method)].append(c)
    for (task, method), group in groups.items():
        t = total_cost(group)
        per_run = group[0]
        lines.append(f"    {task:<9} {method:<5} {len(group):>3} run{'s' if len(group) > 1 else ' '} x "
                     f"{per_run.train_examples:,} examples: "
                     f"{format_count(t.train_tokens)} tokens, {format_flops(t.flops)}")
    return lines


# ---------------------------------------------------------------- run


def _run(args: argparse.Namespace) -> int:
    plan = _load(args)
    shard = parse_shard(args.shard) if args.shard else None
    if args.dry_run:
        return _dry_run(plan, args.stage, shard)
    options = Options(backend=args.backend, address=args.address, retry_failed=args.retry_failed,
                      run_fn=args.runner, shard=shard)
    results = run_plan(plan, args.stage, options)
    failed = 0
    for stage in results:
        n_failed = len(stage.failed)
        failed += n_failed
        print(f"{stage.stage}: {len(stage.runs)} runs, {len(stage.ran)} run now, {n_failed} not ok"
              + (f"; {stage.note}" if stage.note else ""))
    if any(s.stage == STAGE_FINAL for s in results) and plan.two_stage:
        print("\n".join(describe_selection(read_selection(plan) or {})))
    if any(s.stage == STAGE_FINAL for s in results) and not failed:
        print(f"next: tunebench report {plan.output_dir}")
    return 1 if failed else 0


def _dry_run(plan: Plan, stage: str, shard: tuple[int, int] | None) -> int:
    for s in plan.stages if stage == "all" else (stage,):
        runs = stage_runs(plan, s, write=False)
        runs = shard_runs(runs, *shard) if shard else runs
        results = read_results(runs)
        print(f"{s}: {len(runs)} runs")
        for r in runs:
            print(f"  {run_state(results[r.run_id]):<11} {r.run_id}  {r.overrides or ''}")
    return 0


def describe_selection(selection: dict) -> list[str]:
    lines = ["selection (best mean validation value over the sweep seeds):"] if selection else []
    for task, by_method in selection.items():
        for method, entry in by_method.items():
            lines.append(f"  {task:<9} {method:<5} {entry['overrides']}  {entry['primary_metric']} "
                         f"{entry['validation_value']:.4g} (of {len(entry['candidates'])} candidates)")
    return lines


# ---------------------------------------------------------------- status


def _status(args: argparse.Namespace) -> int:
    plan = _load(args)
    shard = parse_shard(args.shard) if args.shard else None
    for stage in plan.stages:
        s = stage_status(plan, stage, shard)
        if s["runs"] is None:
            print(f"{stage}: waiting ({s['note']})")
            continue
        print(f"{stage}: {s['runs']} runs: {s['done']} done, {s['failed']} failed, {s['interrupted']} interrupted, "
              f"{s['pending']} pending")
    if plan.two_stage:
        print("\n".join(describe_selection(read_selection(plan) or {})) or "selection: not written yet")
    return 0

