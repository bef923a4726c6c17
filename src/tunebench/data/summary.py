"""Split statistics, pure: counts, label distribution and token-length percentiles (values in, values out)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from tunebench.data.splits import stratum_of
from tunebench.data.tasks import TaskSpec

PERCENTILES = (50, 90, 99)


def label_distribution(spec: TaskSpec, records: list[dict]) -> dict[str, int]:
    """Label name -> count (SQuAD: answerable / unanswerable), in label-id order."""
    counts = Counter(stratum_of(spec, r) for r in records)
    if spec.is_qa:
        return {"answerable": counts[True], "unanswerable": counts[False]}
    return {name: counts[i] for i, name in enumerate(spec.label_names)}


def length_percentiles(lengths: Sequence[int]) -> dict[str, int]:
    """Nearest-rank percentiles (p50/p90/p99) and max: "p90 = L" means 90% of examples have at most L tokens,
    which is the number to compare with model.max_length."""
    if not lengths:
        return {**{f"p{p}": 0 for p in PERCENTILES}, "max": 0}
    ordered = sorted(lengths)
    n = len(ordered)
    out = {f"p{p}": ordered[max(1, math.ceil(p / 100 * n)) - 1] for p in PERCENTILES}
    return {**out, "max": ordered[-1]}


def token_lengths(spec: TaskSpec, records: list[dict], tokenizer, batch_size: int = 1000) -> list[int]:
    """Untruncated tokens per example with the tokenizer's special tokens: the sentence (pair), or for SQuAD
    question + context (before any windowing into model.max_length)."""
    if spec.is_qa:
        firsts, seconds = [r["question"] for r in records], [r["context"] for r in records]
    else:
        firsts = [r["text_a"] for r in records]
        seconds = [r["text_b"] for r in records] if records and records[0]["text_b"] is not None else None
    lengths: list[int] = []
    for i in range(0, len(firsts), batch_size):
        a = firsts[i:i + batch_size]
        enc = tokenizer(a, seconds[i:i + batch_size]) if seconds is not None else tokenizer(a)
        lengths.extend(len(ids) for ids in enc["input_ids"])
    return lengths


def summarize_split(spec: TaskSpec, split: str, records: list[dict], lengths: Sequence[int] | None,
                    max_length: int) -> dict:
    """One summary row: counts, labels, and (when lengths are given) percentiles and how many exceed max_length."""
    row: dict = {"task": spec.name, "split": split, "rows": len(records),
                 "labels": label_distribution(spec, records)}
    if lengths is not None:
        row["tokens"] = length_percentiles(lengths)
        row["over_max_length"] = sum(n > max_length for n in lengths)
    return row
