"""Reusing finished sweep runs in the final stage: copy the run folder instead of training the run again.

A two-stage plan's final stage runs the selected grid point on the final seeds. For a final seed that is also
a sweep seed, that run's id (tunebench.results.run_id: the effective config, which leaves out `experiment`)
equals the id of the sweep run that already computed it, and training is deterministic: the final stage
copies `<output_dir>/<name>-sweep/<run_id>/` to `<output_dir>/<name>/<run_id>/` instead of training it again.

Rules:
- only a sweep run whose metrics.json says ok (with the same run id) is reused; a failed or interrupted one
  is not, and the final run trains as usual. The executor reuses only runs it would otherwise run (pending,
  interrupted, or failed with retry_failed): a final run that is done is left alone.
- the copy is atomic: everything goes into a hidden temporary sibling (`.<run_id>.reuse-*`), config.yaml and
  metrics.json last, then one rename puts it in place. A crash (or an error) mid-copy leaves no final folder:
  the run stays pending and the next plan run copies again (removing the dead copy's leftovers first).
  An existing final folder (an interrupted or failed earlier attempt) is replaced under its run lock; when
  another process holds that lock the run is left alone and reported running, as the runner does.
- not copied: `checkpoints/` (an ok run has none), the runner's `.lock`, and `wandb/`: a reused run is not
  logged to W&B again (its offline files belong to the sweep run, same W&B id, group `<name>-sweep`;
  syncing a copy would upload that run twice).
- rewritten: the location's name, metrics.json's `experiment` and `config.experiment`, config.yaml's
  `experiment`; metrics.json gains `"reused_from": "<name>-sweep/<run_id>"` (relative to output_dir). Every
  other value (metrics, timing, memory, env, batch) and every other file (log, predictions, adapter,
  analysis.json) is the sweep run's, unchanged -- note that its timing is the sweep run's compute, spent once.
- like resuming and skipping finished runs, reuse trusts that the code did not change what a run computes
  between the stages (the run id hashes the config, not the code): after such a change, start a fresh
  output_dir.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

import yaml

from tunebench.io import atomic_write_json, atomic_write_text
from tunebench.plan.expand import PlannedRun
from tunebench.plan.spec import Plan
from tunebench.results import METRICS_FILE, STATUS_FAILED, STATUS_OK, STATUS_RUNNING, read_metrics
from tunebench.system import exception_line, run_lock

REUSED_FROM = "reused_from"     # the metrics.json key naming the sweep run a final run was copied from
CONFIG_FILE = "config.yaml"
NOT_COPIED = ("checkpoints", ".lock", "wandb")
WRITTEN_LAST = (CONFIG_FILE, METRICS_FILE)       # rewritten; metrics.json last (it makes the run a run)
TMP_MARK = ".reuse-"


def reused_seeds(plan: Plan) -> tuple[int, ...]:
    """The final seeds whose runs a two-stage plan copies instead of training (known before the sweep): the
    sweep seeds among them, over every task's final seeds -- the selected setting's sweep runs are all ok
    (tunebench.plan.select)."""
    final = dict.fromkeys(s for task in plan.tasks for s in plan.seeds_of(task))
    return tuple(s for s in final if s in (plan.sweep_seeds or ()))


def reuse_sources(runs: list[PlannedRun], sweep: list[PlannedRun]) -> dict[str, PlannedRun]:
    """final run id -> the sweep run with the same id whose metrics.json says ok (reads the sweep folders)."""
    by_id = {r.run_id: r for r in sweep}
    out = {}
    for run in runs:
        src = by_id.get(run.run_id)
        if src is not None and reusable(read_metrics(src.run_dir), run.run_id):
            out[run.run_id] = src
    return out


def reusable(metrics: dict | None, rid: str) -> bool:
    """A finished (ok) run recording the same run id."""
    return bool(metrics) and metrics.get("status") == STATUS_OK and metrics.get("run_id", rid) == rid


def source_label(src: PlannedRun) -> str:
    """`<name>-sweep/<run_id>`: the sweep run's folder relative to output_dir."""
    return f"{src.cfg.experiment}/{src.run_id}"


