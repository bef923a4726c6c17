"""The three data sources and the loading API the trainer uses.

builtin: generated in memory from data.split_seed. local: `data import` reads the official raw files into
the cache. hub: `data download` fetches with `datasets` into the cache. `load_task_splits` reads the cache
(importing first when the source is local and the raw folders are configured), then applies the split
protocol (tunebench.data.splits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tunebench.config import Config, DataConfig
from tunebench.data import builtin, hub, raw
from tunebench.data.cache import CachedTask, manifest_path, read_task_cache, sha256_file, write_task_cache
from tunebench.data.splits import SPLITS, build_splits_recorded
from tunebench.data.tasks import TASKS, TaskSpec, get_task
from tunebench.data.validate import check_split
from tunebench.errors import TunebenchError

if TYPE_CHECKING:
    from datasets import DatasetDict, Features

DEFAULT_DATA_DIR = DataConfig().dir


@dataclass
class PreparedTask:
    """A task read from a source, checked, not yet written: official train and test as canonical records."""

    spec: TaskSpec
    source: str
    splits: dict[str, list[dict]]
    inputs: list[dict]
    extra: dict = field(default_factory=dict)     # manifest extras: partial splits, unanswerable counts
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- reading sources


def read_local_task(spec: TaskSpec, glue_dir: str | None, squad_dir: str | None) -> PreparedTask:
    if spec.is_qa:
        if not squad_dir:
            raise TunebenchError(f"{spec.name}: no SQuAD folder; pass --squad-dir DIR (or set data.squad_dir)")
        files = raw.find_squad_files(squad_dir)
        read = {split: raw.read_squad_json(path) for split, path in files.items()}
        splits = {split: records for split, (records, _) in read.items()}
        extra = {"unanswerable": {split: n for split, (_, n) in read.items()},
                 "partial": [s for s, p in files.items() if raw.is_partial_file(p)]}
    else:
        if not glue_dir:
            raise TunebenchError(f"{spec.name}: no GLUE folder; pass --glue-dir DIR (or set data.glue_dir)")
        files = raw.find_glue_files(spec, glue_dir)
        splits = {split: raw.read_glue_tsv(path, spec) for split, path in files.items()}
        extra = {"partial": []}
    inputs = [{"split": s, "path": str(p.resolve()), "sha256": sha256_file(p), "bytes": p.stat().st_size}
              for s, p in files.items()]
    prepared = PreparedTask(spec, "local", splits, inputs, extra)
    return check_prepared(prepared, {s: str(p) for s, p in files.items()})


def fetch_hub_task(spec: TaskSpec) -> PreparedTask:
    splits, inputs = hub.download_task(spec)
    extra: dict = {"partial": []}
    if spec.is_qa:  # the hub has no is_impossible flag: unanswerable = no answers
        extra["unanswerable"] = {s: sum(not r["answers"]["text"] for r in recs) for s, recs in splits.items()}
    where = {i["split"]: f"{i['hub_id']}/{i['hub_split']}" for i in inputs}
    return check_prepared(PreparedTask(spec, "hub", splits, inputs, extra), where)


def check_prepared(prepared: PreparedTask, where: dict[str, str]) -> PreparedTask:
    """Refuse to cache records that fail a record-level check; note count mismatches as warnings."""
    spec = prepared.spec
    for split, records in prepared.splits.items():
        errors = [f for f in check_split(spec, split, records) if f.level == "error"]
        if errors:
            raise TunebenchError(f"{where[split]}: {errors[0].message}")
        expected = spec.official_counts[split]
        if len(records) != expected and split not in prepared.extra.get("partial", []):
            prepared.warnings.append(f"{spec.name} {split}: {len(records):,} rows, official {expected:,}")
    if spec.is_qa:
        shared = {r["id"] for r in prepared.splits["train"]} & {r["id"] for r in prepared.splits["test"]}
        if shared:
            raise TunebenchError(f"{where['test']}: question id {min(shared)} is also in {where['train']}")
    return prepared


# ---------------------------------------------------------------- writing the cache


def save_prepared(data_dir: str | Path, prepared: PreparedTask) -> Path:
    return write_task_cache(data_dir, prepared.spec.name, prepared.splits, prepared.source, prepared.inputs,
                            prepared.extra)


def import_local(data_dir: str | Path, tasks: list[str], glue_dir: str | None,
                 squad_dir: str | None) -> list[PreparedTask]:
    """Read and check every task first, then write: any bad input leaves the cache untouched."""
    return import_specs(data_dir, [get_task(t) for t in tasks], glue_dir, squad_dir)


def import_specs(data_dir: str | Path, specs: list[TaskSpec], glue_dir: str | None,
                 squad_dir: str | None) -> list[PreparedTask]:
    """import_local for tasks already looked up."""
    prepared = [read_local_task(spec, glue_dir, squad_dir) for spec in specs]
    for p in prepared:
        save_prepared(data_dir, p)
    return prepared


def download_hub(data_dir: str | Path, tasks: list[str]) -> list[PreparedTask]:
    specs = [get_task(t) for t in tasks]
    hub.check_hub_reachable()
    prepared = [fetch_hub_task(s) for s in specs]
    for p in prepared:
        save_prepared(data_dir, p)
    return prepared


# ---------------------------------------------------------------- loading


def builtin_task(spec: TaskSpec, data: DataConfig) -> CachedTask:
    splits = builtin.generate_splits(spec.name, data.builtin_train_size, data.builtin_test_size, data.split_seed)
    manifest = {"task": spec.name, "source": "builtin", "split_seed": data.split_seed,
                "rows": {s: len(r) for s, r in splits.items()}}
    return CachedTask(train=splits["train"], test=splits["test"], manifest=manifest)


def recovery_hint(cfg: Config, spec: TaskSpec) -> str:
    """The command that fills the missing cache, with the same data.dir."""
    where = "" if cfg.data.dir == DEFAULT_DATA_DIR else f" data.dir={cfg.data.dir}"
    if cfg.data.source == "hub":
        return f"tunebench data download --tasks {spec.name}{where}"
    flag = "--squad-dir DIR" if spec.is_qa else "--glue-dir DIR"
    return f"tunebench data import {flag} --tasks {spec.name}{where}"


def can_auto_import(cfg: Config, spec: TaskSpec) -> bool:
    return cfg.data.source == "local" and bool(cfg.data.squad_dir if spec.is_qa else cfg.data.glue_dir)


def load_cached_task(cfg: Config, spec: TaskSpec) -> CachedTask:
    """The official train and test records of the task from the configured source (no split protocol yet)."""
    if cfg.data.source == "builtin":
        return builtin_task(spec, cfg.data)
    if not manifest_path(cfg.data.dir, spec.name).is_file() and can_auto_import(cfg, spec):
        import_specs(cfg.data.dir, [spec], cfg.data.glue_dir, cfg.data.squad_dir)
    return read_task_cache(cfg.data.dir, spec.name, recovery_hint(cfg, spec))


def expected_rows(cfg: Config, spec: TaskSpec) -> dict[str, int]:
    if cfg.data.source == "builtin":
        return {"train": cfg.data.builtin_train_size, "test": cfg.data.builtin_test_size}
    return dict(spec.official_counts)


def available_tasks(cfg: Config) -> list[str]:
    """Tasks `validate` / `summary` look at by default: all for builtin, else those cached or importable."""
    if cfg.data.source == "builtin":
        return list(TASKS)
    return [t for t, s in TASKS.items() if manifest_path(cfg.data.dir, t).is_file() or can_auto_import(cfg, s)]


def load_split_records(cfg: Config, task: str | None = None) -> tuple[CachedTask, dict[str, list[dict]]]:
    """The cached task and its train / validation / test records after the split protocol; `cached.carve`
    records how validation was carved (grouping, and for SQuAD both sides' unanswerable shares)."""
    return split_records(cfg, get_task(task or cfg.task))


def split_records(cfg: Config, spec: TaskSpec) -> tuple[CachedTask, dict[str, list[dict]]]:
    """load_split_records for a task already looked up."""
    cached = load_cached_task(cfg, spec)
    splits, cached.carve = build_splits_recorded(cached.train, cached.test, spec, cfg.data)
    return cached, splits


def load_task_splits(cfg: Config, task: str | None = None) -> DatasetDict:
    """DatasetDict with "train", "validation", "test" of canonical records (task defaults to cfg.task)."""
    spec = get_task(task or cfg.task)
    _, splits = split_records(cfg, spec)
    return to_dataset_dict(spec, splits)


def dataset_features(spec: TaskSpec) -> Features:
    """Explicit features: a split with no answerable question would otherwise infer list<null> answers."""
    from datasets import ClassLabel, Features, List, Value

    if spec.is_qa:
        return Features({
            "id": Value("string"), "title": Value("string"), "context": Value("string"),
            "question": Value("string"),
            "answers": {"text": List(Value("string")), "answer_start": List(Value("int32"))},
        })
    return Features({"idx": Value("int64"), "text_a": Value("string"), "text_b": Value("string"),
                     "label": ClassLabel(names=list(spec.label_names))})


def to_dataset_dict(spec: TaskSpec, splits: dict[str, list[dict]]) -> DatasetDict:
    from datasets import Dataset, DatasetDict

    features = dataset_features(spec)
    return DatasetDict({s: Dataset.from_list(splits[s], features=features) for s in SPLITS})


def validate_loaded_task(cfg: Config, task: str):
    """What `tunebench data validate` checks for one task: (findings, cached task, splits)."""
    from tunebench.data.validate import validate_task

    spec = get_task(task)
    cached, splits = split_records(cfg, spec)
    rows = {"train": len(cached.train), "test": len(cached.test)}
    findings = validate_task(spec, rows, splits, expected_rows(cfg, spec), cached.manifest, cfg.data, cached.carve)
    return findings, cached, splits
