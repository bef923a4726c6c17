"""The Trainer checkpoints a run resumes from: only a complete one.

The Trainer writes a checkpoint file after file into `checkpoints/checkpoint-<step>/` (transformers 5.x,
Trainer._save_checkpoint: the weights, optimizer.pt, scheduler.pt, rng_state.pth, then trainer_state.json). A
save that stops half way (disk full, quota, a kill) leaves a folder that fails every later resume ("Can't find
a valid checkpoint") or, without optimizer.pt, resumes with a fresh optimizer without a word. So:

- written: once the Trainer's save has returned, `CompleteCheckpointCallback` writes `.complete` into the
  folder, atomically and last: the step, and every file of the checkpoint with its size.
- read: `resume_checkpoint` gives the newest checkpoint-<step> that is complete: every file the Trainer reads
  to resume is there (`missing_files`), trainer_state.json parses, and, when it has a marker, every file the
  marker lists is there with its size. A checkpoint without a marker (written before tunebench wrote one, or
  by a process killed between the Trainer's last write and the marker) is complete when every file is there.
- an incomplete checkpoint newer than that is moved aside, with a one-line warning on stderr, to
  `checkpoints/incomplete-checkpoint-<step>-<time>/`: a name the Trainer neither resumes from nor counts in
  save_total_limit. It stays for a look until the run ends ok (checkpoints/ goes then) or its folder is removed.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer import OPTIMIZER_NAME, OPTIMIZER_NAME_BIN, SCHEDULER_NAME, TRAINER_STATE_NAME
from transformers.utils import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_SAFE_WEIGHTS_NAME,
    ADAPTER_WEIGHTS_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
)

from tunebench.io import atomic_write_json

MARKER = ".complete"
ASIDE_PREFIX = "incomplete-"
CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")       # transformers.trainer_utils.get_last_checkpoint's
RNG_STATE = re.compile(r"^rng_state(_\d+)?\.pth$")         # one process: rng_state.pth; rank k: rng_state_k.pth
FULL_WEIGHTS = (SAFE_WEIGHTS_NAME, WEIGHTS_NAME)
FULL_INDEXES = (SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_INDEX_NAME)
ADAPTER_WEIGHTS = (ADAPTER_SAFE_WEIGHTS_NAME, ADAPTER_WEIGHTS_NAME)


class CompleteCheckpointCallback(TrainerCallback):
    """Marks each checkpoint complete once the Trainer's save has returned (on_save comes after
    Trainer._save_checkpoint): `.complete`, written last and atomically."""

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if args.should_save and folder.is_dir():
            write_marker(folder, state.global_step)


def write_marker(folder: Path, step: int) -> Path:
    files = {p.relative_to(folder).as_posix(): p.stat().st_size
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MARKER}
    return atomic_write_json(folder / MARKER, {"step": step, "files": files})


def missing_files(folder: Path) -> list[str]:
    """What the Trainer reads to resume from `folder` (one process: Trainer._load_from_checkpoint,
    _load_optimizer_and_scheduler, _load_rng_state, TrainerState.load_from_json) and does not find there."""
    names = {p.name for p in folder.iterdir()}
    missing = _missing_weights(folder, names)
    if not names & {OPTIMIZER_NAME, OPTIMIZER_NAME_BIN}:
        missing.append(OPTIMIZER_NAME)
    if SCHEDULER_NAME not in names:
        missing.append(SCHEDULER_NAME)
    if not any(RNG_STATE.match(n) for n in names):
        missing.append("rng_state.pth")
    if _read_json(folder / TRAINER_STATE_NAME) is None:
        missing.append(TRAINER_STATE_NAME)
    return missing


def _missing_weights(folder: Path, names: set[str]) -> list[str]:
    """Full weights (one file, or an index and every shard it names) or a PEFT adapter with its config."""
    if names & set(FULL_WEIGHTS):
        return []
    for index in FULL_INDEXES:
        if index in names:
            tree = _read_json(folder / index)
            shards = tree.get("weight_map") if isinstance(tree, dict) else None
            if not isinstance(shards, dict) or not shards:
                return [index]
            return sorted(s for s in set(map(str, shards.values())) if not (folder / s).is_file())
    if names & set(ADAPTER_WEIGHTS):
        return [] if ADAPTER_CONFIG_NAME in names else [ADAPTER_CONFIG_NAME]
    return [f"model weights ({SAFE_WEIGHTS_NAME} or {ADAPTER_SAFE_WEIGHTS_NAME})"]


def checkpoint_problem(folder: Path) -> str | None:
    """Why `folder` cannot be resumed from (`missing optimizer.pt, ...`), or None when it is complete."""
    try:
        missing = missing_files(folder)
    except OSError as e:
        return f"unreadable: {e.strerror or type(e).__name__}"
    if missing:
        return "missing " + ", ".join(missing)
    if not (folder / MARKER).exists():
        return None                     # written before markers, or killed right after the Trainer's save
    marker = _read_json(folder / MARKER)
    if not isinstance(marker, dict) or not isinstance(marker.get("files"), dict):
        return f"unreadable {MARKER}"
    changed = sorted(name for name, size in marker["files"].items() if _size(folder / name) != size)
    return f"changed since it was written: {', '.join(changed)}" if changed else None


def resume_checkpoint(ckpt_dir: Path) -> str | None:
    """The newest complete checkpoint in `ckpt_dir` (a path, as get_last_checkpoint gives it), or None; each
    incomplete one newer than it is moved aside, with a warning."""
    moved = []
    chosen = None
    for folder in newest_first(ckpt_dir):
        problem = checkpoint_problem(folder)
        if problem is None:
            chosen = folder
            break
        moved.append((folder.name, problem, move_aside(folder)))
    then = f"resuming from {chosen.name}" if chosen else "no complete checkpoint: training from scratch"
    for name, problem, aside in moved:
        warn(f"{ckpt_dir / name}: an incomplete checkpoint ({problem}); moved aside to {aside.name}, {then}")
    return str(chosen) if chosen else None


def checkpoint_folders(ckpt_dir: Path) -> list[Path]:
    if not ckpt_dir.is_dir():
        return []
    return [p for p in ckpt_dir.iterdir() if CHECKPOINT_NAME.match(p.name) and p.is_dir()]


def checkpoint_step(folder: Path) -> int:
    """The step of a checkpoint-N folder."""
    return int(CHECKPOINT_NAME.match(folder.name)[1])


def step_of(path: str | None) -> int | None:
    """The global step of a Trainer checkpoint folder's path (`.../checkpoint-<step>`, as the Trainer's state
    and resume_checkpoint give it); None for none or a name without a step."""
    if not path:
        return None
    tail = Path(path).name.rpartition("-")[2]
    return int(tail) if tail.isdigit() else None


def newest_first(ckpt_dir: Path) -> list[Path]:
    """The checkpoint-N folders in `ckpt_dir`, highest step first."""
    return sorted(checkpoint_folders(ckpt_dir), key=checkpoint_step, reverse=True)


def newest_complete(ckpt_dir: Path) -> Path | None:
    """The newest complete checkpoint, the one a resume starts from, found without moving anything."""
    return next((f for f in newest_first(ckpt_dir) if checkpoint_problem(f) is None), None)


def move_aside(folder: Path) -> Path:
    """Rename `folder` to incomplete-<name>-<time> beside it (a free name)."""
    stem = f"{ASIDE_PREFIX}{folder.name}-{time.strftime('%Y%m%dT%H%M%S')}"
    aside, n = folder.with_name(stem), 1
    while aside.exists():
        aside, n = folder.with_name(f"{stem}-{n}"), n + 1
    os.rename(folder, aside)
    return aside


def warn(line: str) -> None:
    print(f"tunebench: warning: {line}", file=sys.stderr, flush=True)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None