def reuse_run(run: PlannedRun, src: PlannedRun) -> dict:
    """Copy the sweep run `src` into `run`'s folder (see the module docstring); its metrics record.

    Returns the runner's answer when another process holds the final folder (status running, nothing
    touched); an error (disk full, permissions, an unreadable config.yaml) becomes a failed record with nothing
    written, so the run stays pending for the next plan run. KeyboardInterrupt propagates after the cleanup.
    """
    label = source_label(src)
    try:
        return copy_run(src.run_dir, run.run_dir, run.cfg.experiment, label)
    except _Busy as e:
        return {"run_id": run.run_id, "status": STATUS_RUNNING,
                "reason": f"being run by another process ({e}); left alone"}
    except Exception as e:  # noqa: BLE001 -- disk full, permissions, a hand-edited config.yaml: this run only
        return {"run_id": run.run_id, "status": STATUS_FAILED,
                "reason": f"reusing sweep run {label} failed: {exception_line(e)}"}


class _Busy(Exception):
    """The final folder's lock is held by another process (its message: who)."""


def copy_run(src: Path, dst: Path, experiment: str, reused_from: str) -> dict:
    """Copy run folder `src` to `dst` atomically, renamed to `experiment`; the new metrics record."""
    metrics = read_metrics(src)
    if not metrics:
        raise FileNotFoundError(f"{src / METRICS_FILE}: missing or unreadable")
    dst.parent.mkdir(parents=True, exist_ok=True)
    with _copy_lock(dst):              # one copier per run: another's temporary folder is never a leftover
        remove_leftovers(dst)
        tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}{TMP_MARK}"))
        try:
            shutil.copytree(src, tmp, symlinks=True, dirs_exist_ok=True,
                            ignore=_top_level(src, NOT_COPIED + WRITTEN_LAST))
            record = renamed_metrics(metrics, experiment, reused_from)
            config = src / CONFIG_FILE
            if config.is_file():
                atomic_write_text(tmp / CONFIG_FILE, renamed_config(config.read_text(encoding="utf-8"), experiment))
            atomic_write_json(tmp / METRICS_FILE, record)
            return _install(tmp, dst) or record
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _copy_lock(dst: Path):
    """An exclusive lock on `.<run_id>.reuse.lock` beside the run folder for the whole copy (cleanup, copy,
    rename); _Busy when another process is copying the same run."""
    with open(dst.parent / f".{dst.name}.reuse.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _Busy("another process is copying it") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _top_level(root: Path, names: tuple[str, ...]):
    def ignore(folder: str, entries: list[str]) -> list[str]:
        return [e for e in entries if e in names] if Path(folder) == root else []
    return ignore


def renamed_metrics(metrics: dict, experiment: str, reused_from: str) -> dict:
    """metrics.json with the new experiment (top level and embedded config) and `reused_from` after it."""
    out: dict = {}
    for key, value in metrics.items():
        if key == REUSED_FROM:
            continue
        if key == "experiment":
            value = experiment
        elif key == "config" and isinstance(value, dict) and "experiment" in value:
            value = {**value, "experiment": experiment}
        out[key] = value
        if key == "experiment":
            out[REUSED_FROM] = reused_from
    out.setdefault(REUSED_FROM, reused_from)
    return out


def renamed_config(text: str, experiment: str) -> str:
    """config.yaml with the new experiment; written as the runner writes it (yaml.safe_dump, file order)."""
    tree = yaml.safe_load(text)
    if not isinstance(tree, dict):
        return text
    tree["experiment"] = experiment
    return yaml.safe_dump(tree, sort_keys=False)


def _install(tmp: Path, dst: Path) -> dict | None:
    """Rename the finished copy into place. An existing final folder (an earlier attempt that is not done) is
    moved aside and removed, under its run lock; returns its metrics instead when it turned ok meanwhile."""
    try:
        os.rename(tmp, dst)          # also replaces an empty folder
        return None
    except OSError:
        if not dst.is_dir():
            raise
    with run_lock(dst) as holder:
        if holder is not None:
            raise _Busy(holder)
        current = read_metrics(dst)
        if current and current.get("status") == STATUS_OK:
            return current           # another process finished it meanwhile: keep that one
        old = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}{TMP_MARK}old-"))
        try:
            os.rename(dst, old / dst.name)
            try:
                os.rename(tmp, dst)
            except OSError:
                os.rename(old / dst.name, dst)     # put the earlier attempt back: never no folder at all
                raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    return None


def remove_leftovers(dst: Path) -> None:
    """Temporary folders of an earlier copy of this run that died (kill -9) before its rename."""
    for path in dst.parent.glob(f".{dst.name}{TMP_MARK}*"):
        shutil.rmtree(path, ignore_errors=True)
