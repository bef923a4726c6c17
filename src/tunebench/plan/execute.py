"""Running a plan (the side-effect edge): what is left to do, resume, the two stages and selection.json.

Resume rule, from each run's metrics.json alone (so it holds across machines and after kill -9):
  ok               -> done, skipped
  failed           -> run again (resume=True), unless retry_failed is off
  running          -> interrupted: run again with resume=True from its last checkpoint; if another process
                      is in fact still running it (its run folder's lock is held), the runner leaves it alone
                      and reports it running
  interrupted      -> (stopped by SIGINT or SIGTERM) run again with resume=True from its last checkpoint
  no metrics.json  -> pending
The list of runs to do is read at the start; each run's state is read again once its lock is taken, right
before the run function is called (tunebench.plan.run_fn.call_run_fn), so that two launches over one results
folder (a plan restarted while an earlier launch still runs, one launch per GPU, overlapping shards) train
each run once: a run another launch finished meanwhile is not run again, and one it holds is `busy` -- left
to it, and neither failed nor run here (StageResult.busy).
Reuse: in a two-stage plan's final stage, a run left to do whose id is that of an ok sweep run (a final seed
that is also a sweep seed, at the selected setting: the same computation) is not trained again: the sweep
run's folder is copied into place (tunebench.plan.reuse; metrics.json says `reused_from`), on this machine
before anything is dispatched (with --shard, by the shard that owns the final run; with Ray, on the driver).
A reused run is not logged to the tracker (W&B) again.
`plan status` and `plan run --dry-run` show a run that says running as `running` when a process on this machine
holds its lock now (tunebench.system.live_holder: read, not taken), and the final runs to be copied as `copy`.
A run stopped by SIGINT or SIGTERM stops the plan (tunebench.runner.RunInterrupted goes up to the CLI: one
line, exit code 130 or 143). Nothing here writes into a run folder except the run function and that copy;
selection.json is written atomically.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tunebench.config import Config
from tunebench.errors import TunebenchError
from tunebench.io import atomic_write_json
from tunebench.plan.cost import RunCost, estimate_run_cost, lookup_model_size, tokens_per_example
from tunebench.plan.expand import STAGE_FINAL, STAGE_SWEEP, PlannedRun, expand_final, expand_sweep, shard_runs
from tunebench.plan.progress import Board, Progress, RunRow, make_progress
from tunebench.plan.reuse import reuse_run, reuse_sources, source_label
from tunebench.plan.run_fn import (
    DONE,
    FAILED,
    INTERRUPTED,
    LEFT_ALONE,
    PENDING,
    RunFn,
    call_run_fn,
    left_alone,
    resolve_run_fn,
    run_state,
    should_run,
    show_result,
)
from tunebench.plan.select import select_sweep, unresolved
from tunebench.plan.spec import Plan
from tunebench.results import SELECTION_FILE, STATUS_OK, STATUS_RUNNING, read_metrics
from tunebench.system import live_holder

# A run's state as the executor sees it (from metrics.json): DONE, FAILED, INTERRUPTED, PENDING (run_fn.run_state)
RUNNING = "running"     # shown only: says running and a process on this machine holds its lock now (live_run)


@dataclass
class Options:
    backend: str = "local"                 # local | ray
    address: str | None = None             # Ray cluster address (None: start or join a local one)
    retry_failed: bool = True
    run_fn: RunFn | str | None = None      # a function, "module:function", or None for tunebench.runner.run_one
    shard: tuple[int, int] | None = None   # (K, N), 1-based
    stream: IO[str] | None = None          # progress output (default stdout)
    live: bool | None = None               # live table; None: when the stream is a terminal


@dataclass
class StageResult:
    stage: str
    runs: list[PlannedRun]
    results: dict[str, dict | None]        # run_id -> metrics after the stage (None: never started)
    ran: list[str] = field(default_factory=list)      # taken on in this launch: trained or copied
    note: str = ""
    trained: list[str] = field(default_factory=list)  # of `ran`: the run function was called
    reused: list[str] = field(default_factory=list)   # of `ran`: copied from an ok sweep run (the copy ok)
    busy: list[str] = field(default_factory=list)     # left to another process that held them (not in `ran`)

    @property
    def failed(self) -> list[str]:
        """Runs not ok after the stage, but for those another process is still running (busy)."""
        return [r.run_id for r in self.runs if run_state(self.results.get(r.run_id)) != DONE
                and (self.results.get(r.run_id) or {}).get("status") != STATUS_RUNNING]


# ---------------------------------------------------------------- states


def read_results(runs: list[PlannedRun]) -> dict[str, dict | None]:
    return {r.run_id: read_metrics(r.run_dir) for r in runs}


@functools.lru_cache(maxsize=32)
def _model_size(model_json: str):
    from tunebench.config import ModelConfig

    return lookup_model_size(ModelConfig.model_validate_json(model_json))


def run_cost(cfg: Config) -> RunCost:
    """The estimate for one run, with the model size and tokens per example looked up (cached)."""
    return estimate_run_cost(cfg, _model_size(cfg.model.model_dump_json()), tokens_per_example(cfg))


def costliest_per_slot(runs: list[PlannedRun]) -> tuple[list[PlannedRun], list[RunCost]]:
    """Before the sweep, a final run's setting is unknown: per task x arm x seed, its costliest candidate."""
    best: dict[tuple, tuple[PlannedRun, RunCost]] = {}
    for r in runs:
        cost = run_cost(r.cfg)
        key = (r.task, r.arm, r.seed)
        if key not in best or cost.weight > best[key][1].weight:
            best[key] = (r, cost)
    return [v[0] for v in best.values()], [v[1] for v in best.values()]


