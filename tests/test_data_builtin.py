"""Builtin synthetic tasks: deterministic, no train/test overlap, labels decided by their lexical cue."""

from __future__ import annotations

from collections import Counter

import pytest

from tunebench.config import load_config
from tunebench.data import builtin, load_task_splits
from tunebench.data.builtin import VOCABULARY, dedupe_key, generate, generate_splits
from tunebench.data.tasks import TASKS

TEXT_FIELDS = ("text_a", "text_b", "context", "question")


def texts(record: dict) -> list[str]:
    return [record[k] for k in TEXT_FIELDS if record.get(k)]


@pytest.mark.parametrize("task", list(TASKS))
def test_generation_is_deterministic_per_seed(task):
    a = generate(task, 60, seed=7)
    assert a == generate(task, 60, seed=7)
    assert a != generate(task, 60, seed=8)
    assert len(a) == 60


@pytest.mark.parametrize("task", list(TASKS))
def test_splits_have_exact_sizes_and_no_shared_texts(task):
    splits = generate_splits(task, 1000, 200, split_seed=42)
    assert (len(splits["train"]), len(splits["test"])) == (1000, 200)
    keys = {s: [dedupe_key(task, r) for r in splits[s]] for s in splits}
    if task == "squad_v2":  # several questions share one context: count distinct contexts per split
        keys = {s: list(dict.fromkeys(k)) for s, k in keys.items()}
    assert len(set(keys["train"])) == len(keys["train"])
    assert len(set(keys["test"])) == len(keys["test"])
    assert not set(keys["train"]) & set(keys["test"])
    assert generate_splits(task, 1000, 200, split_seed=42) == splits
    assert generate_splits(task, 1000, 200, split_seed=43)["train"] != splits["train"]


def test_vocabulary_is_exactly_the_emitted_tokens():
    emitted: set[str] = set()
    for task in TASKS:
        for seed in range(3):
            for r in generate(task, 800, seed):
                for t in texts(r):
                    emitted.update(t.split(" "))
    assert emitted == set(VOCABULARY)
    assert list(VOCABULARY) == sorted(set(VOCABULARY))  # deterministic order, no repeats
    assert not {"<unk>", "<s>", "</s>", ""} & set(VOCABULARY)
    assert len(VOCABULARY) == 255


@pytest.mark.parametrize("task", list(TASKS))
def test_text_is_lowercase_words_separated_by_single_spaces(task):
    for r in generate(task, 300, seed=1):
        for t in texts(r):
            assert t == t.lower() == " ".join(t.split())


def test_sst2_label_is_the_polarity_of_its_sentiment_words():
    records = generate("sst2", 500, seed=3)
    for r in records:
        words = set(r["text_a"].split())
        assert r["text_b"] is None
        assert bool(words & set(builtin.POSITIVE)) == (r["label"] == 1)
        assert bool(words & set(builtin.NEGATIVE)) == (r["label"] == 0)
    assert Counter(r["label"] for r in records) == {1: 259, 0: 241}


def test_mrpc_pairs_are_paraphrases_exactly_when_they_share_the_subject():
    for r in generate("mrpc", 500, seed=3):
        subjects = [set(t.split()) & set(builtin.SUBJECTS) for t in (r["text_a"], r["text_b"])]
        assert all(len(s) == 1 for s in subjects)
        assert (subjects[0] == subjects[1]) == (r["label"] == 1)
        assert r["text_a"] != r["text_b"]  # a restatement, never a copy


def test_rte_hypothesis_is_entailed_exactly_when_it_restates_a_premise_fact():
    kinds = Counter()
    for r in generate("rte", 600, seed=3):
        facts = [s.strip() + " ." for s in r["text_a"].split(" .") if s.strip()]
        assert 2 <= len(facts) <= 3
        assert (r["text_b"] in facts) == (r["label"] == 0)  # 0 = entailment (GLUE order)
        entity = r["text_b"].split()[1]
        kind = "restated" if r["label"] == 0 else ("negated" if " not " in r["text_b"] else "absent")
        assert (f"the {entity} " in r["text_a"]) == (kind != "absent")
        kinds[kind] += 1
    assert kinds == {"restated": 281, "negated": 215, "absent": 104}


def test_squad_answers_are_exact_spans_and_unanswerable_questions_ask_about_absent_entities():
    records = generate("squad_v2", 1000, seed=3)
    unanswerable = 0
    for r in records:
        entity = r["question"].split(" the ")[1].split()[0]
        present = f"the {entity} " in r["context"]
        answers = r["answers"]
        if answers["text"]:
            (text,), (start,) = answers["text"], answers["answer_start"]
            assert r["context"][start:start + len(text)] == text
            assert present
            assert text.count(" ") <= 1
        else:
            assert answers["answer_start"] == [] and not present
            unanswerable += 1
        assert 3 <= r["context"].count(" .") <= 6
    assert 1 / 3 <= unanswerable / len(records) <= 1 / 2
    assert len({r["id"] for r in records}) == len(records)


def test_load_task_splits_builtin_carves_validation():
    cfg = load_config([], ["data.source=builtin", "data.builtin_train_size=300", "data.builtin_test_size=50"])
    for task in ("sst2", "squad_v2"):
        splits = load_task_splits(cfg, task)
        assert set(splits) == {"train", "validation", "test"}
        assert len(splits["train"]) + len(splits["validation"]) == 300
        assert len(splits["test"]) == 50
    splits = load_task_splits(cfg)  # cfg.task = sst2
    assert (len(splits["train"]), len(splits["validation"])) == (270, 30)
    assert splits["train"].features["label"].names == ["negative", "positive"]
    assert splits["train"][0].keys() == {"idx", "text_a", "text_b", "label"}
