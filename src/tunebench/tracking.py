"""Experiment tracking at the edge: W&B (offline by default) or nothing. Local JSON-lines logs are always
written by the runner, whatever the tracker.

Offline runs keep their files under `<run_dir>/wandb/` so `wandb sync <run_dir>/wandb/offline-run-*` uploads
them later. Nothing here ever writes an API key: only the resolved config and metrics are logged.

wandb is a dependency (W&B is the default tracker); it is imported only when a W&B run starts or an offline run
file is read back, so `tracking.backend=none` runs even where it is missing.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from tunebench.config import Config
from tunebench.errors import TunebenchError

WANDB_MISSING = ("tracking.backend=wandb needs the wandb package (pip install 'tunebench[wandb]'), "
                 "or set tracking.backend=none")


def wandb_available() -> bool:
    """Whether the wandb package is installed (nothing imported: importing wandb is slow)."""
    try:
        return importlib.util.find_spec("wandb") is not None
    except (ImportError, ValueError):   # a stand-in module without __spec__ in sys.modules
        return False


class NullTracker:
    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        pass

    def summary(self, metrics: dict[str, Any]) -> None:
        pass

    def finish(self, ok: bool = True) -> None:
        pass

    @property
    def run_path(self) -> str | None:
        return None


class WandbTracker(NullTracker):
    """One W&B run per training run; finished before the next one starts."""

    def __init__(self, cfg: Config, run_dir: Path, run_id: str):
        import wandb

        t = cfg.tracking
        run_dir.mkdir(parents=True, exist_ok=True)
        self._wandb = wandb
        self._run = wandb.init(
            project=t.project,
            entity=t.entity or os.environ.get("WANDB_ENTITY"),
            group=t.group or cfg.experiment,
            tags=[cfg.task, cfg.method, f"seed{cfg.training.seed}", *t.tags],
            name=run_id,
            id=run_id,
            dir=str(run_dir),
            config=cfg.model_dump(),
            mode=t.mode,
            reinit="finish_previous",
            resume="allow",
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True, disable_git=True,
                                    save_code=False),
        )

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self._run.log(metrics, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        for k, v in metrics.items():
            self._run.summary[k] = v

    def finish(self, ok: bool = True) -> None:
        self._run.finish(exit_code=0 if ok else 1)

    @property
    def run_path(self) -> str | None:
        return str(Path(self._run.dir).parent)


def check_backend(cfg: Config) -> None:
    """TunebenchError (one line) when cfg's tracking backend cannot start on this machine; for a verb to call
    before its first run, so that a missing wandb is exit 2 up front rather than every run failing."""
    if cfg.tracking.backend == "wandb" and not wandb_available():
        raise TunebenchError(WANDB_MISSING)


def start_tracker(cfg: Config, run_dir: Path, run_id: str) -> NullTracker:
    """The run's tracker; TunebenchError (see check_backend) when tracking.backend=wandb without wandb."""
    check_backend(cfg)
    if cfg.tracking.backend == "none":
        return NullTracker()
    return WandbTracker(cfg, run_dir, run_id)


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"test": {"accuracy": 0.9}} -> {"test/accuracy": 0.9}, numbers only (what trackers plot)."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = v
    return out


# ---------------------------------------------------------------- reading offline runs back

_WANDB_HEADER = b":W&B\xe1\xbe\x00"   # ident, magic 0xBEE1 (little endian), version 0
_BLOCK = 32 * 1024                    # the LevelDB log format W&B's .wandb files use
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_wandb_file(path: str | os.PathLike) -> list[tuple[str, dict]]:
    """Records of an offline `.wandb` file: ("history", {key: value}), ("summary", {key: value}), and
    (kind, {}) for every other record kind ("run", "exit", ...).

    Hand-written because wandb 0.31 ships no public reader of its transaction log; the format is LevelDB's
    log (32 KiB blocks, 7-byte record headers: crc32, length, type).
    """
    import json as _json

    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if not data.startswith(_WANDB_HEADER):
        raise ValueError(f"{path}: not a W&B transaction log")
    out = []
    for payload in _log_records(data, len(_WANDB_HEADER)):
        rec = pb.Record()
        rec.ParseFromString(payload)
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            items = rec.history.item
        elif kind == "summary":
            items = rec.summary.update
        else:
            out.append((kind, {}))
            continue
        out.append((kind, {(i.key or "/".join(i.nested_key)): _json.loads(i.value_json) for i in items}))
    return out


def _log_records(data: bytes, pos: int):
    chunks: list[bytes] = []
    while pos + 7 <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < 7:
            pos += left_in_block          # block trailer padding
            continue
        length = int.from_bytes(data[pos + 4:pos + 6], "little")
        kind = data[pos + 6]
        body = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            pos += _BLOCK - pos % _BLOCK if pos % _BLOCK else 0   # zero padding to the block end
            continue
        if kind == _FULL:
            yield body
        elif kind == _FIRST:
            chunks = [body]
        elif kind == _MIDDLE:
            chunks.append(body)
        elif kind == _LAST:
            chunks.append(body)
            yield b"".join(chunks)
            chunks = []


def read_finished_wandb_file(path: str | os.PathLike, timeout_s: float = 30.0) -> list[tuple[str, dict]]:
    """The records once the run's "exit" record is on disk: wandb's service process may still be writing
    the file for a moment after `finish()` returns."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        records = read_wandb_file(path)
        if any(kind == "exit" for kind, _ in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)
