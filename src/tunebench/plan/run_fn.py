"""The run function a plan calls per run, shared by the local and the Ray backend (so neither imports the other)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from tunebench.config import Config
from tunebench.errors import TunebenchError
from tunebench.results import STATUS_FAILED, run_id

RunFn = Callable[..., dict]
DEFAULT_RUNNER = "tunebench.runner:run_one"


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


def call_run_fn(run_fn: RunFn, cfg: Config) -> dict:
    """run_fn(cfg, resume=True). The runner records its own failures; one that escapes is recorded here
    (its metrics.json still says running, so the next plan run resumes it). Input errors stop the plan."""
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
