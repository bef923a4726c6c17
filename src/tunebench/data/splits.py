"""Split protocol, pure (records in, records out): carve validation from train, then subset.

GLUE test labels are hidden, so the official dev split is our test split and model selection needs its own
validation split carved from train:
- classification: stratified by label, and identical texts stay together (real SST-2 train repeats 371
  sentences; a repeat split across train and validation would leak);
- SQuAD: grouped by article (`title`), so no context is shared between train and validation, and articles
  stratified by whether they hold unanswerable questions.
Then data.max_train_examples subsets train and data.max_eval_examples subsets validation and test (seeded,
stratified by label / answerable). Everything is deterministic for data.split_seed, which stays fixed across
training seeds so every seed sees the same split.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Sequence

from tunebench.config import DataConfig
from tunebench.data.tasks import TaskSpec
from tunebench.errors import TunebenchError

SPLITS = ("train", "validation", "test")


def resolve_validation_size(size: float, n_train: int) -> int:
    """data.validation_size as a number of examples: a fraction of train (rounded, at least 1) or a count."""
    k = int(size) if size >= 1 else max(1, round(size * n_train))
    if k >= n_train:
        raise TunebenchError(
            f"data.validation_size={size:g}: leaves no training examples ({n_train} in train)"
        )
    return k


def allocate_proportionally(counts: dict[Hashable, int], k: int) -> dict[Hashable, int]:
    """Split k over strata in proportion to their sizes (largest remainder), so totals are exact."""
    total = sum(counts.values())
    exact = {s: k * c / total for s, c in counts.items()}
    quota = {s: int(v) for s, v in exact.items()}
    by_remainder = sorted(counts, key=lambda s: (-(exact[s] - quota[s]), _order(s)))
    for s in by_remainder[: k - sum(quota.values())]:
        quota[s] += 1
    return quota


def select_grouped_stratified(strata: Sequence[Hashable], groups: Sequence[Hashable], k: int,
                              seed: int) -> list[int]:
    """Sorted indices of about k examples taken as whole groups, each stratum in proportion.

    A group's stratum is its first member's. Within a stratum, groups are taken in a seeded random order until
    the quota is met; the last group is taken only if that lands closer to the quota (at least one is taken).
    With singleton groups the result has exactly k examples.
    """
    members: dict[Hashable, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    stratum_groups: dict[Hashable, list[Hashable]] = defaultdict(list)
    stratum_sizes: dict[Hashable, int] = defaultdict(int)
    for g, idx in members.items():
        stratum_groups[strata[idx[0]]].append(g)
        stratum_sizes[strata[idx[0]]] += len(idx)
    quota = allocate_proportionally(stratum_sizes, k)
    rng = random.Random(seed)
    chosen: list[int] = []
    for s in sorted(stratum_groups, key=_order):
        order = list(stratum_groups[s])
        rng.shuffle(order)
        chosen.extend(_take_groups([members[g] for g in order], quota[s]))
    return sorted(chosen)


def _take_groups(ordered: list[list[int]], quota: int) -> list[int]:
    taken: list[int] = []
    for idx in ordered:
        if len(taken) >= quota:
            break
        overshoot = len(taken) + len(idx) - quota
        if taken and overshoot > quota - len(taken):
            break  # stopping short is closer to the quota than taking this group
        taken.extend(idx)
    return taken


def _order(key: Hashable) -> str:
    return repr(key)  # strata may mix types (None, bool, int); repr gives a stable total order


def stratum_of(spec: TaskSpec, record: dict) -> Hashable:
    """Label for classification, answerable or not for SQuAD."""
    return bool(record["answers"]["text"]) if spec.is_qa else record["label"]


def text_key(spec: TaskSpec, record: dict) -> Hashable:
    """What counts as the same example across splits: the text pair, or the SQuAD context."""
    return record["context"] if spec.is_qa else (record["text_a"], record["text_b"])


def carve_validation(records: list[dict], spec: TaskSpec, size: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, validation) from the official train split; both keep the original order."""
    k = resolve_validation_size(size, len(records))
    if spec.is_qa:
        # Articles are stratified by whether they hold unanswerable questions: in the offline partial train
        # only 2 of 10 articles do, and a validation split without any would mis-tune the null threshold.
        with_unanswerable = {r["title"] for r in records if not r["answers"]["text"]}
        strata: list[Hashable] = [r["title"] in with_unanswerable for r in records]
        groups = [r["title"] for r in records]
    else:
        strata = [r["label"] for r in records]
        groups = [text_key(spec, r) for r in records]
    picked = set(select_grouped_stratified(strata, groups, k, seed))
    if len(picked) == len(records):
        raise TunebenchError(
            f"data.validation_size={size:g}: {spec.name} train has too few articles to keep any for training"
        )
    train = [r for i, r in enumerate(records) if i not in picked]
    validation = [r for i, r in enumerate(records) if i in picked]
    return train, validation


def subset_records(records: list[dict], spec: TaskSpec, k: int | None, seed: int) -> list[dict]:
    """A seeded, stratified subset of k records in the original order (all of them when k is None or larger)."""
    if k is None or k >= len(records):
        return list(records)
    strata = [stratum_of(spec, r) for r in records]
    picked = select_grouped_stratified(strata, range(len(records)), k, seed)
    return [records[i] for i in picked]


def build_splits(train: list[dict], test: list[dict], spec: TaskSpec, data: DataConfig) -> dict[str, list[dict]]:
    """The protocol in order: carve validation from the full train split, then subset each split."""
    train, validation = carve_validation(train, spec, data.validation_size, data.split_seed)
    return {
        "train": subset_records(train, spec, data.max_train_examples, data.split_seed),
        "validation": subset_records(validation, spec, data.max_eval_examples, data.split_seed),
        "test": subset_records(test, spec, data.max_eval_examples, data.split_seed),
    }


SPLIT_PROTOCOL = (
    "GLUE test labels are hidden, so the official dev split is the test split; validation is carved from train "
    "(seeded by data.split_seed, stratified by label / grouped by SQuAD article, size data.validation_size); "
    "identical classification texts stay on one side; data.max_train_examples / data.max_eval_examples then "
    "take seeded stratified subsets."
)
