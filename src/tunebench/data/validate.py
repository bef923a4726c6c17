"""Data checks, pure: records in, findings out (the command prints them).

Levels: "ok", "warning" (worth knowing, the data is usable) and "error" (results on it would be wrong).
Decisions, from what the official data holds:
- Duplicate texts within a GLUE split are a warning: real SST-2 train repeats 371 sentences (5 of them with
  both labels: phrases such as "laughably ") and RTE train repeats 2 pairs. They are part of the official
  data every published number trains on, and the split protocol keeps repeats on one side of train/validation.
- Overlap between train, validation and test is an error (leakage): the official data has none.
- Row counts must equal the official ones, except where a subset is configured or the file is the partial
  SQuAD train (warnings).
- SQuAD: ids unique across all splits, every answer is its context's span, unanswerable <=> no answers
  (checked against the is_impossible count recorded at import), all errors. Repeated (context, question)
  pairs are a warning: the official dev file has 7, the first train articles 14.
- SQuAD: how validation was carved (by article, or by context when the article carve leaves validation's
  unanswerable share more than 5 points from train's; tunebench.data.splits) is always shown, with both
  shares: ok, or a warning when even the context carve leaves them more than 5 points apart.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

from tunebench.config import DataConfig
from tunebench.data.splits import SPLITS, Carve, stratum_of, text_key
from tunebench.data.tasks import TaskSpec

Level = Literal["ok", "warning", "error"]
LEVEL_ORDER = {"ok": 0, "warning": 1, "error": 2}


@dataclass(frozen=True)
class Finding:
    task: str
    split: str      # train | validation | test | all
    check: str      # rows | labels | empty | duplicates | ids | answers | unanswerable | carve | overlap
    level: Level
    message: str


def worst_level(findings: list[Finding]) -> Level:
    return max((f.level for f in findings), key=LEVEL_ORDER.__getitem__, default="ok")


def count_errors(findings: list[Finding]) -> int:
    return sum(f.level == "error" for f in findings)


def _fmt(n: int) -> str:
    return f"{n:,}"


def record_ref(spec: TaskSpec, record: dict) -> str:
    return f"question id {record['id']}" if spec.is_qa else f"idx {record['idx']}"


# ---------------------------------------------------------------- row counts


def check_rows(spec: TaskSpec, cached_rows: dict[str, int], split_rows: dict[str, int], expected: dict[str, int],
               partial: set[str], data: DataConfig) -> list[Finding]:
    """Cached train/test against the expected (official or builtin) counts, then each split's own size."""
    t = spec.name
    n_train, n_val = split_rows["train"], split_rows["validation"]
    carved_train = cached_rows["train"] - n_val if data.max_eval_examples is None else None
    out = [_check_count(t, "train", cached_rows["train"], expected["train"], "train" in partial),
           _check_count(t, "test", cached_rows["test"], expected["test"], "test" in partial)]
    if data.max_train_examples is not None and n_train < cached_rows["train"]:
        out.append(Finding(t, "train", "rows", "warning",
                           f"{_fmt(n_train)} used (subset: data.max_train_examples={data.max_train_examples})"))
    elif carved_train is not None:
        out.append(Finding(t, "train", "rows", "ok", f"{_fmt(carved_train)} after carving validation"))
    level: Level = "warning" if data.max_eval_examples is not None else "ok"
    note = f" (subset: data.max_eval_examples={data.max_eval_examples})" if level == "warning" else ""
    out.append(Finding(t, "validation", "rows", level,
                       f"{_fmt(n_val)} carved from train (data.validation_size={data.validation_size:g}){note}"))
    if data.max_eval_examples is not None and split_rows["test"] < cached_rows["test"]:
        out.append(Finding(t, "test", "rows", "warning", f"{_fmt(split_rows['test'])} used{note}"))
    return out


def _check_count(task: str, split: str, n: int, expected: int, partial: bool) -> Finding:
    if n == expected:
        return Finding(task, split, "rows", "ok", f"{_fmt(n)} = expected {_fmt(expected)}")
    if partial:
        return Finding(task, split, "rows", "warning", f"{_fmt(n)} of {_fmt(expected)} (partial file)")
    return Finding(task, split, "rows", "error", f"{_fmt(n)} rows, expected {_fmt(expected)}")