# ---------------------------------------------------------------- stages


def stage_runs(plan: Plan, stage: str, write: bool = True) -> list[PlannedRun]:
    """A stage's runs. The final stage of a two-stage plan first selects (and writes selection.json)."""
    if stage == STAGE_SWEEP:
        if not plan.two_stage:
            raise TunebenchError(f"{plan.path}: the plan has no `sweep:` section; use --stage final (or all)")
        return expand_sweep(plan)
    if stage != STAGE_FINAL:
        raise TunebenchError(f"unknown stage {stage!r}; choose sweep, final or all")
    if not plan.two_stage:
        return expand_final(plan)
    selection = compute_selection(plan)
    if write:
        write_selection(plan, selection)
    return expand_final(plan, selection)


def sweep_rows(runs: list[PlannedRun], results: dict[str, dict | None]) -> tuple[list[dict], list[PlannedRun]]:
    """Finished sweep runs as selection input (metrics + the plan's view of the run), and unfinished ones."""
    rows, missing = [], []
    for r in runs:
        metrics = results.get(r.run_id)
        if run_state(metrics) in (PENDING, INTERRUPTED):
            missing.append(r)
            continue
        rows.append({**(metrics or {}), "run_id": r.run_id, "task": r.task, "method": r.method, "arm": r.arm,
                     "seed": r.seed, "overrides": r.overrides, "learning_rate": r.cfg.learning_rate})
    return rows, missing


def compute_selection(plan: Plan) -> dict[str, dict[str, dict]]:
    """The sweep's choice per task and arm; refuses while any sweep run (on any shard) is unfinished."""
    runs = expand_sweep(plan)
    rows, missing = sweep_rows(runs, read_results(runs))
    if missing:
        m = missing[0]
        raise TunebenchError(
            f"{plan.path}: the final stage needs every sweep result: {len(missing)} of {len(runs)} sweep runs "
            f"are not finished (e.g. {m.run_dir}); run `tunebench plan run {plan.path} --stage sweep` "
            "(on every shard) first")
    selection = select_sweep(rows)
    for task, arm, reasons in unresolved(selection):
        raise TunebenchError(f"{plan.path}: every sweep candidate of {task}/{arm} failed "
                             f"({reasons[0] if reasons else 'no reason'}); fix it and re-run --stage sweep")
    return selection


def write_selection(plan: Plan, selection: dict) -> Path:
    return atomic_write_json(plan.output_dir / SELECTION_FILE, selection)


