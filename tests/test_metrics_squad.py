"""SQuAD v2 metrics: hand-computed cases and numbers produced by the official evaluate-v2.0.py logic."""

from __future__ import annotations

import hashlib
import json

import pytest

from shared_assets import SHARED
from tunebench.metrics.squad import (
    compute_exact,
    compute_f1,
    find_best_thresh,
    get_tokens,
    gold_answers,
    missing_prediction_ids,
    normalize_answer,
    squad_v2_scores,
)

DEV_FILE = SHARED / "data" / "squad_v2" / "dev-v2.0.json"


def qa(qid: str, answers: list[str], context: str = "The big black cat sat on the mat in Paris.") -> dict:
    return {"id": qid, "title": "t", "context": context, "question": "q?",
            "answers": {"text": answers, "answer_start": [0] * len(answers)}}


# -- normalization and per-answer scores -----------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("The  Quick, brown FOX!", "quick brown fox"),          # case, punctuation, article, whitespace
    ("an apple a day", "apple day"),
    ("theater and another", "theater and another"),       # articles only as whole words
    ("  Paris.\n", "paris"),
    ("a-b c's", "ab cs"),                                  # ASCII punctuation removed inside words
    ("the.", ""),
    ("café–bar ¿qué?", "café–bar ¿qué"),                   # official: only string.punctuation (ASCII)
    ("A", ""),
])
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_get_tokens_empty_and_normalized():
    assert get_tokens("") == []
    assert get_tokens("The Eiffel  Tower.") == ["eiffel", "tower"]


def test_compute_exact_ignores_case_punctuation_articles():
    assert compute_exact("The Eiffel Tower", "eiffel tower.") == 1
    assert compute_exact("Eiffel Tower", "Eiffel") == 0
    assert compute_exact("", "") == 1


def test_compute_f1_partial_overlap_by_hand():
    # pred [big, cat] vs gold [big, black, cat]: P = 2/2, R = 2/3.
    expected = 2 * (2 / 2 * 2 / 3) / (2 / 2 + 2 / 3)
    assert expected == pytest.approx(0.8)
    assert compute_f1("big black cat", "the big cat") == pytest.approx(expected)
    assert compute_exact("big black cat", "the big cat") == 0


def test_compute_f1_counts_repeated_tokens_once_each():
    # Counter intersection: cat x1, dog x1 -> 2 common of 3 and 3.
    assert compute_f1("cat cat dog", "cat dog dog") == pytest.approx(2 / 3)


def test_compute_f1_no_answer_rules():
    assert compute_f1("", "") == 1.0          # both no-answer
    assert compute_f1("", "Paris") == 0.0     # one empty -> 0
    assert compute_f1("Paris", "") == 0.0
    assert compute_f1("Paris", "the") == 0.0  # normalizes to no tokens
    assert compute_f1("Paris", "London") == 0.0


def test_gold_answers_drop_empty_after_normalization():
    assert gold_answers(qa("q", ["the", "Cat", "."])) == ["Cat"]
    assert gold_answers(qa("q", [])) == [""]
    assert gold_answers(qa("q", [" . "])) == [""]


# -- aggregate ------------------------------------------------------------------------------------------------

EXAMPLES = [
    qa("q1", ["big black cat", "the cat"]),  # pred "the big cat": exact 0, F1 max(0.8, 2/3) = 0.8
    qa("q2", ["Paris"]),                     # pred "paris.": 1, 1
    qa("q3", []),                            # pred "": 1, 1
    qa("q4", []),                            # pred "London": 0, 0
]
PREDS = {"q1": "the big cat", "q2": "paris.", "q3": "", "q4": "London"}


def test_aggregate_and_breakdown_by_hand():
    out, per_q = squad_v2_scores(EXAMPLES, PREDS)
    assert list(out) == ["exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total",
                         "NoAns_exact", "NoAns_f1", "NoAns_total"]
    assert out["exact"] == pytest.approx(50.0)
    assert out["f1"] == pytest.approx(100 * (0.8 + 1 + 1 + 0) / 4)  # 70
    assert out["total"] == 4
    assert (out["HasAns_exact"], out["HasAns_f1"], out["HasAns_total"]) == (50.0, pytest.approx(90.0), 2)
    assert (out["NoAns_exact"], out["NoAns_f1"], out["NoAns_total"]) == (50.0, 50.0, 2)
    assert per_q["q1"] == {"exact": 0.0, "f1": pytest.approx(0.8), "has_answer": True}
    assert per_q["q3"] == {"exact": 1.0, "f1": 1.0, "has_answer": False}
    assert per_q["q4"] == {"exact": 0.0, "f1": 0.0, "has_answer": False}


