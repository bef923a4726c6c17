"""Split protocol, pure (records in, records out): carve validation from train, then subset.

GLUE test labels are hidden, so the official dev split is our test split and model selection needs its own
validation split carved from train:
- classification: stratified by label, and identical texts stay together (real SST-2 train repeats 371
  sentences; a repeat split across train and validation would leak);
- SQuAD: grouped by article (`title`), so no context is shared between train and validation, and articles
  stratified by whether they hold unanswerable questions. When the articles are too few for that to keep
  validation's unanswerable share within 5 points of train's (SHARE_TOLERANCE), grouped by context
  (paragraph) instead, contexts stratified by whether they hold unanswerable questions. The offline partial
  train file needs it: only 2 of its 10 articles hold unanswerable questions, and the article carve at the
  defaults put 23.8% of validation (188/789) but 4.1% of train (160/3,930) unanswerable, so the null threshold
  chosen on validation was tuned under a prior unlike train's and test's (50.1%). The full train file (442
  articles) keeps the article grouping. `Carve` records which grouping was used and both shares.
Then data.max_train_examples subsets train and data.max_eval_examples subsets validation and test (seeded,
stratified by label / answerable). Everything is deterministic for data.split_seed, which stays fixed across
training seeds so every seed sees the same split.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

from tunebench.config import DataConfig
from tunebench.data.tasks import TaskSpec
from tunebench.errors import TunebenchError

SPLITS = ("train", "validation", "test")
SHARE_TOLERANCE = Fraction(5, 100)  # SQuAD: validation's unanswerable share within 5 points of train's

Grouping = Literal["text", "article", "context"]
GROUPING_NAMES: dict[str, str] = {"text": "identical text", "article": "article", "context": "context (paragraph)"}


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


@dataclass(frozen=True)
class Carve:
    """How validation was carved from train, for `data validate` and the run record.

    grouping: "text" (classification: identical texts stay together), "article" or "context" (SQuAD).
    unanswerable: SQuAD only, {"train": [unanswerable, questions], "validation": [...]} of the carve itself
    (before data.max_*_examples subsets, which are stratified by answerability and keep the shares).
    article_unanswerable: the same counts for the article carve when it was rejected for the context grouping.
    """

    grouping: Grouping
    unanswerable: dict[str, list[int]] = field(default_factory=dict)
    article_unanswerable: dict[str, list[int]] | None = None

    def share(self, split: str) -> float:
        """Unanswerable fraction of `split` ("train" or "validation") in this carve."""
        n_unanswerable, n = self.unanswerable[split]
        return n_unanswerable / n if n else 0.0

    def within_tolerance(self) -> bool:
        """Validation's unanswerable share within 5 points of train's (always true without SQuAD counts)."""
        return not self.unanswerable or shares_agree(self.unanswerable)

    def as_dict(self) -> dict:
        """JSON-ready: grouping, counts and shares (the rejected article carve's too, when there was one)."""
        out: dict = {"grouping": self.grouping}
        if self.unanswerable:
            out["unanswerable"] = _counts_dict(self.unanswerable)
        if self.article_unanswerable is not None:
            out["article_unanswerable"] = _counts_dict(self.article_unanswerable)
        return out

    def describe(self) -> str:
        """One line: the grouping and, for SQuAD, validation's and train's unanswerable shares."""
        head = f"grouped by {GROUPING_NAMES[self.grouping]}"
        if not self.unanswerable:
            return head
        now = f"unanswerable: validation {_share_text(self.unanswerable, 'validation')}, " \
              f"train {_share_text(self.unanswerable, 'train')}"
        if self.article_unanswerable is None:
            return f"{head}; {now}"
        rejected = self.article_unanswerable
        return (f"{head}, not article: the article carve left validation {_share_text(rejected, 'validation')} "
                f"unanswerable against train's {_share_text(rejected, 'train')}, more than "
                f"{float(SHARE_TOLERANCE) * 100:g} points apart; {now}")


def _counts_dict(counts: dict[str, list[int]]) -> dict:
    return {s: {"unanswerable": u, "questions": n, "share": round(u / n, 4) if n else 0.0}
            for s, (u, n) in counts.items()}


def _share_text(counts: dict[str, list[int]], split: str) -> str:
    u, n = counts[split]
    return f"{100 * u / n if n else 0.0:.1f}% ({u:,}/{n:,})"


def unanswerable_counts(train: list[dict], validation: list[dict]) -> dict[str, list[int]]:
    """{"train": [unanswerable, questions], "validation": [...]}: a question is unanswerable without answers."""
    return {name: [sum(not r["answers"]["text"] for r in recs), len(recs)]
            for name, recs in (("train", train), ("validation", validation))}


def shares_agree(counts: dict[str, list[int]]) -> bool:
    """Validation's unanswerable share within SHARE_TOLERANCE (5 points) of train's, exactly (no rounding)."""
    (u_t, n_t), (u_v, n_v) = counts["train"], counts["validation"]
    return abs(Fraction(u_v, max(n_v, 1)) - Fraction(u_t, max(n_t, 1))) <= SHARE_TOLERANCE


def carve_validation(records: list[dict], spec: TaskSpec, size: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, validation) from the official train split; both keep the original order."""
    train, validation, _ = carve_validation_recorded(records, spec, size, seed)
    return train, validation


def carve_validation_recorded(records: list[dict], spec: TaskSpec, size: float,
                              seed: int) -> tuple[list[dict], list[dict], Carve]:
    """(train, validation, how): SQuAD by article, by context when the article carve's unanswerable shares
    differ by more than SHARE_TOLERANCE (see the module docstring)."""
    k = resolve_validation_size(size, len(records))
    if not spec.is_qa:
        strata: list[Hashable] = [r["label"] for r in records]
        groups: list[Hashable] = [text_key(spec, r) for r in records]
        return (*_carve(records, strata, groups, k, seed, spec, size, "distinct texts"), Carve("text"))
    train, validation = _carve(records, *_qa_strata_and_groups(records, "title"), k, seed, spec, size, "articles")
    article = unanswerable_counts(train, validation)
    if shares_agree(article):
        return train, validation, Carve("article", article)
    train, validation = _carve(records, *_qa_strata_and_groups(records, "context"), k, seed, spec, size,
                               "contexts")
    return train, validation, Carve("context", unanswerable_counts(train, validation), article)


def _qa_strata_and_groups(records: list[dict], key: str) -> tuple[list[Hashable], list[Hashable]]:
    """Groups by `key` (title or context), each stratified by whether it holds an unanswerable question: in the
    offline partial train only 2 of 10 articles do, and a validation split without any would mis-tune the null
    threshold."""
    with_unanswerable = {r[key] for r in records if not r["answers"]["text"]}
    return [r[key] in with_unanswerable for r in records], [r[key] for r in records]


def _carve(records: list[dict], strata: list[Hashable], groups: list[Hashable], k: int, seed: int, spec: TaskSpec,
           size: float, what: str) -> tuple[list[dict], list[dict]]:
    picked = set(select_grouped_stratified(strata, groups, k, seed))
    if len(picked) == len(records):
        raise TunebenchError(
            f"data.validation_size={size:g}: {spec.name} train has too few {what} to keep any for training"
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
    return build_splits_recorded(train, test, spec, data)[0]


def build_splits_recorded(train: list[dict], test: list[dict], spec: TaskSpec,
                          data: DataConfig) -> tuple[dict[str, list[dict]], Carve]:
    """build_splits, and how validation was carved."""
    train, validation, carve = carve_validation_recorded(train, spec, data.validation_size, data.split_seed)
    return {
        "train": subset_records(train, spec, data.max_train_examples, data.split_seed),
        "validation": subset_records(validation, spec, data.max_eval_examples, data.split_seed),
        "test": subset_records(test, spec, data.max_eval_examples, data.split_seed),
    }, carve


SPLIT_PROTOCOL = (
    "GLUE test labels are hidden, so the official dev split is the test split; validation is carved from train "
    "(seeded by data.split_seed, stratified by label / grouped by SQuAD article, or by SQuAD context when the "
    "article carve leaves validation's unanswerable share more than 5 points from train's; size "
    "data.validation_size); "
    "identical classification texts stay on one side; data.max_train_examples / data.max_eval_examples then "
    "take seeded stratified subsets."
)
