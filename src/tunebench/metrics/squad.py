"""SQuAD v2.0 metrics, exactly as the official evaluation script defines them.

Reference: the official "Official evaluation script for SQuAD version 2.0" (`evaluate-v2.0.py`,
https://rajpurkar.github.io/SQuAD-explorer/). This is our own implementation over canonical QA records, matched
function by function in behaviour (normalization, token F1, max over gold answers, no-answer threshold, best
threshold search, 0-100 output scale, metric names). The one deliberate difference, missing predictions, is
documented on `squad_v2_scores`.

Canonical record: {"id", "title", "context", "question", "answers": {"text": [...], "answer_start": [...]}}
(empty lists = unanswerable).
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Iterable, Mapping, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lowercase, drop punctuation, drop articles, collapse whitespace (official order: lower, punc, art, ws)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def get_tokens(s: str) -> list[str]:
    if not s:
        return []
    return normalize_answer(s).split()


def compute_exact(a_gold: str, a_pred: str) -> int:
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold: str, a_pred: str) -> float:
    gold_toks = get_tokens(a_gold)
    pred_toks = get_tokens(a_pred)
    if not gold_toks or not pred_toks:
        # Official: if either is no-answer, F1 is 1 if they agree (both empty), 0 otherwise.
        return float(gold_toks == pred_toks)
    num_same = sum((collections.Counter(gold_toks) & collections.Counter(pred_toks)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_toks)
    recall = num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def gold_answers(example: Mapping) -> list[str]:
    """Gold texts that survive normalization; [""] for an unanswerable question (official `get_raw_scores`)."""
    answers = [t for t in example["answers"]["text"] if normalize_answer(t)]
    return answers or [""]


def has_answer(example: Mapping) -> bool:
    # Official `make_qid_to_has_ans`: any gold answer at all, before normalization.
    return bool(example["answers"]["text"])


def missing_prediction_ids(examples: Iterable[Mapping], predictions: Mapping[str, str]) -> list[str]:
    return [ex["id"] for ex in examples if ex["id"] not in predictions]


def get_raw_scores(
    examples: Sequence[Mapping], predictions: Mapping[str, str]
) -> tuple[dict[str, int], dict[str, float]]:
    """Per-question exact and F1 (0/1 scale), max over gold answers; a missing prediction counts as ""."""
    exact_scores: dict[str, int] = {}
    f1_scores: dict[str, float] = {}
    for ex in examples:
        golds = gold_answers(ex)
        pred = predictions.get(ex["id"], "")
        exact_scores[ex["id"]] = max(compute_exact(a, pred) for a in golds)
        f1_scores[ex["id"]] = max(compute_f1(a, pred) for a in golds)
    return exact_scores, f1_scores


def apply_no_ans_threshold(
    scores: Mapping[str, float],
    na_probs: Mapping[str, float],
    qid_to_has_ans: Mapping[str, bool],
    na_prob_thresh: float,
) -> dict[str, float]:
    """Questions with na_prob > thresh are answered "no answer": score 1 if unanswerable, else 0 (official)."""
    new_scores: dict[str, float] = {}
    for qid, s in scores.items():
        if na_probs[qid] > na_prob_thresh:
            new_scores[qid] = float(not qid_to_has_ans[qid])
        else:
            new_scores[qid] = s
    return new_scores


def make_eval_dict(
    exact_scores: Mapping[str, float], f1_scores: Mapping[str, float], qid_list: Sequence[str] | None = None
) -> dict[str, float | int]:
    qids = list(exact_scores) if not qid_list else list(qid_list)
    total = len(qids)
    return {
        "exact": 100.0 * sum(exact_scores[k] for k in qids) / total,
        "f1": 100.0 * sum(f1_scores[k] for k in qids) / total,
        "total": total,
    }


def merge_eval(main_eval: dict, new_eval: Mapping, prefix: str) -> None:
    for k, v in new_eval.items():
        main_eval[f"{prefix}_{k}"] = v


def find_best_thresh(
    predictions: Mapping[str, str],
    scores: Mapping[str, float],
    na_probs: Mapping[str, float],
    qid_to_has_ans: Mapping[str, bool],
) -> tuple[float, float]:
    """Best score (0-100) over no-answer thresholds and the threshold achieving it (official `find_best_thresh`).

    Starts from "every question answered no-answer" (score = #unanswerable), then answers questions in
    ascending na_prob order, keeping the first strict improvement. Two official quirks are kept on purpose:
    the threshold is 0.0 (not -inf) when nothing beats all-no-answer, and ties in na_prob are not grouped.
    An unanswerable question costs 1 when its prediction is a non-empty string, even one that normalizes
    to "" (official `if preds[qid]`).
    """
    num_no_ans = sum(1 for k in qid_to_has_ans if not qid_to_has_ans[k])
    cur_score = best_score = num_no_ans
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):  # stable: ties keep na_probs order
        if qid not in scores:
            continue
        if qid_to_has_ans[qid]:
            diff = scores[qid]
        else:
            diff = -1 if predictions.get(qid, "") else 0
        cur_score += diff
        if cur_score > best_score:
            best_score = cur_score
            best_thresh = na_probs[qid]
    return 100.0 * best_score / len(scores), best_thresh


def find_all_best_thresh(
    predictions: Mapping[str, str],
    exact_raw: Mapping[str, float],
    f1_raw: Mapping[str, float],
    na_probs: Mapping[str, float],
    qid_to_has_ans: Mapping[str, bool],
) -> dict[str, float]:
    best_exact, exact_thresh = find_best_thresh(predictions, exact_raw, na_probs, qid_to_has_ans)
    best_f1, f1_thresh = find_best_thresh(predictions, f1_raw, na_probs, qid_to_has_ans)
    return {"best_exact": best_exact, "best_exact_thresh": exact_thresh, "best_f1": best_f1,
            "best_f1_thresh": f1_thresh}


def squad_v2_scores(
    examples: Sequence[Mapping],
    predictions: Mapping[str, str],
    na_probs: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> tuple[dict[str, float | int], dict[str, dict]]:
    """Official SQuAD v2 metrics (0-100) and per-question scores (0-1) for canonical QA records.

    Returns (aggregate, per_question). aggregate has `exact`, `f1`, `total`, then `HasAns_*` / `NoAns_*` only
    when such questions exist, and with `na_probs` also `best_exact`, `best_exact_thresh`, `best_f1`,
    `best_f1_thresh` -- as the official script's `main()` builds it. per_question maps id to
    {"exact", "f1", "has_answer"} after the no-answer threshold, i.e. exactly what the aggregate averages.

    Predictions for ids not in `examples` are ignored (as the official script does). Deviation: a question with
    no prediction is scored as predicted "" (no answer) and counts in `total`; the official script prints
    "Missing prediction for <id>", drops it from `total` and then fails on the HasAns/NoAns breakdown.
    Callers warn with `missing_prediction_ids`.
    """
    if not examples:
        raise ValueError("no SQuAD examples to score")
    qid_to_has_ans = {ex["id"]: has_answer(ex) for ex in examples}
    search_best_thresh = na_probs is not None  # official: only with --na-prob-file
    if na_probs is None:
        na_probs = {qid: 0.0 for qid in qid_to_has_ans}  # official default: 0.0 never exceeds the threshold
    else:
        _check_na_probs(na_probs, qid_to_has_ans)
    exact_raw, f1_raw = get_raw_scores(examples, predictions)
    exact_thresh = apply_no_ans_threshold(exact_raw, na_probs, qid_to_has_ans, na_prob_thresh)
    f1_thresh = apply_no_ans_threshold(f1_raw, na_probs, qid_to_has_ans, na_prob_thresh)

    out_eval = make_eval_dict(exact_thresh, f1_thresh)
    has_ans_qids = [k for k, v in qid_to_has_ans.items() if v]
    no_ans_qids = [k for k, v in qid_to_has_ans.items() if not v]
    if has_ans_qids:
        merge_eval(out_eval, make_eval_dict(exact_thresh, f1_thresh, qid_list=has_ans_qids), "HasAns")
    if no_ans_qids:
        merge_eval(out_eval, make_eval_dict(exact_thresh, f1_thresh, qid_list=no_ans_qids), "NoAns")
    if search_best_thresh:
        out_eval.update(find_all_best_thresh(predictions, exact_raw, f1_raw, na_probs, qid_to_has_ans))
    per_question = {
        qid: {"exact": float(exact_thresh[qid]), "f1": float(f1_thresh[qid]), "has_answer": qid_to_has_ans[qid]}
        for qid in qid_to_has_ans
    }
    return out_eval, per_question


def _check_na_probs(na_probs: Mapping[str, float], qid_to_has_ans: Mapping[str, bool]) -> None:
    missing = [qid for qid in qid_to_has_ans if qid not in na_probs]
    if missing:
        raise ValueError(f"na_probs has no value for {len(missing)} question(s), e.g. {missing[0]!r}")