def test_max_over_gold_answers():
    ex = [qa("q", ["Black Cat", "the big black cat", "cat"])]
    out, per_q = squad_v2_scores(ex, {"q": "big black cat"})
    assert per_q["q"]["exact"] == 1.0 and out["exact"] == 100.0
    out, per_q = squad_v2_scores(ex, {"q": "a cat!"})
    assert per_q["q"]["exact"] == 1.0
    out, per_q = squad_v2_scores(ex, {"q": "black dog"})
    assert per_q["q"]["f1"] == pytest.approx(2 * 0.5 * 0.5 / 1.0)  # vs "Black Cat": P = R = 1/2


def test_unanswerable_scores_one_only_for_empty():
    ex = [qa("q", [])]
    assert squad_v2_scores(ex, {"q": ""})[0]["exact"] == 100.0
    assert squad_v2_scores(ex, {"q": "mat"})[0]["f1"] == 0.0
    # Official: a prediction that normalizes to "" matches the no-answer gold [""].
    assert squad_v2_scores(ex, {"q": "the"})[0]["exact"] == 100.0


def test_breakdown_keys_only_when_present():
    out, _ = squad_v2_scores([qa("a", ["x"])], {"a": "x"})
    assert list(out) == ["exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total"]
    out, _ = squad_v2_scores([qa("n", [])], {"n": ""})
    assert list(out) == ["exact", "f1", "total", "NoAns_exact", "NoAns_f1", "NoAns_total"]


def test_has_answer_decided_before_normalization():
    # Official make_qid_to_has_ans: bool(answers). Gold "." is answerable yet its gold list becomes [""].
    out, per_q = squad_v2_scores([qa("q", ["."])], {"q": ""})
    assert per_q["q"] == {"exact": 1.0, "f1": 1.0, "has_answer": True}
    assert out["HasAns_total"] == 1


def test_missing_prediction_scored_as_no_answer_and_extra_ids_ignored():
    preds = {"q1": "the big cat", "q2": "paris.", "zzz": "ignored"}  # q3, q4 missing -> ""
    out, per_q = squad_v2_scores(EXAMPLES, preds)
    assert out["total"] == 4
    assert per_q["q3"]["exact"] == 1.0 and per_q["q4"]["exact"] == 1.0
    assert out["exact"] == pytest.approx(75.0)
    assert missing_prediction_ids(EXAMPLES, preds) == ["q3", "q4"]
    assert "zzz" not in per_q


def test_empty_examples_rejected():
    with pytest.raises(ValueError):
        squad_v2_scores([], {})


# -- no-answer threshold and best threshold ------------------------------------------------------------------

NA_PROBS = {"q1": 0.9, "q2": 0.1, "q3": 0.8, "q4": 0.95}


def test_apply_no_ans_threshold():
    out, per_q = squad_v2_scores(EXAMPLES, PREDS, na_probs=NA_PROBS, na_prob_thresh=0.5)
    # q1 (0.9 > 0.5) -> no answer on an answerable question: 0; q2 kept: 1; q3, q4 -> no answer: 1.
    assert out["exact"] == 75.0 and out["f1"] == 75.0
    assert per_q["q1"] == {"exact": 0.0, "f1": 0.0, "has_answer": True}
    assert per_q["q4"] == {"exact": 1.0, "f1": 1.0, "has_answer": False}
    # Threshold is strict ">": na_prob == thresh keeps the answer.
    out, _ = squad_v2_scores(EXAMPLES, PREDS, na_probs=NA_PROBS, na_prob_thresh=0.95)
    assert out["NoAns_exact"] == 50.0


def test_best_thresh_by_hand():
    out, _ = squad_v2_scores(EXAMPLES, PREDS, na_probs=NA_PROBS, na_prob_thresh=0.5)
    # Start from all-no-answer: 2 (the NoAns). Ascending na_prob: q2 +1 -> 3 @0.1; q3 (pred "") +0 -> 3;
    # q1 +0 exact / +0.8 F1 -> 3 / 3.8 @0.9; q4 (non-empty pred on NoAns) -1.
    assert out["best_exact"] == 75.0 and out["best_exact_thresh"] == 0.1
    assert out["best_f1"] == pytest.approx(95.0) and out["best_f1_thresh"] == 0.9
    assert list(out)[-4:] == ["best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"]


def test_no_best_keys_without_na_probs():
    out, _ = squad_v2_scores(EXAMPLES, PREDS)
    assert "best_f1" not in out


def test_best_thresh_official_quirks():
    # Nothing beats all-no-answer: the official threshold stays 0.0 (not -inf).
    assert find_best_thresh({"n": "x"}, {"n": 0}, {"n": 0.3}, {"n": False}) == (100.0, 0.0)
    # A NoAns prediction "the" scores 1 (normalizes to "") yet costs 1 in the search (official `if preds[qid]`).
    assert find_best_thresh({"n": "the"}, {"n": 1}, {"n": 0.3}, {"n": False}) == (100.0, 0.0)
    # ... so the search can miss what thresholding achieves: at 0.2 both questions score 1 (100.0), but the
    # search sees start 1 (all no-answer), n: -1 -> 0, a: +1 -> 1, never above the start.
    preds, scores = {"a": "x", "n": "the"}, {"a": 1, "n": 1}
    assert find_best_thresh(preds, scores, {"a": 0.2, "n": 0.1}, {"a": True, "n": False}) == (50.0, 0.0)