# ---------------------------------------------------------------- per-split checks


def check_labels(spec: TaskSpec, split: str, records: list[dict]) -> Finding:
    """Classification: every label a known id and every class present. SQuAD: both kinds of question."""
    t = spec.name
    counts = Counter(stratum_of(spec, r) for r in records)
    if spec.is_qa:
        shown = f"answerable {_fmt(counts[True])}, unanswerable {_fmt(counts[False])}"
        level: Level = "ok" if counts[True] and counts[False] else "warning"
        return Finding(t, split, "labels", level, shown)
    unknown = sorted(set(counts) - set(range(spec.num_labels)), key=repr)
    if unknown:
        bad = next(r for r in records if r["label"] in unknown)
        return Finding(t, split, "labels", "error", f"unknown label {bad['label']!r} at {record_ref(spec, bad)} "
                       f"(expected 0..{spec.num_labels - 1})")
    shown = ", ".join(f"{name} {_fmt(counts[i])}" for i, name in enumerate(spec.label_names))
    missing = [name for i, name in enumerate(spec.label_names) if not counts[i]]
    if missing and records:
        return Finding(t, split, "labels", "warning", f"{shown}; no {', '.join(missing)}")
    return Finding(t, split, "labels", "ok", shown)


def check_empty(spec: TaskSpec, split: str, records: list[dict]) -> Finding:
    if not records:
        return Finding(spec.name, split, "empty", "error", "no rows")
    for r in records:
        for name in text_fields(spec):
            value = r.get(name)
            if not isinstance(value, str) or not value.strip():
                return Finding(spec.name, split, "empty", "error", f"empty {name} at {record_ref(spec, r)}")
    return Finding(spec.name, split, "empty", "ok", "no empty texts")


def text_fields(spec: TaskSpec) -> tuple[str, ...]:
    """The record fields that must hold text (SST-2 has no second sentence: text_b is None)."""
    if spec.is_qa:
        return ("context", "question")
    return ("text_a", "text_b") if len(spec.raw_text_fields) > 1 else ("text_a",)


def check_duplicates(spec: TaskSpec, split: str, records: list[dict]) -> Finding:
    """Repeated texts (SQuAD: repeated context + question) -- a warning, see the module docstring."""
    if spec.is_qa:
        counts = Counter((r["context"], r["question"]) for r in records)
        what = "repeated (context, question) pairs"
    else:
        counts = Counter(text_key(spec, r) for r in records)
        what = "repeated texts"
    extra = sum(c - 1 for c in counts.values() if c > 1)
    if not extra:
        return Finding(spec.name, split, "duplicates", "ok", "none")
    detail = f"{_fmt(extra)} {what}"
    if not spec.is_qa:
        labels: dict = {}
        for r in records:
            labels.setdefault(text_key(spec, r), set()).add(r["label"])
        conflicting = sum(len(v) > 1 for v in labels.values())
        detail += f" ({conflicting} with conflicting labels)" if conflicting else ""
    return Finding(spec.name, split, "duplicates", "warning", detail)


def check_answers(spec: TaskSpec, split: str, records: list[dict]) -> Finding:
    """Every answer equals context[answer_start:answer_start + len(text)]."""
    for r in records:
        a = r["answers"]
        if len(a["text"]) != len(a["answer_start"]):
            return Finding(spec.name, split, "answers", "error",
                           f"question id {r['id']}: {len(a['text'])} answer texts but {len(a['answer_start'])} starts")
        for text, start in zip(a["text"], a["answer_start"], strict=True):
            if not text or start < 0 or r["context"][start:start + len(text)] != text:
                return Finding(spec.name, split, "answers", "error",
                               f"question id {r['id']}: answer {text!r} at {start} does not match its context")
    n = sum(len(r["answers"]["text"]) for r in records)
    return Finding(spec.name, split, "answers", "ok", f"{_fmt(n)} answers match their context")


def check_unique_ids(spec: TaskSpec, split: str, records: list[dict]) -> Finding:
    counts = Counter(r["id"] for r in records)
    dup = next((i for i, c in counts.items() if c > 1), None)
    if dup is not None:
        return Finding(spec.name, split, "ids", "error", f"question id {dup} appears {counts[dup]} times")
    return Finding(spec.name, split, "ids", "ok", f"{_fmt(len(counts))} unique ids")


