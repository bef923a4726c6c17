"""The runner: the one place that reads a config, writes a run's files and talks to the tracker.

`run_one` never leaves a run without a verdict: metrics.json says running while it trains, then ok or failed
with a one-line reason (exception, NaN loss, out of memory). All writes are atomic. A run folder is locked
(`.lock`, an flock the kernel releases when the process dies, kill -9 included; tunebench.system.run_lock) while
a process runs it: a second process asking for the same run gets status running back and touches nothing.

Out of memory. A run that runs out of (GPU) memory in training is retried from scratch with half the
per-device batch and the gradient accumulation multiplied to match, so the effective batch, the examples of
every optimizer step (the length-grouped sampler groups per effective batch) and the science stay the same,
down to a per-device batch of 1; an out-of-memory error in evaluation (validation or the final evaluation)
halves the per-device evaluation batch instead (it changes no result beyond rounding). The run keeps the
requested config's id, folder and config.yaml; the partial attempt's checkpoints and log are removed first;
metrics.json's `batch` says what was requested and what was used. Each attempt is its own tracker run: the
first has the run id, retry k the id `<run_id>-retry<k>` (a W&B run cannot log its steps again from 1), and an
attempt that ran out of memory is finished as failed. When the batch to halve is already 1 the run fails with
"out of memory: ..." as before.

Interruption. SIGINT (Ctrl-C) or SIGTERM (what schedulers send before they kill) during training stops it at the
end of the optimizer step, after a checkpoint of that step when one can be written within a few seconds
(tunebench.train.StopOnSignal); the run is recorded `interrupted` with the signal and the step, and run_one
raises RunInterrupted: the command stops (a plan too) with one line and exit code 128 + the signal's number
(130, 143). The next run_one resumes it from its newest complete checkpoint, as it does a run killed outright.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tunebench.config import Config, dump_yaml, with_overrides
from tunebench.data.tasks import get_task
from tunebench.errors import TunebenchError, is_user_os_error, os_error_line
from tunebench.findings import run_findings
from tunebench.io import atomic_write_json, atomic_write_jsonl, atomic_write_text, read_log_records
from tunebench.results import (
    METRICS_FILE,
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_OK,
    STATUS_RUNNING,
    read_metrics,
    run_dir,
    run_id,
)
from tunebench.system import environment, exception_line, first_line, free_memory, is_out_of_memory, run_lock


def run_one(cfg: Config, *, resume: bool = True, preflight: bool = True) -> dict:
    """Train and evaluate one run into results.run_dir(cfg); return its metrics record (status running, and
    nothing written, when another process holds the run)."""
    rdir = run_dir(cfg)
    try:
        rdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:              # a file in the way, no permission, a read-only or full disk
        if not is_user_os_error(e):
            raise
        blocker = next((p for p in (rdir, *rdir.parents) if p.exists() and not p.is_dir()), None)
        problem = f"{blocker} is a file, not a folder" if blocker else f"{e.strerror or type(e).__name__}"
        raise TunebenchError(f"output_dir {cfg.output_dir!r}: cannot create the run folder {rdir}: {problem}") \
            from None
    try:
        with run_lock(rdir) as holder:
            if holder is not None:
                return busy_record(cfg, holder)
            return _run_locked(cfg, rdir, resume, preflight)
    except OSError as e:      # the lock or the run's own files (training's errors are recorded): stops a plan too
        if not is_user_os_error(e):
            raise
        raise TunebenchError(f"cannot write the run folder: {os_error_line(e)}") from e


class RunInterrupted(TunebenchError):
    """A run stopped by SIGINT or SIGTERM and recorded `interrupted` (`record`, as written): the CLI prints it as
    one line and exits 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM); a plan stops with it."""

    def __init__(self, record: dict, signum: int):
        super().__init__(f"run {record['run_id']} {record['reason']}")
        self.record, self.signum = record, signum
        self.exit_code = 128 + signum


def busy_record(cfg: Config, holder: str) -> dict:
    """What asking for a run that another process holds gives back: status running; nothing is written."""
    return {"run_id": run_id(cfg), "status": STATUS_RUNNING,
            "reason": f"being run by another process ({holder}); left alone"}


def _run_locked(cfg: Config, rdir: Path, resume: bool, preflight: bool) -> dict:
    from tunebench.tracking import flatten, start_tracker
    from tunebench.train import TrainingInterrupted, train_and_evaluate

    has_checkpoints = (rdir / "checkpoints").is_dir()
    batch = starting_batch(cfg, read_metrics(rdir) if resume and has_checkpoints else None)
    atomic_write_text(rdir / "config.yaml", dump_yaml(cfg))
    record = base_record(cfg)
    started = {"pid": os.getpid(), "started_at": time.time()}
    atomic_write_json(rdir / METRICS_FILE, {**record, "status": STATUS_RUNNING, **started, "batch": batch.record()})
    tracker = None
    stopped = None
    try:
        if preflight:
            from tunebench.sanity import preflight as run_preflight

            run_preflight(cfg)
        while True:
            attempt = batch.apply(cfg)
            tracker = start_tracker(attempt, rdir, tracker_run_id(record["run_id"], batch.oom_retries))
            try:
                result = train_and_evaluate(attempt, rdir, tracker, resume=resume and batch.resumable)
                break
            except Exception as e:  # noqa: BLE001 -- only out-of-memory is retried; the rest is re-raised
                retry = batch.after_oom(e) if is_out_of_memory(e) else None
                if retry is None:
                    raise
            # out of the except clause: the exception, its traceback and the attempt's frames are released
            tracker.finish(ok=False)
            tracker = None
            batch = retry
            free_memory()
            clear_partial_run(rdir)
            atomic_write_json(rdir / METRICS_FILE, {**record, "status": STATUS_RUNNING, **started,
                                                    "batch": batch.record()})
        for split, rows in result.predictions.items():
            atomic_write_jsonl(rdir / "predictions" / f"{split}.jsonl", rows)
        record.update(result.fields, status=STATUS_OK)
        record["batch"] = batch.record()
        record["findings"] = run_findings(get_task(cfg.task).is_qa, result.predictions.get("test", []),
                                          read_log_records(rdir / "log.jsonl"))     # ok, and yet collapsed
        tracker.summary(flatten({k: record[k] for k in ("test", "validation", "best_validation", "params",
                                                         "timing", "memory", "tokens", "batch")}))
        _remove_checkpoints(rdir)
    except TrainingInterrupted as e:  # SIGINT or SIGTERM: resumable, and the command stops (RunInterrupted)
        stopped = e.signum
        interrupted = interruption(e, rdir / "checkpoints")
        record.update(status=STATUS_INTERRUPTED, reason=interrupted_reason(e, interrupted["checkpoint_step"]),
                      batch=batch.record(), interrupted=interrupted)
    except Exception as e:  # noqa: BLE001 -- every failure becomes a recorded verdict
        record.update(status=STATUS_FAILED, reason=failure_reason(e), batch=batch.record())
        atomic_write_text(rdir / "error.log", traceback.format_exc())
    finally:
        if tracker is not None:
            tracker.finish(ok=record["status"] == STATUS_OK)
    atomic_write_json(rdir / METRICS_FILE, record)
    if stopped is not None:
        raise RunInterrupted(record, stopped)
    return record


# ---------------------------------------------------------------- interruption


def interruption(e, ckpt_dir: Path) -> dict:
    """metrics.json's `interrupted` for a tunebench.train.TrainingInterrupted: the signal, the step training
    stopped at, and the step of the newest complete checkpoint, the one a resume starts from (null: none)."""
    from tunebench.checkpoints import checkpoint_step, newest_complete
    from tunebench.train import signal_name

    resume_from = newest_complete(ckpt_dir)
    return {"signal": signal_name(e.signum), "step": e.step,
            "checkpoint_step": checkpoint_step(resume_from) if resume_from is not None else None}


def interrupted_reason(e, checkpoint_step: int | None) -> str:
    """One line: `interrupted by SIGTERM at step 37; resume with the same command`, and where a resume starts
    when that is not the step training stopped at."""
    from tunebench.train import signal_name

    line = f"interrupted by {signal_name(e.signum)} at step {e.step}"
    if checkpoint_step != e.step:
        why = (f"a checkpoint takes {e.save_s:.0f} s to write" if e.save_s is not None
               else "stopped at once by a second signal" if e.forced else "no checkpoint of that step")
        line += f" ({why}; a resume starts from {f'step {checkpoint_step}' if checkpoint_step else 'scratch'})"
    return f"{line}; resume with the same command"


# ---------------------------------------------------------------- out-of-memory retry


@dataclass(frozen=True)
class BatchSetting:
    """The per-device batches and gradient accumulation a run trains and evaluates with."""

    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    per_device_eval_batch_size: int

    @classmethod
    def of(cls, cfg: Config) -> BatchSetting:
        t = cfg.training
        return cls(t.per_device_train_batch_size, t.gradient_accumulation_steps, t.per_device_eval_batch_size)

    @property
    def effective(self) -> int:
        """Examples per optimizer step (one device)."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps


