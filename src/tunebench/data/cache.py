"""The data cache: <data.dir>/<task>/{train.jsonl, test.jsonl, manifest.json}.

Writers validate everything before this module is called, so a failed import writes nothing. Each file is
written atomically (temp file + rename) and the manifest goes last: it records the sha256 of both JSONL
files, so a reader can tell a complete cache from one interrupted between files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tunebench import __version__
from tunebench.data.splits import SPLIT_PROTOCOL, Carve
from tunebench.errors import TunebenchError
from tunebench.io import atomic_write_json, atomic_write_text

CACHE_SPLITS = ("train", "test")
MANIFEST = "manifest.json"


@dataclass
class CachedTask:
    """One task's official splits as canonical records, with where they came from.

    `carve` is set by sources.load_split_records once the split protocol ran: how validation was carved under
    the config's data.validation_size and data.split_seed (the manifest cannot hold it: the carve depends on
    the config, the cache does not). `carve.as_dict()` is the JSON record of it.
    """

    train: list[dict]
    test: list[dict]
    manifest: dict
    carve: Carve | None = field(default=None, compare=False)


def task_dir(data_dir: str | Path, task: str) -> Path:
    return Path(data_dir) / task


def manifest_path(data_dir: str | Path, task: str) -> Path:
    return task_dir(data_dir, task) / MANIFEST


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def to_jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def build_manifest(task: str, source: str, inputs: list[dict], splits: dict[str, list[dict]],
                   texts: dict[str, str], extra: dict | None = None) -> dict:
    """The manifest for `splits` (pure, except for the creation time)."""
    return {
        "task": task,
        "source": source,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "tunebench_version": __version__,
        "inputs": inputs,
        "rows": {split: len(splits[split]) for split in CACHE_SPLITS},
        "files": {f"{split}.jsonl": {"sha256": sha256_text(texts[split])} for split in CACHE_SPLITS},
        "split_protocol": SPLIT_PROTOCOL,
        **(extra or {}),
    }


def write_task_cache(data_dir: str | Path, task: str, splits: dict[str, list[dict]], source: str,
                     inputs: list[dict], extra: dict | None = None) -> Path:
    """Write train.jsonl, test.jsonl, then manifest.json (each atomically). Returns the task folder."""
    texts = {split: to_jsonl(splits[split]) for split in CACHE_SPLITS}
    manifest = build_manifest(task, source, inputs, splits, texts, extra)
    folder = task_dir(data_dir, task)
    for split in CACHE_SPLITS:
        atomic_write_text(folder / f"{split}.jsonl", texts[split])
    atomic_write_json(folder / MANIFEST, manifest)
    return folder


def read_task_cache(data_dir: str | Path, task: str, hint: str) -> CachedTask:
    """The cached splits; TunebenchError naming the missing or inconsistent file and `hint` (what to run)."""
    path = manifest_path(data_dir, task)
    if not path.is_file():
        raise TunebenchError(f"{path}: no {task} data cache; run `{hint}`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TunebenchError(f"{path}: unreadable manifest ({e}); run `{hint}` again") from None
    splits = {split: _read_split(path.parent, split, manifest, hint) for split in CACHE_SPLITS}
    return CachedTask(train=splits["train"], test=splits["test"], manifest=manifest)


def _read_split(folder: Path, split: str, manifest: dict, hint: str) -> list[dict]:
    path = folder / f"{split}.jsonl"
    if not path.is_file():
        raise TunebenchError(f"{path}: missing from the {folder.name} data cache; run `{hint}` again")
    text = path.read_text(encoding="utf-8")
    expected = manifest.get("files", {}).get(path.name, {}).get("sha256")
    if expected != sha256_text(text):
        raise TunebenchError(f"{path}: does not match its manifest (interrupted write?); run `{hint}` again")
    return [json.loads(line) for line in text.splitlines() if line]
