"""The run function a plan calls per run, shared by the local and the Ray backend (so neither imports the other),
and the rule for which runs it is called: a run's state, from its metrics.json alone."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable

from tunebench.config import Config
from tunebench.errors import TunebenchError
from tunebench.plan.progress import Progress
from tunebench.results import STATUS_FAILED, STATUS_OK, STATUS_RUNNING, read_metrics, run_dir, run_id
from tunebench.runner import busy_record
from tunebench.system import claim_run

RunFn = Callable[..., dict]
DEFAULT_RUNNER = "tunebench.runner:run_one"

# A run's state as the executor sees it (from metrics.json).
DONE, FAILED, INTERRUPTED, PENDING = "done", "failed", "interrupted", "pending"

# In a record call_run_fn gives back without calling the run function because the run was found finished
# once its lock was taken (another process finished it meanwhile): why, for the progress line. Not written.
LEFT_ALONE = "left_alone"


def run_state(metrics: dict | None) -> str:
    if metrics is None:
        return PENDING
    status = metrics.get("status")
    if status == STATUS_OK:
        return DONE
    if status == STATUS_FAILED:
        return FAILED
    return INTERRUPTED  # stopped by a signal, "running" from a process that is gone, or an unknown status


def should_run(state: str, retry_failed: bool) -> bool:
    return state in (PENDING, INTERRUPTED) or (state == FAILED and retry_failed)


def resolve_run_fn(run_fn: RunFn | str | None) -> RunFn:
    """A callable as is; "module:function" imported; None -> tunebench.runner.run_one (imported only now)."""
    if callable(run_fn):
        return run_fn
    spec = run_fn or DEFAULT_RUNNER
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise TunebenchError(f"runner {spec}: cannot import {module_name} ({e})") from None
    fn = getattr(module, attr or "run_one", None)
    if not callable(fn):
        raise TunebenchError(f"runner {spec}: {module_name} has no function {attr or 'run_one'!r}")
    return fn


def call_run_fn(run_fn: RunFn, cfg: Config, retry_failed: bool = True,
                on_start: Callable[[], None] | None = None) -> dict:
    """run_fn(cfg, resume=True) under the run folder's lock (tunebench.system.claim_run, which the runner's own
    lock then is), with the run's state read again once the lock is taken: the plan's list of runs to do was
    read at its start, and another launch on the same folder may have finished a run since. A run another
    process holds is left alone (status running back: busy); one found finished (ok; failed, unless
    retry_failed) is not run again: its metrics.json comes back, with LEFT_ALONE saying so. `on_start` is
    called just before the run function."""
    rdir = run_dir(cfg)
    with contextlib.ExitStack() as stack:
        try:
            rdir.mkdir(parents=True, exist_ok=True)
            holder = stack.enter_context(claim_run(rdir))
        except OSError:      # a file in the way, no permission: the run function meets it and says what
            return _call(run_fn, cfg, on_start)
        if holder is not None:
            return busy_record(cfg, holder)
        found = read_metrics(rdir)
        if found is not None and not should_run(run_state(found), retry_failed):
            done = found.get("status") == STATUS_OK
            why = "finished by another process" if done else f"failed in another process: {found.get('reason')}"
            return {**found, LEFT_ALONE: why}
        return _call(run_fn, cfg, on_start)


def _call(run_fn: RunFn, cfg: Config, on_start: Callable[[], None] | None) -> dict:
    """The runner records its own failures; one that escapes is recorded here (its metrics.json still says
    running, so the next plan run resumes it). Input errors stop the plan, and so does a run stopped by SIGINT or
    SIGTERM (tunebench.runner.RunInterrupted: recorded interrupted, resumed by the next plan run)."""
    if on_start is not None:
        on_start()
    try:
        metrics = run_fn(cfg, resume=True)
    except TunebenchError:
        raise
    except Exception as e:  # noqa: BLE001 -- a crashed run must not stop the other runs of the plan
        reason = (str(e).strip().splitlines() or [""])[0]
        return {"run_id": run_id(cfg), "status": STATUS_FAILED, "reason": f"{type(e).__name__}: {reason}"}
    if not isinstance(metrics, dict):
        return {"run_id": run_id(cfg), "status": STATUS_FAILED, "reason": "runner returned no metrics dict"}
    return metrics


def left_alone(metrics: dict) -> bool:
    """A record for a run whose run function was not called: busy (another process holds it: status running)
    or found finished (LEFT_ALONE)."""
    return metrics.get("status") == STATUS_RUNNING or LEFT_ALONE in metrics


def show_result(progress: Progress, rid: str, metrics: dict, note: str | None = None) -> None:
    """The progress event of a run's record: busy when another process holds it (status running: left to it,
    not a failure), finished otherwise (by another process, when found finished). `note` replaces the
    record's reason on an ok or failed line."""
    reason = metrics.get("reason") or ""
    if metrics.get("status") == STATUS_RUNNING:
        progress.busy(rid, reason)
    elif LEFT_ALONE in metrics:
        progress.finished(rid, metrics.get("status") == STATUS_OK, metrics[LEFT_ALONE], elsewhere=True)
    else:
        progress.finished(rid, metrics.get("status") == STATUS_OK, reason if note is None else note)