@dataclass(frozen=True)
class BatchState:
    """A run's requested batch, the batch it trains with now, and the out-of-memory events that led there."""

    requested: BatchSetting
    used: BatchSetting
    oom: tuple[dict, ...] = ()       # per retry: {"during": "training" | "evaluation", "reason": "..."}
    resumable: bool = True           # False once an attempt was cleared: the retry starts from scratch

    @property
    def oom_retries(self) -> int:
        return len(self.oom)

    def apply(self, cfg: Config) -> Config:
        """The config an attempt trains with (the requested one when nothing was halved)."""
        if self.used == self.requested:
            return cfg
        return with_overrides(cfg, {f"training.{k}": v for k, v in asdict(self.used).items()})

    def after_oom(self, e: BaseException) -> BatchState | None:
        """The next attempt's batch after an out-of-memory error, or None when the batch to halve is 1."""
        during = "evaluation" if raised_in_evaluation(e) else "training"
        used = halve_eval_batch(self.used) if during == "evaluation" else halve_train_batch(self.used)
        if used is None:
            return None
        event = {"during": during, "reason": failure_reason(e), "batch": asdict(self.used)}
        return replace(self, used=used, oom=(*self.oom, event), resumable=False)

    def record(self) -> dict:
        """metrics.json's `batch` (docs/results.md)."""
        return {"requested": asdict(self.requested), "used": asdict(self.used), "oom_retries": self.oom_retries,
                "oom": list(self.oom)}


