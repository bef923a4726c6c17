"""`--backend ray`: one Ray task per run, one GPU each (one CPU each on a cluster without GPUs).

Workers call the same run function as the local backend and write into the same results layout; the
folder must be shared (NFS or similar) and mounted at the same path on every node, so output_dir is made
absolute on the driver. Each task returns its metrics dict to the driver too. A task whose worker dies is
retried by Ray (max_retries); the run resumes from its checkpoint like any interrupted run. A worker reads
the run's state again under its lock (run_fn.call_run_fn): a run another launch finished or holds is not run.
Ray is optional: imported only here, on use.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tunebench.config import validate_config, with_overrides
from tunebench.errors import TunebenchError
from tunebench.plan.expand import PlannedRun
from tunebench.plan.progress import Progress
from tunebench.plan.run_fn import call_run_fn, left_alone, resolve_run_fn, show_result
from tunebench.results import METRICS_FILE, STATUS_FAILED

MAX_RETRIES = 3  # worker or node deaths, not failed runs (those come back as status "failed")


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise TunebenchError("--backend ray needs Ray: pip install 'tunebench[ray]'") from None
    return ray


def task_resources(cluster: dict[str, float]) -> dict[str, float]:
    """One GPU per run when the cluster has GPUs, else one CPU per run (pure)."""
    return {"num_gpus": 1} if cluster.get("GPU", 0) >= 1 else {"num_cpus": 1}


def run_on_ray(todo: list[PlannedRun], run_fn: Any, progress: Progress, address: str | None = None,
               notes: dict[str, str] | None = None, poll_s: float = 2.0, retry_failed: bool = True) -> dict[str, dict]:
    """Submit every run, then collect them as they finish; returns run_id -> metrics."""
    if not todo:
        return {}
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here and address:
        ray.init(address=address)
    elif started_here:  # a local cluster just for this plan: no dashboard
        ray.init(include_dashboard=False)
    try:
        return _collect(ray, _submit(ray, todo, run_fn, retry_failed), progress, notes or {}, poll_s)
    finally:
        if started_here:
            ray.shutdown()


def _submit(ray: Any, todo: list[PlannedRun], run_fn: Any, retry_failed: bool) -> dict[Any, tuple[PlannedRun, float]]:
    resources = task_resources(ray.cluster_resources())
    remote = ray.remote(max_retries=MAX_RETRIES, **resources)(ray_task)
    out = {}
    for run in todo:
        cfg = with_overrides(run.cfg, {"output_dir": str(Path(run.cfg.output_dir).resolve())})
        out[remote.remote(cfg.model_dump(), run_fn, retry_failed)] = (run, time.time())
    return out


def _collect(ray: Any, pending: dict[Any, tuple[PlannedRun, float]], progress: Progress, notes: dict[str, str],
             poll_s: float) -> dict[str, dict]:
    out: dict[str, dict] = {}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=poll_s)
        for ref in ready:
            run, _submitted = pending.pop(ref)
            metrics = _result(ray, ref, run)
            out[run.run_id] = metrics
            if not left_alone(metrics):
                progress.started(run.run_id, notes.get(run.run_id, ""))  # no-op when already shown running
            show_result(progress, run.run_id, metrics)
        for run, submitted in pending.values():
            if _started_since(run, submitted):
                progress.started(run.run_id, notes.get(run.run_id, ""))
    return out


def _result(ray: Any, ref: Any, run: PlannedRun) -> dict:
    try:
        metrics = ray.get(ref)
    except ray.exceptions.RayError as e:  # the worker died MAX_RETRIES times, or the task raised
        cause = getattr(e, "cause", None)
        what = f"{type(cause).__name__}: {cause}" if cause is not None else type(e).__name__
        return {"run_id": run.run_id, "status": STATUS_FAILED, "reason": f"ray: {what}".splitlines()[0]}
    return metrics


def _started_since(run: PlannedRun, submitted: float) -> bool:
    """The runner writes metrics.json (status running) first thing: a newer file means a worker took it."""
    try:
        return os.stat(run.run_dir / METRICS_FILE).st_mtime >= submitted
    except OSError:
        return False


def ray_task(cfg_tree: dict, run_fn: Any, retry_failed: bool = True) -> dict:
    """Runs on a worker: rebuild the config, resolve the run function there, run with resume=True."""
    return call_run_fn(resolve_run_fn(run_fn), validate_config(cfg_tree), retry_failed)
