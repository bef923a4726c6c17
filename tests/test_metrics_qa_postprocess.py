"""QA post-processing for a causal decoder on hand-built logits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tunebench.metrics.qa_postprocess import (
    NO_SPAN_NULL_SCORE_DIFF,
    apply_null_threshold,
    choose_null_threshold,
    postprocess_qa_predictions,
)
from tunebench.metrics.squad import squad_v2_scores

CONTEXT = "The cat sat on the mat."
# Context tokens: The(0,3) cat(4,7) sat(8,11) on(12,14) the(15,18) mat(19,22) .(22,23)
TOKEN_OFFSETS = [[0, 3], [4, 7], [8, 11], [12, 14], [15, 18], [19, 22], [22, 23]]
N_QUESTION = 3  # positions 0-2: question tokens


def example(qid: str = "e1", context: str = CONTEXT, answers: list[str] | None = None) -> dict:
    answers = answers or []
    return {"id": qid, "title": "t", "context": context, "question": "q?",
            "answers": {"text": answers, "answer_start": [0] * len(answers)}}


def feature(offsets: list, qid: str = "e1", n_question: int = N_QUESTION, n_pad: int = 2) -> dict:
    """[question (None)] + context offsets + [final token (None) = null_index] + [padding (None)]."""
    offset_mapping = [None] * n_question + list(offsets) + [None] + [None] * n_pad
    return {"example_id": qid, "offset_mapping": offset_mapping, "null_index": n_question + len(offsets)}


def logits(length: int, peaks: dict[int, float]) -> np.ndarray:
    x = np.zeros(length, dtype=np.float32)
    for pos, value in peaks.items():
        x[pos] = value
    return x


def ctx_pos(token: int) -> int:
    return N_QUESTION + token  # position of context token `token` in a single-window feature


T = N_QUESTION + len(TOKEN_OFFSETS) + 1 + 2  # 13
NULL = N_QUESTION + len(TOKEN_OFFSETS)        # 10


def run(feats, starts, ends, examples=None, **kw):
    return postprocess_qa_predictions(examples or [example()], feats, starts, ends, **kw)


def test_picks_best_span_and_null_score_diff():
    s = logits(T, {ctx_pos(1): 4.0, NULL: 1.0})
    e = logits(T, {ctx_pos(2): 3.0, NULL: 0.5})
    out = run([feature(TOKEN_OFFSETS)], [s], [e])
    assert out == {"e1": {"text": "cat sat", "null_score_diff": pytest.approx((1.0 + 0.5) - (4.0 + 3.0))}}


def test_respects_max_answer_length_in_tokens():
    s = logits(T, {ctx_pos(0): 5.0, ctx_pos(4): 2.0})
    e = logits(T, {ctx_pos(5): 5.0})
    assert run([feature(TOKEN_OFFSETS)], [s], [e])["e1"]["text"] == "The cat sat on the mat"  # 6 tokens
    out = run([feature(TOKEN_OFFSETS)], [s], [e], max_answer_length=3)
    # (0, 5) is 6 tokens; best valid: "the mat" (4, 5) = 2 + 5 = 7 beats "The" (0, 0) = 5 + 0.
    assert out["e1"]["text"] == "the mat"
    assert out["e1"]["null_score_diff"] == pytest.approx(0.0 - 7.0)


def test_skips_reversed_spans():
    s = logits(T, {ctx_pos(5): 6.0, ctx_pos(1): 1.0})
    e = logits(T, {ctx_pos(1): 6.0, ctx_pos(2): 1.0})
    # (5, 1) is reversed; best valid: (1, 1) = 1 + 6.
    assert run([feature(TOKEN_OFFSETS)], [s], [e])["e1"]["text"] == "cat"


def test_ignores_none_offsets_and_positions_past_offset_mapping():
    # Highest logits on question tokens, the null token, padding, and two positions beyond offset_mapping.
    long_t = T + 2
    s = logits(long_t, {0: 9.0, NULL: 8.0, T - 1: 9.0, T + 1: 9.0, ctx_pos(3): 1.0})
    e = logits(long_t, {1: 9.0, NULL: 8.0, T - 1: 9.0, T: 9.0, ctx_pos(3): 1.0})
    out = run([feature(TOKEN_OFFSETS)], [s], [e])
    assert out["e1"]["text"] == "on"
    assert out["e1"]["null_score_diff"] == pytest.approx(16.0 - 2.0)


def test_null_score_read_at_null_index_not_position_zero():
    s = logits(T, {0: 50.0, ctx_pos(1): 2.0, NULL: -1.0})
    e = logits(T, {0: 50.0, ctx_pos(1): 2.0, NULL: -2.0})
    out = run([feature(TOKEN_OFFSETS)], [s], [e])
    assert out["e1"] == {"text": "cat", "null_score_diff": pytest.approx(-3.0 - 4.0)}


def test_aggregates_two_windows_of_one_example():
    # Window A: tokens 0-3, window B: tokens 2-6 (overlap 2-3), each with its own question prefix and null.
    fa, fb = feature(TOKEN_OFFSETS[:4], n_pad=0), feature(TOKEN_OFFSETS[2:], n_pad=0)
    ta, tb = len(fa["offset_mapping"]), len(fb["offset_mapping"])
    # A: best span "cat" (token 1) = 3; null 1.0.  B: best span "the mat" (tokens 4-5) = 5; null 3.0.
    sa = logits(ta, {N_QUESTION + 1: 1.5, fa["null_index"]: 0.5})
    ea = logits(ta, {N_QUESTION + 1: 1.5, fa["null_index"]: 0.5})
    sb = logits(tb, {N_QUESTION + 2: 2.0, fb["null_index"]: 1.5})
    eb = logits(tb, {N_QUESTION + 3: 3.0, fb["null_index"]: 1.5})
    # Ragged logits (one array per feature) are accepted.
    out = run([fa, fb], [sa, sb], [ea, eb])
    # Best span over windows: B's "the mat"; null = min over windows = A's 1.0.
    assert out["e1"] == {"text": "the mat", "null_score_diff": pytest.approx(1.0 - 5.0)}


def test_several_examples_and_feature_order():
    ex2 = example("e2", context="Paris is big.")
    f1 = feature(TOKEN_OFFSETS)
    f2 = feature([[0, 5], [6, 8], [9, 12]], qid="e2")
    t2 = len(f2["offset_mapping"])
    s2, e2 = logits(t2, {N_QUESTION: 3.0}), logits(t2, {N_QUESTION: 3.0})
    s1, e1 = logits(T, {ctx_pos(5): 1.0}), logits(T, {ctx_pos(5): 1.0})
    # Features interleaved in any order; padded to one (F, T) array.
    starts = np.zeros((2, T), dtype=np.float32)
    ends = np.zeros((2, T), dtype=np.float32)
    starts[0, :t2], ends[0, :t2], starts[1], ends[1] = s2, e2, s1, e1
    out = run([f2, f1], starts, ends, examples=[example(), ex2])
    assert list(out) == ["e1", "e2"]
    assert out["e1"]["text"] == "mat" and out["e2"]["text"] == "Paris"


def test_no_valid_span_is_json_safe_no_answer():
    # n_best_size=1: the single best start and end are non-context positions -> no candidate span at all.
    s, e = logits(T, {0: 5.0}), logits(T, {1: 5.0})
    out = run([feature(TOKEN_OFFSETS)], [s], [e], n_best_size=1)
    assert out["e1"] == {"text": "", "null_score_diff": NO_SPAN_NULL_SCORE_DIFF}
    json.dumps(out, allow_nan=False)
    assert apply_null_threshold(out, 1e6) == {"e1": ""}


def test_input_mismatches_rejected():
    with pytest.raises(ValueError, match="features"):
        run([feature(TOKEN_OFFSETS)], [], [])
    with pytest.raises(ValueError, match="unknown example"):
        run([feature(TOKEN_OFFSETS, qid="zz")], [logits(T, {})], [logits(T, {})])
    with pytest.raises(ValueError, match="no features"):
        run([], [], [])


def test_apply_null_threshold_strictly_greater():
    raw = {"a": {"text": "cat", "null_score_diff": -1.0}, "b": {"text": "mat", "null_score_diff": 0.5}}
    assert apply_null_threshold(raw, 0.0) == {"a": "cat", "b": ""}
    assert apply_null_threshold(raw, 0.5) == {"a": "cat", "b": "mat"}


EXAMPLES = [
    example("x1", answers=["cat"]),
    example("x2"),
    example("x3", answers=["sat on"]),
    example("x4"),
]
RAW = {
    "x1": {"text": "cat", "null_score_diff": -2.0},      # correct
    "x2": {"text": "mat", "null_score_diff": 1.0},       # unanswerable: answering costs 1
    "x3": {"text": "sat", "null_score_diff": 0.5},       # exact 0, F1 2/3
    "x4": {"text": "the mat", "null_score_diff": 3.0},   # unanswerable
}


def test_choose_null_threshold_by_hand():
    thresh, best = choose_null_threshold(EXAMPLES, RAW)
    # Start from all no-answer: 2. Ascending: x1 +1 -> 3 @-2.0; x3 +0 (exact) / +2/3 (F1) @0.5; x2 -1; x4 -1.
    assert best["best_exact"] == 75.0 and best["best_exact_thresh"] == -2.0
    assert best["best_f1"] == pytest.approx(100 * (3 + 2 / 3) / 4)
    assert thresh == best["best_f1_thresh"] == 0.5
    # Applying the chosen threshold reproduces the searched F1 with the official metric.
    out, _ = squad_v2_scores(EXAMPLES, apply_null_threshold(RAW, thresh))
    assert out["f1"] == pytest.approx(best["best_f1"])


def test_choose_null_threshold_needs_every_example():
    with pytest.raises(ValueError, match="no raw prediction"):
        choose_null_threshold(EXAMPLES, {"x1": RAW["x1"]})


def test_choose_null_threshold_answers_nothing_when_nothing_beats_all_null():
    # Every answer is wrong, null_score_diff straddles 0: the official search keeps its 0.0 threshold, which
    # would answer x1 and x3 (and score below best_f1); the returned threshold answers nothing.
    raw = {"x1": {"text": "dog", "null_score_diff": -1.0}, "x2": {"text": "mat", "null_score_diff": -0.5},
           "x3": {"text": "mat", "null_score_diff": 0.2}, "x4": {"text": "the", "null_score_diff": 2.0}}
    thresh, best = choose_null_threshold(EXAMPLES, raw)
    assert best["best_f1"] == 50.0 and best["best_f1_thresh"] == 0.0
    assert thresh < -1.0
    applied = apply_null_threshold(raw, thresh)
    assert set(applied.values()) == {""}
    out, _ = squad_v2_scores(EXAMPLES, applied)
    assert out["f1"] == best["best_f1"]
