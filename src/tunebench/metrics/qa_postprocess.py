"""Start/end logits of a causal decoder -> SQuAD v2 answers (pure numpy).

Follows the transformers QA example (`examples/pytorch/question-answering/utils_qa.py`,
`postprocess_qa_predictions` with version_2_with_negative=True): per feature, the n-best start and end
positions by argsort; spans outside the context, reversed, or longer than max_answer_length tokens are skipped;
an example's null score is the minimum over its features and is compared with the best non-null span over all
its features. One change for a causal decoder: the null score is read at each feature's `null_index` (a final
token that has seen the whole input), not at position 0, which under causal attention has seen nothing.

Feature (from the feature builder): {"example_id": str, "offset_mapping": [[char_start, char_end] | None, ...],
"null_index": int}; offset_mapping has one entry per token position and None for every non-context position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tunebench.metrics.squad import find_all_best_thresh, get_raw_scores, has_answer

# null_score_diff of an example without a single valid span: "always no answer" at any sane threshold, yet
# finite so prediction files stay strict JSON (utils_qa would invent the answer "empty" with score 0 instead).
NO_SPAN_NULL_SCORE_DIFF = 1e9


def postprocess_qa_predictions(
    examples: Sequence[Mapping],
    features: Sequence[Mapping],
    start_logits: Sequence[np.ndarray] | np.ndarray,
    end_logits: Sequence[np.ndarray] | np.ndarray,
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> dict[str, dict]:
    """Per example id: {"text": best non-null answer, "null_score_diff": null score - best span score}.

    `start_logits[i]` / `end_logits[i]` are the (T_i,) logits of feature i (a padded (F, T) array works: a
    position past the feature's offset_mapping is skipped). Positive null_score_diff = the model prefers
    "no answer"; `apply_null_threshold` turns these into final predictions.
    """
    if not (len(features) == len(start_logits) == len(end_logits)):
        raise ValueError(
            f"{len(features)} features but {len(start_logits)} start and {len(end_logits)} end logit rows"
        )
    features_per_example: dict[str, list[int]] = {ex["id"]: [] for ex in examples}
    for i, feature in enumerate(features):
        if feature["example_id"] not in features_per_example:
            raise ValueError(f"feature {i} belongs to unknown example {feature['example_id']!r}")
        features_per_example[feature["example_id"]].append(i)

    raw_preds: dict[str, dict] = {}
    for ex in examples:
        null_score = None
        best_score, best_text = None, ""
        for i in features_per_example[ex["id"]]:
            s, e = np.asarray(start_logits[i]), np.asarray(end_logits[i])
            null_index = features[i]["null_index"]
            feature_null = s[null_index] + e[null_index]
            # utils_qa: the example's null score is the minimum over its features (all must agree on "null").
            if null_score is None or feature_null < null_score:
                null_score = feature_null
            span = _best_span(ex["context"], features[i]["offset_mapping"], s, e, n_best_size, max_answer_length)
            # Strict ">" keeps the first of equal scores, like utils_qa's stable sort over features in order.
            if span is not None and (best_score is None or span[0] > best_score):
                best_score, best_text = span
        if null_score is None:
            raise ValueError(f"example {ex['id']!r} has no features")
        diff = NO_SPAN_NULL_SCORE_DIFF if best_score is None else float(null_score - best_score)
        raw_preds[ex["id"]] = {"text": best_text, "null_score_diff": diff}
    return raw_preds


def _best_span(
    context: str,
    offsets: Sequence[Sequence[int] | None],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best_size: int,
    max_answer_length: int,
) -> tuple[float, str] | None:
    """Highest-scoring valid span of one feature with non-empty text: (start + end logit, text), or None."""
    # Same candidate set and order as utils_qa: top-n starts x top-n ends, start-major.
    start_indexes = np.argsort(start_logits)[-1 : -n_best_size - 1 : -1]  # (n,)
    end_indexes = np.argsort(end_logits)[-1 : -n_best_size - 1 : -1]  # (n,)
    start_ok = np.array([_is_context(offsets, i) for i in start_indexes.tolist()], dtype=bool)
    end_ok = np.array([_is_context(offsets, i) for i in end_indexes.tolist()], dtype=bool)
    si, ei = start_indexes[:, None], end_indexes[None, :]  # (n, 1), (1, n)
    length = ei - si + 1
    valid = start_ok[:, None] & end_ok[None, :] & (length >= 1) & (length <= max_answer_length)  # (n, n)
    rows, cols = np.nonzero(valid)  # C order = utils_qa's loop order
    scores = start_logits[start_indexes[rows]] + end_logits[end_indexes[cols]]
    # utils_qa takes the best prediction with non-empty text; a stable sort keeps loop order among ties.
    for k in np.argsort(-scores, kind="stable").tolist():
        text = context[offsets[start_indexes[rows[k]]][0] : offsets[end_indexes[cols[k]]][1]]
        if text:
            return float(scores[k]), text
    return None


def _is_context(offsets: Sequence[Sequence[int] | None], index: int) -> bool:
    # Out of this feature's positions (padding past offset_mapping) or a non-context token (None).
    return index < len(offsets) and offsets[index] is not None


def apply_null_threshold(raw_preds: Mapping[str, Mapping], threshold: float) -> dict[str, str]:
    """Final answers: "" where null_score_diff > threshold (utils_qa's rule), else the best span's text."""
    return {qid: "" if p["null_score_diff"] > threshold else p["text"] for qid, p in raw_preds.items()}


def choose_null_threshold(examples: Sequence[Mapping], raw_preds: Mapping[str, Mapping]) -> tuple[float, dict]:
    """The null_score_diff threshold maximizing F1 on `examples`, and the official best-threshold figures.

    Only ever call this on the validation split, never on test: the threshold is a tuned hyperparameter and is
    then applied unchanged to the test split with `apply_null_threshold`.

    Uses the official SQuAD 2.0 `find_best_thresh` with na_probs = null_score_diff and predictions = the best
    non-null texts, so "" where null_score_diff > threshold reproduces the search. Returns (best_f1_thresh,
    {"best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"}), scores on the official 0-100 scale.
    When no threshold beats answering "no answer" everywhere, the official figures keep their 0.0 threshold but
    the returned threshold is below every null_score_diff, so applying it answers nothing (= best_f1).
    """
    missing = [ex["id"] for ex in examples if ex["id"] not in raw_preds]
    if missing:
        raise ValueError(f"no raw prediction for {len(missing)} example(s), e.g. {missing[0]!r}")
    texts = {ex["id"]: raw_preds[ex["id"]]["text"] for ex in examples}
    na_probs = {ex["id"]: raw_preds[ex["id"]]["null_score_diff"] for ex in examples}
    qid_to_has_ans = {ex["id"]: has_answer(ex) for ex in examples}
    exact_raw, f1_raw = get_raw_scores(examples, texts)
    best = find_all_best_thresh(texts, exact_raw, f1_raw, na_probs, qid_to_has_ans)
    threshold = float(best["best_f1_thresh"])
    all_null_f1 = 100.0 * sum(not v for v in qid_to_has_ans.values()) / max(len(qid_to_has_ans), 1)
    if na_probs and best["best_f1"] <= all_null_f1 and min(na_probs.values()) <= threshold:
        # The official search reports 0.0 when nothing beats "no answer" everywhere; applying 0.0 would answer
        # every question with null_score_diff <= 0 and score below best_f1. Return a threshold that really
        # answers nothing, so applying it reproduces best_f1.
        threshold = min(na_probs.values()) - 1.0
    return threshold, best
