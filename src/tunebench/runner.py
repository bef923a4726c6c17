"""The runner: the one place that reads a config, writes a run's files and talks to the tracker.

`run_one` never leaves a run without a verdict: metrics.json says running while it trains, then ok or failed
with a one-line reason (exception, NaN loss, out of memory). All writes are atomic. A run folder is locked
(`.lock`, an flock the kernel releases when the process dies, kill -9 included) while a process runs it: a
second process asking for the same run gets status running back and touches nothing.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import IO

from tunebench.config import Config, dump_yaml
from tunebench.data.tasks import get_task
from tunebench.io import atomic_write_json, atomic_write_jsonl, atomic_write_text
from tunebench.results import METRICS_FILE, STATUS_FAILED, STATUS_OK, STATUS_RUNNING, run_dir, run_id

PACKAGES = ("tunebench", "torch", "transformers", "peft", "datasets", "accelerate", "wandb", "scikit-learn",
            "scipy", "numpy")


def run_one(cfg: Config, *, resume: bool = True, preflight: bool = True) -> dict:
    """Train and evaluate one run into results.run_dir(cfg); return its metrics record (status running, and
    nothing written, when another process holds the run)."""
    rdir = run_dir(cfg)
    rdir.mkdir(parents=True, exist_ok=True)
    with run_lock(rdir) as holder:
        if holder is not None:
            return {"run_id": run_id(cfg), "status": STATUS_RUNNING,
                    "reason": f"being run by another process ({holder}); left alone"}
        return _run_locked(cfg, rdir, resume, preflight)


@contextlib.contextmanager
def run_lock(rdir: Path) -> Iterator[str | None]:
    """Hold the run folder's lock: yields None when taken, or who holds it ("pid N on HOST") when another
    process does. Without fcntl (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:
        yield None
        return
    with open(rdir / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            yield f.read().strip() or "unknown process"
            return
        _write_holder(f)
        try:
            yield None
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _write_holder(f: IO[str]) -> None:
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {platform.node()}")
    f.flush()


def _run_locked(cfg: Config, rdir: Path, resume: bool, preflight: bool) -> dict:
    from tunebench.tracking import flatten, start_tracker
    from tunebench.train import train_and_evaluate

    atomic_write_text(rdir / "config.yaml", dump_yaml(cfg))
    record = base_record(cfg)
    atomic_write_json(rdir / METRICS_FILE, {**record, "status": STATUS_RUNNING, "pid": os.getpid(),
                                            "started_at": time.time()})
    tracker = None
    try:
        if preflight:
            from tunebench.sanity import preflight as run_preflight

            run_preflight(cfg)
        tracker = start_tracker(cfg, rdir, record["run_id"])
        result = train_and_evaluate(cfg, rdir, tracker, resume=resume)
        for split, rows in result.predictions.items():
            atomic_write_jsonl(rdir / "predictions" / f"{split}.jsonl", rows)
        record.update(result.fields, status=STATUS_OK)
        tracker.summary(flatten({k: record[k] for k in ("test", "validation", "best_validation", "params",
                                                         "timing", "memory", "tokens")}))
        _remove_checkpoints(rdir)
    except Exception as e:  # noqa: BLE001 -- every failure becomes a recorded verdict
        record.update(status=STATUS_FAILED, reason=failure_reason(e))
        atomic_write_text(rdir / "error.log", traceback.format_exc())
    finally:
        if tracker is not None:
            tracker.finish(ok=record["status"] == STATUS_OK)
    atomic_write_json(rdir / METRICS_FILE, record)
    return record


def base_record(cfg: Config) -> dict:
    task = get_task(cfg.task)
    return {
        "schema": 1,
        "run_id": run_id(cfg),
        "experiment": cfg.experiment,
        "status": STATUS_RUNNING,
        "reason": None,
        "task": cfg.task,
        "method": cfg.method,
        "seed": cfg.training.seed,
        "learning_rate": cfg.learning_rate,
        "lora_r": cfg.lora.r if cfg.method == "lora" else None,
        "primary_metric": task.primary_metric,
        "env": environment(),
        "config": cfg.model_dump(),
    }


def failure_reason(e: BaseException) -> str:
    """One line: out-of-memory and divergence named plainly, otherwise the exception's first line."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if "out of memory" in str(e).lower() or type(e).__name__ == "OutOfMemoryError":
        return f"out of memory: {text}"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def environment() -> dict:
    import torch

    cpu = f"cpu ({platform.processor() or platform.machine()})"
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else cpu
    return {
        "device": device,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_revision": git_revision(),
        "argv": sys.argv[1:],
        "packages": {p: _version(p) for p in PACKAGES},
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _remove_checkpoints(rdir: Path) -> None:
    """Checkpoints exist for --resume; once the run is ok the adapter/model saved beside them is the result."""
    import shutil

    shutil.rmtree(rdir / "checkpoints", ignore_errors=True)
