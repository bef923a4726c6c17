"""The split protocol, pure: carve validation from train (stratified / grouped), then seeded subsets."""

from __future__ import annotations

from collections import Counter

import pytest

from tunebench.config import DataConfig
from tunebench.data.splits import (
    Carve,
    allocate_proportionally,
    build_splits,
    build_splits_recorded,
    carve_validation,
    carve_validation_recorded,
    resolve_validation_size,
    select_grouped_stratified,
    shares_agree,
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


def make_squad_paragraphs(articles: dict[str, tuple[int, int, int]]) -> list[dict]:
    """title -> (contexts, answerable, unanswerable questions per context)."""
    records = []
    for title, (contexts, answerable, unanswerable) in articles.items():
        for c in range(contexts):
            context = f"context {c} of {title} ."
            for j in range(answerable + unanswerable):
                answers = {"text": ["context"], "answer_start": [0]} if j < answerable \
                    else {"text": [], "answer_start": []}
                records.append({"id": f"{title}-{c}-{j}", "title": title, "context": context,
                                "question": f"q {j} ?", "answers": answers})
    return records


def unanswerable_share(records: list[dict]) -> float:
    return sum(not r["answers"]["text"] for r in records) / len(records)


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


def test_squad_groups_keep_unanswerable_articles_in_validation():
    # like the offline partial train: only 2 of 10 articles hold unanswerable questions (one context each, so
    # the context fallback the article carve's imbalance triggers takes the same whole articles)
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


def test_many_articles_keep_the_article_grouping():
    # like the full train file: unanswerable questions spread over many articles, so whole articles balance
    articles = {f"u{i}": (3, 2, 1) for i in range(30)} | {f"a{i}": (3, 3, 0) for i in range(10)}
    records = make_squad_paragraphs(articles)  # 360 questions, 90 unanswerable
    for seed in range(5):
        train, val, carve = carve_validation_recorded(records, SQUAD, 0.1, seed=seed)
        assert carve.grouping == "article" and carve.article_unanswerable is None
        assert not {r["title"] for r in train} & {r["title"] for r in val}
        assert abs(unanswerable_share(val) - unanswerable_share(train)) <= 0.05
    # 0.1 of 360 = 36: quotas 27 of the 270 in unanswerable articles and 9 of the 90, in articles of 9;
    # 27 = three articles (3 unanswerable each), 9 = one answerable-only: validation 9/36, train 81/324
    train, val, carve = carve_validation_recorded(records, SQUAD, 0.1, seed=0)
    assert carve.unanswerable == {"train": [81, 324], "validation": [9, 36]}
    assert carve.describe() == "grouped by article; unanswerable: validation 25.0% (9/36), train 25.0% (81/324)"


def test_too_few_articles_group_by_context_instead():
    # like the offline partial train: 2 of 10 articles hold unanswerable questions; 4 contexts of 10 each
    articles = {f"a{i}": (4, 10, 0) for i in range(8)} | {"u1": (4, 5, 5), "u2": (4, 5, 5)}
    records = make_squad_paragraphs(articles)  # 400 questions, 40 unanswerable
    for seed in range(5):
        train, val, carve = carve_validation_recorded(records, SQUAD, 0.2, seed=seed)
        assert carve.grouping == "context"
        assert not {r["context"] for r in train} & {r["context"] for r in val}
        assert len(train) + len(val) == 400
        # quotas 64 and 16 of k = 80. Articles of 40: 80 + 40, 20 unanswerable in validation (16.7%) against
        # 20 of 280 (7.1%), 9.5 points apart. Contexts of 10: 60 + 20, 10 of 80 (12.5%) against 30 of 320 (9.4%).
        assert carve.article_unanswerable == {"train": [20, 280], "validation": [20, 120]}
        assert carve.unanswerable == {"train": [30, 320], "validation": [10, 80]}
    assert carve.describe() == (
        "grouped by context (paragraph), not article: the article carve left validation 16.7% (20/120) "
        "unanswerable against train's 7.1% (20/280), more than 5 points apart; unanswerable: validation 12.5% "
        "(10/80), train 9.4% (30/320)")
    assert carve.as_dict()["article_unanswerable"]["validation"] == {"unanswerable": 20, "questions": 120,
                                                                     "share": 0.1667}
    assert carve.share("validation") == 0.125 and carve.within_tolerance()


def test_share_tolerance_is_exact_at_five_points():
    assert shares_agree({"train": [1, 10], "validation": [3, 20]})        # 10% and 15%: exactly 5 points
    assert not shares_agree({"train": [1, 10], "validation": [31, 200]})  # 15.5%
    assert shares_agree({"train": [0, 10], "validation": [0, 3]})


def test_classification_carve_is_recorded_as_text_grouping():
    _, _, carve = carve_validation_recorded(make_classification(100), SST2, 0.1, seed=0)
    assert carve == Carve("text") and carve.as_dict() == {"grouping": "text"}
    assert carve.describe() == "grouped by identical text"


def test_real_partial_train_is_grouped_by_context_with_balanced_shares(shared_data):
    from tunebench.data.raw import read_squad_json

    records, _ = read_squad_json(shared_data / "squad_v2" / "train-v2.0.partial.json")
    data = DataConfig()  # validation_size 0.1, split_seed 42
    splits, carve = build_splits_recorded(records, [], SQUAD, data)
    # the article carve put 188 of 789 validation questions unanswerable against 160 of 3,930 in train
    assert carve.article_unanswerable == {"train": [160, 3_930], "validation": [188, 789]}
    assert carve.grouping == "context"
    assert carve.unanswerable == {"train": [317, 4_245], "validation": [31, 474]}   # 7.5% and 6.5%
    assert abs(unanswerable_share(splits["validation"]) - unanswerable_share(splits["train"])) <= 0.05
    assert not {r["context"] for r in splits["train"]} & {r["context"] for r in splits["validation"]}
    again, _ = build_splits_recorded(records, [], SQUAD, data)
    assert again == splits
    other, other_carve = build_splits_recorded(records, [], SQUAD, DataConfig(split_seed=43))
    assert other["validation"] != splits["validation"] and other_carve.within_tolerance()


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
