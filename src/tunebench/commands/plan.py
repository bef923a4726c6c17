"""`tunebench plan show|run|status PLAN`: experiment plans (grids, two-stage sweeps, shards, Ray).

    tunebench plan show configs/plans/phase2a.yaml                 # grid, runs per stage, cost, GPU memory
    tunebench plan show phase2a.yaml --measured gpu_check.json      # GPU-hours at the MFU the GPU check measured
    tunebench plan run configs/plans/demo.yaml                      # every stage, here, resuming what exists
    tunebench plan run phase2a.yaml --stage sweep --shard 2/3       # machine 2 of 3, shared results folder
    tunebench plan run phase2a.yaml --stage final --shard 2/3       # once every shard finished the sweep
    tunebench plan run phase2a.yaml --backend ray --address auto    # one run per GPU of a Ray cluster
    tunebench plan status phase2a.yaml                              # done / failed / running / interrupted / pending
    tunebench plan seeds phase2a.yaml                               # seeds each task needs to show equivalence

A plan file (details: tunebench.plan.spec; shipped plans: configs/plans/):
    name: phase2a                        # results/<name>/ (final runs, selection.json), results/<name>-sweep/
    config: [../experiments/x.yaml]      # optional; relative to the plan file
    overrides: {data.source: local}      # dotted config keys for every run
    task_overrides:                      # optional: for one task's runs only
      squad_v2: {training.max_steps: 600}
    tasks: [sst2, mrpc, rte, squad_v2]
    methods: [lora, full]
    seeds: [42, 43, 44, 45, 46]          # final-stage seeds
    task_seeds: {rte: [42, 43, 44]}      # optional: one task's own final seeds
    arms:                                # or instead of methods (not both): named arms, each against the reference
      full: {method: full}
      dora_r16: {method: lora, lora.use_dora: true}
    reference: full                      # default: full fine-tuning
    grid:                                # crossed with everything; flat or per method
      lora: {training.learning_rate: [1.0e-4, 2.0e-4, 5.0e-4]}
      full: {training.full_finetune_learning_rate: [1.0e-5, 2.0e-5, 5.0e-5]}
    sweep: {seeds: [42]}                 # optional: pick each task x method's best grid point on validation
Re-running skips finished runs, retries failed ones (--no-retry-failed keeps them) and resumes interrupted
ones from their last checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunebench.arms import arm_label
from tunebench.commands import plan_seeds
from tunebench.commands._common import add_config_args, shipped_plan
from tunebench.config import Config
from tunebench.errors import TunebenchError
from tunebench.plan.cost import (
    ASSUMED,
    ModelSize,
    RunCost,
    Utilization,
    format_count,
    format_flops,
    load_measured,
    lookup_model_size,
    lora_params,
    total_cost,
)
from tunebench.plan.execute import (
    Options,
    costliest_per_slot,
    read_selection,
    run_cost,
    run_plan,
    shown_states,
    stage_runs,
    stage_status,
)
from tunebench.plan.expand import (
    STAGE_FINAL,
    PlannedRun,
    build_run,
    expand_grid_final,
    expand_sweep,
    grid_points,
    parse_shard,
    shard_runs,
)
from tunebench.plan.reuse import reused_seeds
from tunebench.plan.spec import Plan, load_plan

CONVENTIONS = (
    "tokens = train examples x epochs x mean tokens/example (table for official data, measured for "
    "builtin; max_steps x batch x accumulation when set); FLOPs/token (the benchmark's convention, "
    "tunebench.bench) = 6N + 12LdT for full fine-tuning, 4N + 6A + 12LdT for LoRA (N = non-embedding "
    "weights + head, A = adapters + head, L layers, d hidden, T = mean tokens/example: batches are "
    "length-grouped with dynamic padding), + 2N + 4LdT with gradient checkpointing; evaluation not counted"
)
MEMORY_CONVENTIONS = (
    "per-device batch x max_length (the longest batch); weights, gradients and optimizer state "
    "exact under the precision policy (tunebench.precision; auto = bf16-mixed on a GPU); copies = autocast's "
    "bf16 copies of fp32 weights; activations estimated; peak = weights + optimizer + the larger of the "
    "forward's (copies + activations) and the backward's (gradients) holdings, all of them with gradient "
    "accumulation (tunebench.plan.memory); fits = peak + 1 GiB reserve within a 24 GB (22.5 GiB usable), "
    "40 GB or 80 GB GPU"
)


if TYPE_CHECKING:        # the memory estimator needs torch; building the CLI parser imports none
    from tunebench.plan.memory import MemoryEstimate


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="experiment plans: grids, two-stage sweeps, shards, Ray",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="plan_verb", metavar="ACTION", required=True)

    show = verbs.add_parser("show", help="print the grid, the runs per stage, their estimated cost and GPU memory")
    _add_plan_args(show)
    show.add_argument("--measured", metavar="FILE",
                      help="GPU-hours at the MFU measured per method by `tunebench bench --gpu-check` (its JSON: "
                      "summary: {method: {mfu, tokens_per_s, device_name}}) instead of an assumed 40%% on an "
                      "H100; measure with the plan's gradient_checkpointing setting")
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

    status = verbs.add_parser("status", help="count done, failed, interrupted, running and pending runs per "
                              "stage (and the final runs to copy from the sweep)")
    _add_plan_args(status)
    status.add_argument("--shard", metavar="K/N", help="only shard K of N")
    status.set_defaults(func=_status)
    plan_seeds.register(verbs)       # `plan seeds`: how many seeds each task's equivalence test needs


def _add_plan_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", metavar="PLAN", type=shipped_plan,
                        help="plan file (YAML) or a shipped plan's name, e.g. phase2a (tunebench config list)")
    add_config_args(parser)


def _load(args: argparse.Namespace) -> Plan:
    return load_plan(args.plan, args.config, args.overrides)


# ---------------------------------------------------------------- show


def _show(args: argparse.Namespace) -> int:
    plan = _load(args)
    utilization = load_measured(args.measured) if args.measured else ASSUMED
    for method in plan.methods if utilization.measured else ():
        utilization.for_method(method)            # every planned method measured, or one line now
    print("\n".join(describe_plan(plan, utilization)))
    return 0


def describe_plan(plan: Plan, utilization: Utilization = ASSUMED) -> list[str]:
    lines = [f"plan {plan.name} ({plan.path})" + (f": {plan.description}" if plan.description else ""),
             f"results: {plan.output_dir}" + (f" (sweep runs: {plan.output_dir}-sweep)" if plan.two_stage else ""),
             f"tasks: {', '.join(plan.tasks)}; {_arms_text(plan)}",
             *_model_lines(plan),
             *(f"  {task} only: " + ", ".join(f"{k}={v}" for k, v in updates.items())
               for task, updates in plan.task_overrides.items()),
             "grid:"]
    for arm in plan.arms:
        axes = plan.grid[arm.name]
        points = len(grid_points(axes))
        text = "; ".join(f"{k}: {v}" for k, v in axes.items()) or "(base setting only)"
        lines.append(f"  {arm.name}: {text}  -> {points} setting{'s' if points > 1 else ''}")
    lines += _stage_lines(plan, utilization)
    lines.append(f"conventions: {CONVENTIONS}; {utilization.describe()}")
    lines += _memory_lines(plan)
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
    if "lora" in plan.methods and not plan.named_arms:
        adapters = lora_params(size, plan.base.lora)
        lines.append(f"  LoRA r={plan.base.lora.r} on {len(plan.base.lora.target_modules)} projections: "
                     f"{adapters:,} adapter parameters at the base setting")
    for arm in plan.arms if plan.named_arms else ():
        if arm.method == "lora":
            lora = arm_config(plan, arm.name).lora
            lines.append(f"  {arm.name} ({arm_label('lora', lora.model_dump())}) on {len(lora.target_modules)} "
                         f"projections: {lora_params(size, lora):,} adapter parameters")
    return lines


def _arms_text(plan: Plan) -> str:
    """"methods: lora, full", or with named arms "arms: full (reference), lora_r8 (LoRA r=8), ..."."""
    if not plan.named_arms:
        return f"methods: {', '.join(plan.methods)}"
    names = []
    for arm in plan.arms:
        label = arm_label(arm.method, arm_config(plan, arm.name).lora.model_dump())
        names.append(f"{arm.name} ({'reference' if arm.name == plan.reference else label})")
    return f"arms: {', '.join(names)}"


def arm_config(plan: Plan, arm: str) -> Config:
    """The config of one of the arm's runs (its settings over the plan's base): what defines the arm."""
    return build_run(plan, "final", plan.tasks[0], arm, plan.seeds[0], {}).cfg


def _stage_lines(plan: Plan, utilization: Utilization) -> list[str]:
    lines = ["stages:"]
    if plan.two_stage:
        sweep = expand_sweep(plan)
        sweep_costs = [run_cost(r.cfg) for r in sweep]
        lines += _cost_block(f"sweep (seeds {list(plan.sweep_seeds or ())}, validation picks the setting)",
                             sweep, sweep_costs, utilization)
        reused = set(reused_seeds(plan))     # the selected setting's sweep runs, copied (tunebench.plan.reuse)
        final_runs, final_costs = costliest_per_slot([r for r in expand_grid_final(plan) if r.seed not in reused])
        copied = f"; seeds {sorted(reused)} copied from the sweep, not trained again" if reused else ""
        lines += _cost_block(f"final (seeds {plan.seeds_text()}, the selected setting{copied}; cost of the "
                             "costliest candidate)", final_runs, final_costs, utilization)
        runs, costs = sweep + final_runs, sweep_costs + final_costs
        total = total_cost(costs)
        lines.append(f"  total: {len(runs)} runs, {format_count(total.train_tokens)} tokens, "
                     f"{format_flops(total.flops, _hours(runs, costs, utilization), utilization.unit())}")
    else:
        final = expand_grid_final(plan)
        lines += _cost_block(f"final (seeds {plan.seeds_text()}, every setting)", final,
                             [run_cost(r.cfg) for r in final], utilization)
    return lines


def _hours(runs: list[PlannedRun], costs: list[RunCost], utilization: Utilization) -> float | None:
    """GPU-hours of runs: each at its method's MFU (None when any run's FLOPs are unknown)."""
    hours = [utilization.hours(c, r.method, r.task) for r, c in zip(runs, costs, strict=True)]
    return None if any(h is None for h in hours) else sum(hours)


def _cost_block(title: str, runs: list[PlannedRun], costs: list[RunCost],
                utilization: Utilization = ASSUMED) -> list[str]:
    total = total_cost(costs)
    unit = utilization.unit()
    lines = [f"  {title}: {len(runs)} runs, {format_count(total.train_tokens)} tokens, "
             f"{format_flops(total.flops, _hours(runs, costs, utilization), unit)}"]
    groups: dict[tuple[str, str], list[tuple[PlannedRun, RunCost]]] = defaultdict(list)
    for r, c in zip(runs, costs, strict=True):
        groups[(r.task, r.arm)].append((r, c))
    width = max([5, *(len(arm) for _, arm in groups)])
    for (task, arm), group in groups.items():
        g_runs, g_costs = [r for r, _ in group], [c for _, c in group]
        t = total_cost(g_costs)
        lines.append(f"    {task:<9} {arm:<{width}} {len(group):>3} run{'s' if len(group) > 1 else ' '} x "
                     f"{_run_length(g_costs[0])}: {format_count(t.train_tokens)} tokens, "
                     f"{format_flops(t.flops, _hours(g_runs, g_costs, utilization), unit)}")
    return lines


def _run_length(cost: RunCost) -> str:
    """What sets a run's length: training.max_steps (steps of batch x accumulation examples; SQuAD v2: windows)
    when set, else its training examples (epochs apart)."""
    if cost.max_steps:
        return f"{cost.max_steps:,} steps of {cost.step_examples:,}"
    return f"{cost.train_examples:,} examples"


# ---------------------------------------------------------------- memory


def _memory_lines(plan: Plan) -> list[str]:
    """Peak GPU memory per distinct run shape of the plan, at each precision (the plan's marked *)."""
    from tunebench.plan.memory import fits_text, format_gib

    size = lookup_model_size(plan.base.model)
    if size is None or size.vocab is None:
        return ["memory: not estimated (model size or vocabulary unknown)"]
    runs = expand_sweep(plan) + expand_grid_final(plan) if plan.two_stage else expand_grid_final(plan)
    rows = memory_rows([r.cfg for r in runs], size)
    header = (f"  {'tasks':<16} {'method':<9} {'precision':<12} {'b x len':>8}  {'weights':>7} {'grads':>6} "
              f"{'optim':>6} | no checkpointing: {'copies':>6} {'activ.':>6} {'peak':>6} {'24/40/80 GB':<11} "
              f"| checkpointing: {'copies':>6} {'activ.':>6} {'peak':>6} 24/40/80 GB")
    lines = ["memory per GPU, GiB (each run shape at each precision; * = the plan's; conventions below):", header]
    for row in rows:
        e = row.estimate
        lines.append(
            f"  {' '.join(row.tasks):<16} {row.method:<9} {row.precision + ('*' if row.planned else ''):<12} "
            f"{f'{row.batch} x {row.max_length}':>8}  {format_gib(e.weights):>7} {format_gib(e.gradients):>6} "
            f"{format_gib(e.optimizer):>6} | {'':17} {format_gib(e.weight_copies):>6} "
            f"{format_gib(e.activations):>6} {format_gib(e.peak(False)):>6} {fits_text(e, False):<11} "
            f"| {'':14} {format_gib(e.weight_copies_checkpointed):>6} {format_gib(e.activations_checkpointed):>6} "
            f"{format_gib(e.peak(True)):>6} {fits_text(e, True)}")
    return [*lines, f"memory conventions: {MEMORY_CONVENTIONS}"]


@dataclass(frozen=True)
class MemoryRow:
    tasks: tuple[str, ...]
    method: str               # "lora r16" for LoRA; a named arm's name (tunebench.arms)
    precision: str
    planned: bool             # the plan's own precision (resolved on a GPU)
    batch: int
    max_length: int
    estimate: MemoryEstimate


def memory_rows(cfgs: list[Config], size: ModelSize) -> list[MemoryRow]:
    """One row per distinct run shape (method, LoRA setting, batch, max_length, optimizer) x precision, tasks
    whose estimates are equal merged into one row; every precision the config's model.dtype allows."""
    from tunebench.plan.memory import estimate_memory
    from tunebench.precision import PRECISIONS, build_policy, resolve_precision

    found: dict[tuple, tuple[list[str], MemoryRow]] = {}
    for cfg in cfgs:
        t, lora = cfg.training, cfg.lora
        planned = resolve_precision(t.precision, "cuda")
        for precision in PRECISIONS:
            try:
                policy = build_policy(precision, cfg.model.dtype, "cuda")
            except TunebenchError:
                continue                       # not allowed with this model.dtype
            est = estimate_memory(size, cfg.method, lora, cfg.task, policy, t.optim, t.per_device_train_batch_size,
                                  cfg.model.max_length, t.gradient_accumulation_steps)
            method = (cfg.arm if cfg.arm else f"lora r{lora.r}" if cfg.method == "lora" else cfg.method)
            row = MemoryRow((), method, precision, precision == planned, t.per_device_train_batch_size,
                            cfg.model.max_length, est)
            tasks, _ = found.setdefault(dataclasses.astuple(row)[1:], ([], row))
            if cfg.task not in tasks:
                tasks.append(cfg.task)
    return [dataclasses.replace(row, tasks=tuple(tasks)) for tasks, row in found.values()]


# ---------------------------------------------------------------- run


def _run(args: argparse.Namespace) -> int:
    plan = _load(args)
    shard = parse_shard(args.shard) if args.shard else None
    if args.dry_run:
        return _dry_run(plan, args.stage, shard, args.retry_failed)
    options = Options(backend=args.backend, address=args.address, retry_failed=args.retry_failed,
                      run_fn=args.runner, shard=shard)
    if args.backend == "local" and args.runner is None:
        check_machine(plan)
    results = run_plan(plan, args.stage, options)
    failed = 0
    for stage in results:
        n_failed = len(stage.failed)
        failed += n_failed
        reused = f" ({len(stage.reused)} reused from the sweep)" if stage.reused else ""
        print(f"{stage.stage}: {len(stage.runs)} runs, {len(stage.ran)} run now{reused}, {n_failed} not ok"
              + (f"; {stage.note}" if stage.note else ""))
    if any(s.stage == STAGE_FINAL for s in results) and plan.two_stage:
        print("\n".join(describe_selection(read_selection(plan) or {})))
    if any(s.stage == STAGE_FINAL for s in results) and not failed:
        print(f"next: tunebench report {plan.output_dir}")
    return 1 if failed else 0


def check_machine(plan: Plan) -> None:
    """What this machine cannot run (precision, speed switches, the tracker), refused in one line before any
    run starts, for every configuration the plan may run here (a Ray cluster's workers are checked by theirs)."""
    from tunebench.model import resolve_device
    from tunebench.tracking import check_backend
    from tunebench.train import check_switches

    device = resolve_device()
    for run in expand_grid_final(plan) + (expand_sweep(plan) if plan.two_stage else []):
        check_switches(run.cfg, device)
        check_backend(run.cfg)


def _dry_run(plan: Plan, stage: str, shard: tuple[int, int] | None, retry_failed: bool = True) -> int:
    for s in plan.stages if stage == "all" else (stage,):
        runs = stage_runs(plan, s, write=False)
        runs = shard_runs(runs, *shard) if shard else runs
        states, copies = shown_states(plan, s, runs, retry_failed)
        print(f"{s}: {len(runs)} runs" + (f" ({len(copies)} to copy from the sweep, not train)" if copies else ""))
        for r in runs:
            state = "copy" if r.run_id in copies else states[r.run_id]
            print(f"  {state:<11} {r.run_id}  {r.overrides or ''}")
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
        copies = f" ({s['to_copy']} to copy from the sweep)" if s["to_copy"] else ""
        running = f", {s['running']} running" if s["running"] else ""
        print(f"{stage}: {s['runs']} runs: {s['done']} done, {s['failed']} failed{running}, {s['interrupted']} "
              f"interrupted, {s['pending']} pending{copies}")
    if plan.two_stage:
        print("\n".join(describe_selection(read_selection(plan) or {})) or "selection: not written yet")
    return 0