def read_selection(plan: Plan) -> dict | None:
    try:
        return json.loads((plan.output_dir / SELECTION_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# ---------------------------------------------------------------- execution


def run_plan(plan: Plan, stage: str = "all", options: Options | None = None) -> list[StageResult]:
    """Run the plan's stages (or one); with a shard, only this shard's share of each stage."""
    opts = options or Options()
    if stage == "all" and opts.shard and plan.two_stage and opts.shard[1] > 1:
        raise TunebenchError(
            f"{plan.path}: a two-stage plan on shards runs one stage at a time: `--stage sweep` on every shard, "
            "then `--stage final` once they are all done (the selection needs every sweep result)")
    stages = plan.stages if stage == "all" else (stage,)
    return [run_stage(plan, s, opts) for s in stages]


def run_stage(plan: Plan, stage: str, opts: Options) -> StageResult:
    runs = stage_runs(plan, stage)
    if opts.shard:
        runs = shard_runs(runs, *opts.shard)
    title = stage if not opts.shard else f"{stage} {opts.shard[0]}/{opts.shard[1]}"
    sweep = expand_sweep(plan) if stage == STAGE_FINAL and plan.two_stage else []
    result = execute_runs(runs, opts, stage, title, sweep)
    if stage == STAGE_SWEEP:
        result.note = "; ".join(n for n in (result.note, _after_sweep(plan)) if n)
    return result


def _after_sweep(plan: Plan) -> str:
    """Write selection.json once the whole sweep (every shard) is finished; otherwise say what remains."""
    try:
        selection = compute_selection(plan)
    except TunebenchError as e:
        return f"selection not written: {e}"
    path = write_selection(plan, selection)
    return f"selection written to {path}"


def execute_runs(runs: list[PlannedRun], opts: Options, stage: str = "final", title: str = "",
                 sweep: list[PlannedRun] | None = None) -> StageResult:
    """Run what is left of `runs` (see the resume rule above) with progress; the stage's results after.
    A run left to do whose id is an ok run of `sweep` is copied from it instead (reused, before the rest)."""
    before = read_results(runs)
    states = {r.run_id: run_state(before[r.run_id]) for r in runs}
    todo = [r for r in runs if should_run(states[r.run_id], opts.retry_failed)]
    sources = reuse_sources(todo, sweep or [])
    train = [r for r in todo if r.run_id not in sources]
    notes = {rid: {INTERRUPTED: "resume", FAILED: "retry"}.get(s, "") for rid, s in states.items()}
    board = build_board(title or stage, runs, states, {r.run_id for r in todo}, free=set(sources))
    run_fn = opts.run_fn if opts.backend == "ray" else resolve_run_fn(opts.run_fn)
    if opts.backend not in ("local", "ray"):
        raise TunebenchError(f"unknown backend {opts.backend!r}; choose local or ray")
    with make_progress(board, opts.stream, opts.live) as progress:
        got = reuse_local([r for r in todo if r.run_id in sources], sources, progress)
        if opts.backend == "ray":
            from tunebench.plan.ray_backend import run_on_ray

            got |= run_on_ray(train, run_fn, progress, address=opts.address, notes=notes,
                              retry_failed=opts.retry_failed)
        else:
            got |= run_local(train, run_fn, progress, notes, opts.retry_failed)
    after = {**before, **read_results(todo)}
    for rid, metrics in got.items():  # a run whose folder holds nothing newer: keep what the runner returned
        if after.get(rid) is None or after[rid].get("status") == STATUS_RUNNING:
            after[rid] = {k: v for k, v in metrics.items() if k != LEFT_ALONE}
    reused = [rid for rid in sources if got[rid].get("status") == STATUS_OK]
    busy = [r.run_id for r in todo if got[r.run_id].get("status") == STATUS_RUNNING]
    return StageResult(stage, runs, after, ran=[r.run_id for r in todo if not left_alone(got[r.run_id])],
                       trained=[r.run_id for r in train if not left_alone(got[r.run_id])], reused=reused,
                       busy=busy, note=busy_note([rid for rid in busy if after[rid].get("status") == STATUS_RUNNING]))


def busy_note(running: list[str]) -> str:
    """The stage's note on the busy runs another process is still running at its end."""
    if not running:
        return ""
    n = len(running)
    return (f"{n} run{'s' if n > 1 else ''} busy: left to another process that runs {'them' if n > 1 else 'it'} "
            "(`tunebench plan status` shows when done)")


def build_board(title: str, runs: list[PlannedRun], states: dict[str, str], todo: set[str],
                free: Collection[str] = ()) -> Board:
    """The progress board; runs in `free` (reused) weigh nothing, so a copy does not skew the time left."""
    rows = []
    for r in runs:
        state = states[r.run_id]
        shown = "pending" if r.run_id in todo else ("done" if state == DONE else "failed")
        weight = 0.0 if r.run_id in free else run_cost(r.cfg).weight
        rows.append(RunRow(r.run_id, f"{r.task}/{r.arm}", weight, shown, earlier=r.run_id not in todo))
    return Board(title, rows)


def reuse_local(todo: list[PlannedRun], sources: dict[str, PlannedRun], progress: Progress) -> dict[str, dict]:
    """Copy each run's ok sweep twin into place (tunebench.plan.reuse), one progress line each."""
    out: dict[str, dict] = {}
    for run in todo:
        src = sources[run.run_id]
        metrics = reuse_run(run, src)
        out[run.run_id] = metrics
        ok = metrics.get("status") == STATUS_OK
        show_result(progress, run.run_id, metrics, f"reused sweep run {source_label(src)}" if ok else None)
    return out


def run_local(todo: list[PlannedRun], run_fn: RunFn, progress: Progress, notes: dict[str, str],
              retry_failed: bool = True) -> dict[str, dict]:
    """One run after another on this machine (the runner uses whatever accelerator it finds); each shown
    started once its lock is taken and its state read again (run_fn.call_run_fn)."""
    out: dict[str, dict] = {}
    for run in todo:
        started = functools.partial(progress.started, run.run_id, notes.get(run.run_id, ""))
        metrics = call_run_fn(run_fn, run.cfg, retry_failed, on_start=started)
        out[run.run_id] = metrics
        show_result(progress, run.run_id, metrics)
    return out


# ---------------------------------------------------------------- status


def stage_status(plan: Plan, stage: str, shard: tuple[int, int] | None = None,
                 retry_failed: bool = True) -> dict[str, Any]:
    """Counts of done / failed / running / interrupted / pending runs of a stage, and `to_copy`: of those a
    `plan run` would do (with retry_failed), the final runs it would copy from the sweep instead of training
    them. Nothing is run or written."""
    try:
        runs = stage_runs(plan, stage, write=False)
    except TunebenchError as e:
        return {"stage": stage, "runs": None, "note": str(e)}
    if shard:
        runs = shard_runs(runs, *shard)
    states, copies = shown_states(plan, stage, runs, retry_failed)
    counts = dict.fromkeys((DONE, FAILED, INTERRUPTED, PENDING, RUNNING), 0)
    for state in states.values():
        counts[state] += 1
    return {"stage": stage, "runs": len(runs), **counts, "to_copy": len(copies), "note": ""}


def shown_states(plan: Plan, stage: str, runs: list[PlannedRun],
                 retry_failed: bool = True) -> tuple[dict[str, str], set[str]]:
    """What `plan status` and `plan run --dry-run` show: each run's state (run_state, or `running` when a
    process on this machine holds it now), and the ids of the runs a `plan run` would do (with retry_failed)
    that the stage copies from the sweep instead of training them. Nothing is run or written."""
    results = read_results(runs)
    states = {r.run_id: RUNNING if live_run(results[r.run_id], r) else run_state(results[r.run_id]) for r in runs}
    copies = copy_sources(plan, stage, [r for r in runs if should_run(states[r.run_id], retry_failed)])
    return states, set(copies)


def live_run(metrics: dict | None, run: PlannedRun) -> bool:
    """A run that says running and whose folder's lock a live process on this machine holds (read, not taken:
    tunebench.system.live_holder). One that says running with no such process is interrupted."""
    return bool(metrics) and metrics.get("status") == STATUS_RUNNING and live_holder(run.run_dir) is not None


def copy_sources(plan: Plan, stage: str, runs: list[PlannedRun]) -> dict[str, PlannedRun]:
    """Of `runs` (left to do), those the stage will copy from an ok sweep run instead of training them: run id
    -> the sweep run (the final stage of a two-stage plan; tunebench.plan.reuse)."""
    if stage != STAGE_FINAL or not plan.two_stage:
        return {}
    return reuse_sources(runs, expand_sweep(plan))