def starting_batch(cfg: Config, previous: dict | None) -> BatchState:
    """The requested batch; or, when resuming an interrupted run from its checkpoints, the batch its last
    attempt used (a checkpoint continues with the batch that wrote it)."""
    requested = BatchSetting.of(cfg)
    state = BatchState(requested, requested)
    saved = (previous or {}).get("batch") or {}
    try:
        if saved and BatchSetting(**saved["requested"]) == requested:
            used = BatchSetting(**saved["used"])
            if used.effective == requested.effective:
                return BatchState(requested, used, tuple(saved.get("oom") or ()))
    except (KeyError, TypeError):
        pass                                  # an older or foreign record: start from the requested batch
    return state


def halve_train_batch(b: BatchSetting) -> BatchSetting | None:
    """Half the per-device batch (its largest divisor not above half, so an odd batch keeps the effective batch
    exactly), the accumulation multiplied to match; None at 1."""
    n = b.per_device_train_batch_size
    if n <= 1:
        return None
    smaller = max(d for d in range(1, n // 2 + 1) if n % d == 0)
    return replace(b, per_device_train_batch_size=smaller, gradient_accumulation_steps=b.gradient_accumulation_steps
                   * (n // smaller))


def halve_eval_batch(b: BatchSetting) -> BatchSetting | None:
    if b.per_device_eval_batch_size <= 1:
        return None
    return replace(b, per_device_eval_batch_size=b.per_device_eval_batch_size // 2)


EVAL_FRAMES = ("evaluation_loop", "prediction_step")   # transformers.Trainer's evaluation path


def raised_in_evaluation(e: BaseException) -> bool:
    """Whether the error came out of the Trainer's evaluation (in-loop validation or predict)."""
    return any(frame.name in EVAL_FRAMES for frame in traceback.extract_tb(e.__traceback__))


def tracker_run_id(rid: str, retries: int) -> str:
    """The tracker's id of an attempt: the run id, then `<run_id>-retry<k>`."""
    return rid if retries == 0 else f"{rid}-retry{retries}"


def clear_partial_run(rdir: Path) -> None:
    """The failed attempt's checkpoints and log (the retry starts clean; train's fresh start trims the log too)."""
    import shutil

    shutil.rmtree(rdir / "checkpoints", ignore_errors=True)
    (rdir / "log.jsonl").unlink(missing_ok=True)


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
    if is_out_of_memory(e):
        return f"out of memory: {first_line(e)}"
    return exception_line(e)


def _remove_checkpoints(rdir: Path) -> None:
    """Checkpoints exist for --resume; once the run is ok the adapter/model saved beside them is the result."""
    import shutil

    shutil.rmtree(rdir / "checkpoints", ignore_errors=True)