def test_na_probs_must_cover_every_question():
    with pytest.raises(ValueError, match="na_probs"):
        squad_v2_scores(EXAMPLES, PREDS, na_probs={"q1": 0.1})


# -- the real official dev file -------------------------------------------------------------------------------

def _load_dev() -> list[dict]:
    if not DEV_FILE.exists():
        pytest.skip(f"{DEV_FILE} not available")
    records = []
    for article in json.loads(DEV_FILE.read_text(encoding="utf-8"))["data"]:
        for p in article["paragraphs"]:
            for q in p["qas"]:
                records.append(qa(q["id"], [a["text"] for a in q["answers"]], p["context"]))
    return records


@pytest.fixture(scope="module")
def dev() -> list[dict]:
    return _load_dev()


def _predictions(records: list[dict], seed: int) -> tuple[dict[str, str], dict[str, float]]:
    """Deterministic mixed predictions (exact, normalized variants, empty, context slices, partial overlap)."""
    preds, na_probs = {}, {}
    for r in records:
        h = int(hashlib.md5(f"{seed}:{r['id']}".encode()).hexdigest(), 16)
        golds, words = r["answers"]["text"], r["context"].split()
        start, length = (h >> 8) % len(words), 1 + (h >> 16) % 5
        context_slice = " ".join(words[start:start + length])
        mode = h % 6
        if mode == 0:
            pred = golds[0] if golds else ""
        elif mode == 1:
            pred = f"The {golds[-1].upper()}." if golds else "the"
        elif mode == 2:
            pred = ""
        elif mode == 3:
            pred = context_slice
        elif mode == 4:
            gw = golds[0].split() if golds else []
            pred = " ".join(gw[: max(1, len(gw) // 2)] + words[start:start + 1])
        else:
            pred = (golds[0] + " " + context_slice) if golds else context_slice
        preds[r["id"]] = pred
        # Correlated with correctness so the best threshold is interior.
        noise = ((h >> 32) % 10000) / 10000.0
        na_probs[r["id"]] = round((noise + (0.6 if not golds else 0.0) + (0.0 if mode in (0, 1) else 0.4)) / 2, 4)
    return preds, na_probs


def test_real_dev_gold_predictions_score_100(dev):
    preds = {r["id"]: (r["answers"]["text"][0] if r["answers"]["text"] else "") for r in dev}
    out, _ = squad_v2_scores(dev, preds)
    assert out == {"exact": 100.0, "f1": 100.0, "total": 11873,
                   "HasAns_exact": 100.0, "HasAns_f1": 100.0, "HasAns_total": 5928,
                   "NoAns_exact": 100.0, "NoAns_f1": 100.0, "NoAns_total": 5945}


def test_real_dev_all_empty(dev):
    out, _ = squad_v2_scores(dev, {r["id"]: "" for r in dev})
    assert out["exact"] == out["f1"] == 5945 / 11873 * 100 == pytest.approx(50.07159100480081)
    assert (out["HasAns_f1"], out["NoAns_f1"]) == (0.0, 100.0)


# Produced by a line-for-line transcription of the official evaluate-v2.0.py (main(), with -n/-t where given)
# run on the real dev file with the predictions above; our implementation matches it bit for bit.
OFFICIAL_SEED0 = {
    "exact": 43.03040512086246, "f1": 52.96495780605717, "total": 11873,
    "HasAns_exact": 34.51417004048583, "HasAns_f1": 54.41176518746815, "HasAns_total": 5928,
    "NoAns_exact": 51.52228763666947, "NoAns_f1": 51.52228763666947, "NoAns_total": 5945,
}
OFFICIAL_SEED1_NA_THRESH_05 = {
    "exact": 66.57963446475196, "f1": 72.49577529979346, "total": 11873,
    "HasAns_exact": 33.063427800269906, "HasAns_f1": 44.91267546127625, "HasAns_total": 5928,
    "NoAns_exact": 100.0, "NoAns_f1": 100.0, "NoAns_total": 5945,
    "best_exact": 63.050619051629745, "best_exact_thresh": 0.4999,
    "best_f1": 68.96675988667181, "best_f1_thresh": 0.4999,
}


def test_real_dev_matches_official_script(dev):
    preds, _ = _predictions(dev, seed=0)
    out, per_q = squad_v2_scores(dev, preds)
    assert out == OFFICIAL_SEED0
    assert 100.0 * sum(q["f1"] for q in per_q.values()) / len(per_q) == out["f1"]


def test_real_dev_matches_official_script_with_na_probs(dev):
    preds, na_probs = _predictions(dev, seed=1)
    out, _ = squad_v2_scores(dev, preds, na_probs=na_probs, na_prob_thresh=0.5)
    assert out == OFFICIAL_SEED1_NA_THRESH_05