def check_unanswerable(spec: TaskSpec, split: str, records: list[dict], flagged: int | None,
                       official: int | None) -> Finding:
    """Questions without answers against the is_impossible count recorded at import and the official count."""
    n = sum(not r["answers"]["text"] for r in records)
    if flagged is not None and n != flagged:
        return Finding(spec.name, split, "unanswerable", "error",
                       f"{_fmt(n)} questions without answers but {_fmt(flagged)} marked is_impossible")
    if official is not None and n != official:
        return Finding(spec.name, split, "unanswerable", "error", f"{_fmt(n)}, official {_fmt(official)}")
    return Finding(spec.name, split, "unanswerable", "ok", f"{_fmt(n)} without answers")


def check_split(spec: TaskSpec, split: str, records: list[dict]) -> list[Finding]:
    """The record-level checks for one split (also run by import and download before writing)."""
    out = [check_labels(spec, split, records), check_empty(spec, split, records)]
    if spec.is_qa:
        out += [check_unique_ids(spec, split, records), check_answers(spec, split, records)]
    out.append(check_duplicates(spec, split, records))
    return out


def check_carve(spec: TaskSpec, carve: Carve) -> Finding:
    """SQuAD: the validation carve's grouping and both unanswerable shares (tunebench.data.splits)."""
    level: Level = "ok" if carve.within_tolerance() else "warning"
    return Finding(spec.name, "validation", "carve", level, carve.describe())


# ---------------------------------------------------------------- across splits


def check_overlap(spec: TaskSpec, splits: dict[str, list[dict]]) -> list[Finding]:
    """No text (SQuAD: no context, no question id) shared between two splits."""
    keys = {s: {text_key(spec, r) for r in splits[s]} for s in SPLITS}
    ids = {s: {r["id"] for r in splits[s]} for s in SPLITS} if spec.is_qa else None
    what = "contexts" if spec.is_qa else "texts"
    out = []
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        shared = len(keys[a] & keys[b])
        shared_ids = len(ids[a] & ids[b]) if ids else 0
        if shared or shared_ids:
            detail = f"{_fmt(shared)} {what}" + (f", {_fmt(shared_ids)} question ids" if shared_ids else "")
            out.append(Finding(spec.name, f"{a}/{b}", "overlap", "error", f"{detail} in both"))
        else:
            out.append(Finding(spec.name, f"{a}/{b}", "overlap", "ok", f"no shared {what}"))
    return out


def validate_task(spec: TaskSpec, cached_rows: dict[str, int], splits: dict[str, list[dict]],
                  expected: dict[str, int], manifest: dict, data: DataConfig,
                  carve: Carve | None = None) -> list[Finding]:
    """Every check for one task: counts, then each split, the carve (SQuAD), then overlap between splits."""
    partial = set(manifest.get("partial", []))
    split_rows = {s: len(splits[s]) for s in SPLITS}
    out = check_rows(spec, cached_rows, split_rows, expected, partial, data)
    for split in SPLITS:
        out += check_split(spec, split, splits[split])
    if spec.is_qa:
        out += _check_cached_unanswerable(spec, manifest, splits, partial, data)
        out += [check_carve(spec, carve)] if carve is not None else []
    return out + check_overlap(spec, splits)


def _check_cached_unanswerable(spec: TaskSpec, manifest: dict, splits: dict[str, list[dict]], partial: set[str],
                               data: DataConfig) -> list[Finding]:
    """Only meaningful on whole cached splits: skip when subsets are configured."""
    flagged = manifest.get("unanswerable", {})
    whole = {"train": splits["train"] + splits["validation"] if data.max_train_examples is None
             and data.max_eval_examples is None else None,
             "test": splits["test"] if data.max_eval_examples is None else None}
    out = []
    for split, records in whole.items():
        if records is None:
            continue
        official = spec.official_unanswerable.get(split) if manifest.get("source") != "builtin" \
            and split not in partial else None
        out.append(check_unanswerable(spec, split, records, flagged.get(split), official))
    return out
