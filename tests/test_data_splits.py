"""The split protocol, pure: carve validation from train (stratified / grouped), then seeded subsets."""

from __future__ import annotations

from collections import Counter

import pytest

from tunebench.config import DataConfig
from tunebench.data.splits import (
    allocate_proportionally,
    build_splits,
    carve_validation,
    resolve_validation_size,
    select_grouped_stratified,
    subset_records,
)
from tunebench.data.tasks import get_task
from tunebench.errors import TunebenchError

SST2, SQUAD = get_task("sst2"), get_task("squad_v2")


def make_classification(n: int, positive_every: int = 3) -> list[dict]:
    """n records, 1 in `positive_every` positive; every text distinct."""
    return [{"idx": i, "text_a": f"text {i} .", "text_b": None, "label": int(i % positive_every == 0)}
            for i in range(n)]


def make_squad(articles: dict[str, tuple[int, int]]) -> list[dict]:
    """title -> (answerable, unanswerable) question counts; one context per article."""
    records = []
    for title, (answerable, unanswerable) in articles.items():
        context = f"context of {title} ."
        for j in range(answerable + unanswerable):
            answers = {"text": ["context"], "answer_start": [0]} if j < answerable else {"text": [], "answer_start": []}
            records.append({"id": f"{title}-{j}", "title": title, "context": context, "question": f"q {j} ?",
                            "answers": answers})
    return records


def test_validation_size_is_a_fraction_or_a_count():
    assert resolve_validation_size(0.1, 1000) == 100
    assert resolve_validation_size(0.1, 67_349) == 6_735
    assert resolve_validation_size(0.001, 10) == 1     # at least one example
    assert resolve_validation_size(250, 1000) == 250
    with pytest.raises(TunebenchError, match="leaves no training examples"):
        resolve_validation_size(1000, 1000)


def test_allocation_is_proportional_and_exact():
    assert allocate_proportionally({0: 29_780, 1: 37_569}, 6_735) == {0: 2_978, 1: 3_757}
    assert sum(allocate_proportionally({"a": 1, "b": 1, "c": 1}, 2).values()) == 2
    assert allocate_proportionally({0: 10}, 3) == {0: 3}


def test_carving_is_disjoint_complete_stratified_and_deterministic():
    records = make_classification(1000)  # 334 positive, 666 negative
    train, val = carve_validation(records, SST2, 0.1, seed=42)
    train_ids, val_ids = {r["idx"] for r in train}, {r["idx"] for r in val}
    assert len(val) == 100 and len(train) == 900
    assert not train_ids & val_ids and train_ids | val_ids == set(range(1000))
    assert Counter(r["label"] for r in val) == {1: 33, 0: 67}   # 334/1000 and 666/1000 of 100
    assert [r["idx"] for r in train] == sorted(train_ids)        # original order kept
    again_train, again_val = carve_validation(records, SST2, 0.1, seed=42)
    assert again_val == val and again_train == train
    assert carve_validation(records, SST2, 0.1, seed=43)[1] != val


def test_identical_texts_stay_on_one_side():
    records = make_classification(200)
    for i in range(0, 200, 2):  # every text appears twice
        records[i + 1] = dict(records[i + 1], text_a=records[i]["text_a"], label=records[i]["label"])
    for seed in range(5):
        train, val = carve_validation(records, SST2, 0.2, seed=seed)
        assert not {r["text_a"] for r in train} & {r["text_a"] for r in val}
        assert len(val) == 40


def test_squad_is_grouped_by_article_and_keeps_unanswerable_articles_in_validation():
    # like the offline partial train: only 2 of 10 articles hold unanswerable questions
    articles = {f"a{i}": (40, 0) for i in range(8)} | {"u1": (20, 20), "u2": (25, 15)}
    records = make_squad(articles)
    for seed in range(10):
        train, val = carve_validation(records, SQUAD, 0.2, seed=seed)
        assert not {r["title"] for r in train} & {r["title"] for r in val}
        assert not {r["context"] for r in train} & {r["context"] for r in val}
        assert len(train) + len(val) == 400
        assert any(not r["answers"]["text"] for r in val), seed  # an unanswerable article in validation
        assert any(not r["answers"]["text"] for r in train), seed
    # 0.2 of 400 = 80 split into quotas 64 (of the 320 questions in answerable-only articles) and 16 (of 80).
    # Whole articles of 40: 40 + 40 = 80 is closer to 64 than 40 is; the other stratum takes its first article.
    train, val = carve_validation(records, SQUAD, 0.2, seed=0)
    assert sorted(Counter(r["title"].startswith("u") for r in val).items()) == [(False, 80), (True, 40)]
    assert len(train) == 280


def test_carving_everything_is_refused():
    records = make_squad({"only": (10, 5)})
    with pytest.raises(TunebenchError, match="too few articles"):
        carve_validation(records, SQUAD, 0.5, seed=0)


def test_group_selection_takes_whole_groups_closest_to_the_quota():
    strata = [None] * 10
    groups = ["a"] * 6 + ["b"] * 4
    picked = select_grouped_stratified(strata, groups, 3, seed=0)
    assert picked in ([0, 1, 2, 3, 4, 5], [6, 7, 8, 9])  # at least one group, never a partial one


def test_subset_is_exact_stratified_ordered_and_deterministic():
    records = make_classification(900)  # 300 positive
    sub = subset_records(records, SST2, 90, seed=1)
    assert len(sub) == 90
    assert Counter(r["label"] for r in sub) == {1: 30, 0: 60}
    assert [r["idx"] for r in sub] == sorted(r["idx"] for r in sub)
    assert subset_records(records, SST2, 90, seed=1) == sub
    assert subset_records(records, SST2, 90, seed=2) != sub
    assert subset_records(records, SST2, None, seed=1) == records
    assert subset_records(records, SST2, 5000, seed=1) == records


def test_squad_subset_is_stratified_by_answerability():
    records = make_squad({f"a{i}": (6, 4) for i in range(10)})  # 60 answerable, 40 unanswerable
    sub = subset_records(records, SQUAD, 25, seed=0)
    assert Counter(bool(r["answers"]["text"]) for r in sub) == {True: 15, False: 10}


def test_build_splits_carves_before_subsetting():
    records = make_classification(1000)
    test = make_classification(300)
    full = build_splits(records, test, SST2, DataConfig(validation_size=0.1, split_seed=7))
    sub = build_splits(records, test, SST2, DataConfig(validation_size=0.1, split_seed=7,
                                                      max_train_examples=200, max_eval_examples=50))
    assert [len(full[s]) for s in ("train", "validation", "test")] == [900, 100, 300]
    assert [len(sub[s]) for s in ("train", "validation", "test")] == [200, 50, 50]
    # the subset never changes which examples are held out for validation
    assert {r["idx"] for r in sub["validation"]} <= {r["idx"] for r in full["validation"]}
    assert {r["idx"] for r in sub["train"]} <= {r["idx"] for r in full["train"]}
