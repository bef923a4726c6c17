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
    assert len(VOCABULARY) == 260


@pytest.mark.parametrize("task", list(TASKS))
def test_text_is_lowercase_words_separated_by_single_spaces(task):
    for r in generate(task, 300, seed=1):
        for t in texts(r):
            assert t == t.lower() == " ".join(t.split())


def test_sst2_label_is_the_polarity_of_its_sentiment_words_flipped_by_not_and_a_coin_flip_when_mixed():
    records = generate("sst2", 500, seed=3)
    kinds = Counter()
    for r in records:
        words = set(r["text_a"].split())
        assert r["text_b"] is None
        positive, negative = bool(words & set(builtin.POSITIVE)), bool(words & set(builtin.NEGATIVE))
        if positive and negative:  # a mixed review: one word of each polarity, the label decided by nothing
            kind = "mixed"
            assert "not" not in words
        elif "not" in words:  # one sentiment word, negated: the label is the opposite of its polarity
            kind = "negated"
            assert positive == (r["label"] == 0)
        else:
            kind = "plain"
            assert positive == (r["label"] == 1) and negative == (r["label"] == 0)
        kinds[kind, r["label"]] += 1
    assert Counter(r["label"] for r in records) == {1: 259, 0: 241}
    assert kinds == {("plain", 1): 188, ("plain", 0): 180, ("negated", 1): 37, ("negated", 0): 36,
                     ("mixed", 1): 34, ("mixed", 0): 25}


def test_mrpc_pairs_are_paraphrases_exactly_when_they_share_the_subject():
    for r in generate("mrpc", 500, seed=3):
        subjects = [set(t.split()) & set(builtin.SUBJECTS) for t in (r["text_a"], r["text_b"])]
        assert all(len(s) == 1 for s in subjects)
        assert (subjects[0] == subjects[1]) == (r["label"] == 1)
        assert r["text_a"] != r["text_b"]  # a restatement, never a copy


def test_mrpc_paraphrases_mostly_reword_verb_and_object_and_unrelated_sentences_mostly_do_not():
    synonyms = {v[1] for v in builtin.VERBS} | {o[1] for o in builtin.OBJECTS}
    reworded = Counter()
    for r in generate("mrpc", 500, seed=3):
        assert not set(r["text_a"].split()) & synonyms  # sentence 1 uses the plain words
        reworded[r["label"], len(set(r["text_b"].split()) & synonyms)] += 1
    assert reworded == {(1, 2): 224, (1, 1): 39, (1, 0): 2, (0, 2): 3, (0, 1): 41, (0, 0): 191}


def _polarity_flipped(sentence: str) -> set[str]:
    """The sentence with its polarity reversed, in every way a fact can be stated or negated."""
    for rel in builtin.RELATIONS.values():
        for v in rel[3]:
            for e in builtin.ENTITIES:
                if sentence == rel[0].format(e=e, v=v):
                    return {rel[1].format(e=e, v=v)}
                if sentence == rel[1].format(e=e, v=v):
                    return {rel[0].format(e=e, v=v)}
    raise AssertionError(sentence)


def test_rte_hypothesis_is_entailed_exactly_when_it_restates_a_premise_fact():
    kinds = Counter()
    for r in generate("rte", 600, seed=3):
        facts = [s.strip() + " ." for s in r["text_a"].split(" .") if s.strip()]
        assert len(facts) == 2
        assert (r["text_b"] in facts) == (r["label"] == 0)  # 0 = entailment (GLUE order)
        entity = r["text_b"].split()[1]
        if r["label"] == 0:
            kind = "restated"
        elif f"the {entity} " in r["text_a"]:  # a premise fact with its polarity reversed
            kind = "contradicted"
            assert _polarity_flipped(r["text_b"]) & set(facts)
        else:
            kind = "absent"
        kinds[kind, " not " in r["text_b"]] += 1
    # "not" in the hypothesis is a strong cue for not_entailment, not a rule: premises state negated facts too
    assert kinds == {("restated", False): 266, ("restated", True): 48, ("contradicted", True): 166,
                     ("contradicted", False): 36, ("absent", False): 71, ("absent", True): 13}


def test_squad_answers_are_exact_spans_and_unanswerable_questions_ask_about_absent_entities():
    records = generate("squad_v2", 1000, seed=3)
    unanswerable = 0
    questions = {rel: q.split("{e}") for rel, (_, _, q, _) in builtin.RELATIONS.items()}
    relation_in_context = Counter()
    for r in records:
        entity = r["question"].split(" the ")[1].split()[0]
        present = f"the {entity} " in r["context"]
        answers = r["answers"]
        (rel,) = [k for k, (a, b) in questions.items() if r["question"].startswith(a) and r["question"].endswith(b)]
        values = builtin.RELATIONS[rel][3]
        if answers["text"]:
            (text,), (start,) = answers["text"], answers["answer_start"]
            assert r["context"][start:start + len(text)] == text
            assert present
            assert text.count(" ") <= 1
            assert text in values[:builtin.SQUAD_VALUES_PER_RELATION]
        else:
            assert answers["answer_start"] == [] and not present
            unanswerable += 1
            # adversarial: the context states a fact under the asked relation (about another entity)
            relation_in_context[any(f" {v} ." in r["context"] for v in values)] += 1
        assert 3 <= r["context"].count(" .") <= 6
    assert unanswerable == 318
    assert relation_in_context == {True: 168, False: 150}
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
