"""SQuAD v2 answerable / unanswerable breakdown (report.qa): exact figures from hand-built metrics, the
always-no-answer baseline, the sentence for a model that answers and one that never does, missing keys,
abstention on each kind of question (rates, gap, Newcombe's interval, the sentences for an uninformative, an
informative, a reversed, a never and an always abstaining model), the split of LoRA - full by question kind,
and the breakdown in report.html, summary.md, tables/squad_v2_breakdown.csv and verdicts.json."""

from __future__ import annotations

import html
import json
import math

import pandas as pd
import pytest

from fake_results import squad_metrics, write_fake_run
from tunebench.report.build import build_report
from tunebench.report.qa import (
    ABSTENTION_WORDS,
    AbstentionCounts,
    OverSeeds,
    abstention_counts,
    has_ans_answered,
    newcombe_interval,
    over_seeds_text,
    qa_breakdown,
    score,
    signed,
    wilson_interval,
)
from tunebench.report.render import qa_display, render_markdown, write_report

H, N = 60, 40           # answerable / unanswerable test questions: always no answer scores F1 40.0
LORA_HAS = [4.0, 5.0, 6.0]
LORA_NO = [90.0, 92.0, 94.0]
THRESHOLDS = [1.0, 2.0, 3.0]
QA_FIELDS = {"has_ans_f1", "no_ans_f1", "has_ans_answered", "null_threshold", "answers", "has_ans_total",
             "no_ans_total", "total", "no_answer_baseline", "qa_sentence", "abstain_has_ans", "abstain_no_ans",
             "abstain_gap", "abstention", "difference_from_has_ans", "difference_from_no_ans"}


def run(seed: int, has: float, no: float, threshold: float | None = None, answered: float | None = None,
        h: int = H, n: int = N, abstained: tuple[int, int] | None = None) -> dict:
    """One run's qa_breakdown input; `abstained`: (answerable, unanswerable) questions given the empty answer."""
    return {"seed": seed, "test": squad_metrics(has, no, h, n), "null_threshold": threshold,
            "has_ans_answered": answered,
            "abstention": None if abstained is None else AbstentionCounts(h, abstained[0], n, abstained[1])}


def lora_runs(answered: float | None = None) -> list[dict]:
    return [run(s, a, b, t, answered) for s, a, b, t in zip((1, 2, 3), LORA_HAS, LORA_NO, THRESHOLDS, strict=True)]


def silent_runs(answered: float | None = 0.0) -> list[dict]:
    """Full fine-tuning that says "no answer" to everything: exactly the baseline."""
    return [run(s, 0.0, 100.0, 7.0, answered) for s in (1, 2, 3)]


# ---------------------------------------------------------------- figures


def test_means_ranges_counts_and_the_baseline_exactly():
    qa = qa_breakdown({"full": silent_runs(), "lora": lora_runs(answered=50.0)})
    assert [m.method for m in qa.methods] == ["lora", "full"]                   # LoRA first
    lora, full = qa.methods
    assert lora.seeds == (1, 2, 3) and lora.seeds_answering == 3
    assert lora.has_ans_f1 == OverSeeds(3, 5.0, 1.0, 4.0, 6.0)
    assert lora.no_ans_f1 == OverSeeds(3, 92.0, 2.0, 90.0, 94.0)
    f1 = [(a * H + b * N) / (H + N) for a, b in zip(LORA_HAS, LORA_NO, strict=True)]   # 38.4, 39.8, 41.2
    assert lora.f1.mean == pytest.approx(39.8, abs=1e-12) and (lora.f1.low, lora.f1.high) == (min(f1), max(f1))
    assert lora.null_threshold.mean == 2.0 and lora.null_threshold.sd == 1.0
    assert lora.has_ans_answered.mean == 50.0
    assert (qa.has_ans_total, qa.no_ans_total, qa.total, qa.counts_differ) == (60, 40, 100, False)
    assert (qa.baseline_f1, qa.baseline_has_ans_f1, qa.baseline_no_ans_f1) == (40.0, 0.0, 100.0)
    assert full.f1.mean == 40.0 and full.f1_minus_baseline == 0.0 and full.has_ans_f1.sd == 0.0
    assert lora.answers is True and full.answers is False
    fields = qa.verdict_fields()
    assert set(fields) == QA_FIELDS
    assert fields["has_ans_f1"] == {"lora": 5.0, "full": 0.0} and fields["no_ans_f1"] == {"lora": 92.0, "full": 100.0}
    assert fields["null_threshold"] == {"lora": 2.0, "full": 7.0}
    assert (fields["has_ans_total"], fields["no_ans_total"]) == (60, 40)
    assert fields["no_answer_baseline"] == {"name": "always no answer", "f1": 40.0, "has_ans_f1": 0.0,
                                            "no_ans_f1": 100.0}


def test_the_official_dev_set_baseline():
    # SQuAD v2 dev: 5,928 answerable, 5,945 unanswerable -> answering nothing scores F1 50.07
    qa = qa_breakdown({"full": [run(1, 0.0, 100.0, h=5928, n=5945)]})
    assert qa.baseline_f1 == pytest.approx(100 * 5945 / 11873) and score(qa.baseline_f1) == "50.1"
    assert qa.methods[0].sentence.endswith("overall F1 50.1 is the same as always no answer's.")


def test_the_sentence_for_a_model_that_answers_and_one_that_never_does():
    qa = qa_breakdown({"lora": lora_runs(), "full": silent_runs()})
    assert qa.by_method()["lora"].sentence == (
        "LoRA answers: HasAns F1 5.0 (0.0 for always no answer), NoAns F1 92.0 (100.0 for always no answer); "
        "overall F1 39.8 is 0.2 points below always no answer's 40.0.")
    assert qa.by_method()["full"].sentence == (
        "full predicts no answer for every answerable question (HasAns F1 0.0, as always no answer), NoAns F1 "
        "100.0 (100.0 for always no answer); overall F1 40.0 is the same as always no answer's.")
    assert qa.sentence == " ".join([qa.methods[0].sentence, qa.methods[1].sentence, qa.split_sentence])


def test_the_sentence_says_only_what_the_numbers_show():
    # HasAns F1 0 but answers given (wrong spans): not "predicts no answer"
    full = qa_breakdown({"full": silent_runs(answered=12.5)}).methods[0]
    assert full.sentence.startswith("full answers 12.5% of the answerable questions but gets none even partly "
                                    "right (HasAns F1 0.0, as always no answer)")
    # no predictions: the answered share is unknown, so nothing is said about it
    full = qa_breakdown({"full": silent_runs(answered=None)}).methods[0]
    assert full.sentence.startswith("full gets no answerable question even partly right (HasAns F1 0.0")
    # answers on some seeds only
    mixed = [run(1, 0.0, 100.0), run(2, 3.0, 95.0), run(3, 0.0, 99.0)]
    lora = qa_breakdown({"lora": mixed}).methods[0]
    assert lora.answers is True and lora.seeds_answering == 1
    assert lora.sentence.startswith("LoRA answers on 1 of 3 seeds: HasAns F1 1.0 on average (0.0 for always no "
                                    "answer)")
    # a tiny HasAns F1 is not rounded to the baseline's 0.0; an overall F1 above the baseline says so
    tiny = qa_breakdown({"lora": [run(1, 0.03, 100.0)]}).methods[0]
    assert "HasAns F1 0.03 (0.0 for always no answer)" in tiny.sentence
    assert tiny.sentence.endswith("overall F1 40.0 is 0.018 points above always no answer's 40.0.")


def test_missing_keys_read_as_n_a_not_a_crash():
    # every question answerable: the official script leaves NoAns_* out
    only_has = qa_breakdown({"lora": [run(1, 30.0, 0.0, h=50, n=0)]})
    m = only_has.methods[0]
    assert (only_has.has_ans_total, only_has.no_ans_total, only_has.total) == (50, 0, 50)
    assert only_has.baseline_f1 == 0.0 and math.isnan(only_has.baseline_no_ans_f1)
    assert m.no_ans_f1.n == 0 and math.isnan(m.no_ans_f1.mean)
    assert m.sentence == ("LoRA answers: HasAns F1 30.0 (0.0 for always no answer), NoAns F1 n/a (no unanswerable "
                          "question); overall F1 30.0 is 30.0 points above always no answer's 0.0.")
    # every question unanswerable: HasAns_* left out
    only_no = qa_breakdown({"full": [run(1, 0.0, 80.0, h=0, n=20)]})
    assert only_no.baseline_f1 == 100.0 and math.isnan(only_no.baseline_has_ans_f1)
    assert only_no.methods[0].answers is None
    assert only_no.methods[0].sentence.startswith("full: the test set has no answerable question (HasAns F1 n/a), "
                                                  "NoAns F1 80.0")
    # an old metrics.json with the overall F1 only, no threshold, no seed
    bare = qa_breakdown({"lora": [{"test": {"f1": 61.0}}], "full": [{"test": {}}]})
    assert bare.has_ans_total is None and math.isnan(bare.baseline_f1)
    lora, full = bare.methods
    assert lora.sentence == ("LoRA: whether it answers is not known (HasAns F1 n/a: not in metrics.json); overall "
                             "F1 61.0 (always no answer n/a: the question counts are not in metrics.json).")
    assert full.sentence.endswith("overall F1 n/a (always no answer: n/a).")
    display = qa_display(bare)
    assert list(display.iloc[0]) == ["LoRA", "1", "61.0", "n/a", "n/a", "n/a"]
    assert list(display.iloc[2]) == ["always no answer (trivial baseline)", "–", "n/a", "0.0", "100.0", "–"]
    table = bare.table()
    assert table["has_ans_total"].isna().all() and len(table) == 3
    json.dumps(bare.verdict_fields(), allow_nan=True)
    assert qa_breakdown({}) is None and qa_breakdown({"lora": []}) is None


def test_test_sets_that_differ_are_noted():
    qa = qa_breakdown({"lora": [run(1, 5.0, 90.0, h=60, n=40)], "full": [run(1, 0.0, 100.0, h=50, n=50)]})
    assert qa.counts_differ and qa.has_ans_total is None and qa.baseline_f1 == 45.0
    assert qa.by_method()["full"].baseline_f1 == 50.0 and qa.by_method()["lora"].baseline_f1 == 40.0
    assert "differ" in qa.notes[0]


def test_answered_share_and_display_helpers():
    frame = pd.DataFrame({"id": list("abcde"), "has_answer": [True, True, True, True, False],
                          "prediction": ["x", "", "y", "", "z"]})
    assert has_ans_answered(frame) == 50.0
    assert has_ans_answered(None) is None and has_ans_answered(frame[["id"]]) is None
    assert has_ans_answered(frame[~frame["has_answer"]]) is None
    assert over_seeds_text(OverSeeds(3, 5.0, 1.0, 4.0, 6.0)) == "5.0 (4.0–6.0)"
    assert over_seeds_text(OverSeeds(1, 5.0, math.nan, 5.0, 5.0)) == "5.0"
    assert over_seeds_text(OverSeeds(0, math.nan, math.nan, math.nan, math.nan)) == "n/a"
    assert score(0.0) == "0.0" and score(0.04) == "0.04" and score(None) == "n/a" and score(5.5031, 2) == "5.50"


# ---------------------------------------------------------------- abstention and the split of LoRA - full


# the committed CPU study's shape: 250 + 250 questions, per seed (HasAns F1, NoAns F1, abstained on answerable,
# abstained on unanswerable); NoAns F1 = 100 x the unanswerable questions abstained on / 250
# (docs/study-cpu/tables/runs.csv; the split of the answerable questions abstained on over seeds is made up, its
# total is not: 100 - has_ans_answered = 39.07 and 27.6 in verdicts.json)
STUDY = {"lora": [(42, 4.260805018736053, 35.6, 95, 89), (43, 3.5755844155844163, 39.6, 99, 99),
                  (44, 3.3866666666666676, 39.6, 99, 99)],
         "full": [(42, 3.551428571428572, 25.6, 64, 64), (43, 3.9164102564102565, 39.2, 98, 98),
                  (44, 5.478412698412699, 18.0, 45, 45)]}


def study_runs(method: str) -> list[dict]:
    return [run(s, has, no, 6.5, 100 - a / 2.5, 250, 250, (a, b)) for s, has, no, a, b in STUDY[method]]


def abstaining_runs(*abstained: tuple[int, int], has: float = 5.0, no: float = 50.0) -> list[dict]:
    """One run per (answerable, unanswerable) abstained count, seeds 1, 2, ... on the 60 + 40 questions."""
    return [run(i + 1, has, no, abstained=a) for i, a in enumerate(abstained)]


def test_abstention_counts_from_predictions():
    frame = pd.DataFrame({"has_answer": [True, True, True, True, False, False, False, None],
                          "prediction": ["x", "", None, "y", "", "z", "", ""]})
    assert abstention_counts(frame) == AbstentionCounts(has_ans=4, has_ans_abstained=2, no_ans=3,
                                                        no_ans_abstained=2)   # the unknown kind is left out
    assert abstention_counts(None) is None and abstention_counts(frame[["prediction"]]) is None
    assert abstention_counts(pd.DataFrame({"has_answer": [None], "prediction": [""]})) is None


def test_newcombe_interval_reproduces_the_published_values():
    # Newcombe (1998), Statistics in Medicine 17:873, Table II, method 10, to 4 decimals
    for (k1, n1, k2, n2), (low, high) in {(56, 70, 48, 80): (0.0524, 0.3339), (9, 10, 3, 10): (0.1705, 0.8090),
                                          (6, 7, 2, 7): (0.0582, 0.8062), (5, 56, 0, 29): (-0.0381, 0.1926),
                                          (0, 10, 0, 20): (-0.1611, 0.2775), (10, 10, 0, 20): (0.6791, 1.0)}.items():
        assert newcombe_interval(k1, n1, k2, n2) == pytest.approx((low, high), abs=5e-5)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert all(math.isnan(x) for x in (*newcombe_interval(1, 0, 1, 5), *wilson_interval(0, 0)))


def test_abstention_rates_gap_and_interval_exactly():
    qa = qa_breakdown({"lora": abstaining_runs((6, 24), (12, 20), (6, 28))})
    m = qa.methods[0]
    first = m.abstention_runs[0]
    assert (first.has_ans, first.no_ans, first.gap) == (10.0, 60.0, 50.0)
    low, high = newcombe_interval(24, 40, 6, 60)
    assert (first.gap_low, first.gap_high) == (100 * low, 100 * high) and first.gap_low > 0
    assert m.abstain_has_ans.mean == pytest.approx(40 / 3) and (m.abstain_has_ans.low, m.abstain_has_ans.high) == (
        10.0, 20.0)
    assert m.abstain_no_ans.mean == pytest.approx(60.0) and (m.abstain_no_ans.low, m.abstain_no_ans.high) == (50, 70)
    assert m.abstain_gap.mean == pytest.approx(60 - 40 / 3) and (m.abstain_gap.low, m.abstain_gap.high) == (30, 60)
    assert (m.gap_seeds_above_0, m.gap_seeds_below_0, m.abstention) == (3, 0, "informative")
    # no predictions: no abstention figures, no word, nothing said
    bare = qa_breakdown({"lora": lora_runs()}).methods[0]
    assert bare.abstention is None and bare.abstain_gap.n == 0 and "abstain" not in bare.sentence
    assert set(ABSTENTION_WORDS) >= {"informative", "uninformative", "reversed", "mixed", "never abstains",
                                     "always abstains"}


def test_the_committed_study_uninformative_abstention_and_its_sentence():
    qa = qa_breakdown({"lora": study_runs("lora"), "full": study_runs("full")})
    lora, full = qa.methods
    assert lora.abstain_has_ans.mean == pytest.approx(100 * 293 / 750)          # 39.07
    assert lora.abstain_no_ans.mean == pytest.approx(100 * 287 / 750)           # 38.27 = NoAns F1
    assert lora.abstain_no_ans.mean == pytest.approx(lora.no_ans_f1.mean)
    assert lora.abstain_gap.mean == pytest.approx(-0.8) and (lora.abstain_gap.low, lora.abstain_gap.high) == (
        pytest.approx(-2.4), 0.0)
    assert lora.abstention == full.abstention == "uninformative"
    assert lora.sentence.endswith(
        "It abstains on 39.1% of the answerable and 38.3% of the unanswerable questions: its abstention does not "
        "tell them apart (unanswerable - answerable: -0.8 points, -2.4 to 0.0 over seeds; 95% interval includes 0 "
        "on 3 of 3 seeds); while it does not, abstaining more only brings its F1 closer to always no answer's, "
        "never above it (an answer earns F1 6.1 on an answerable question on average and costs 100 on an "
        "unanswerable one).")
    assert "unanswerable - answerable: 0.0 points; 95% interval includes 0 on 3 of 3 seeds" in full.sentence


def test_the_split_of_lora_minus_full_adds_up_exactly():
    qa = qa_breakdown({"lora": study_runs("lora"), "full": study_runs("full")})
    s = qa.split
    assert (s.share_has_ans, s.share_no_ans) == (0.5, 0.5)
    assert s.difference == pytest.approx(qa.by_method()["lora"].f1.mean - qa.by_method()["full"].f1.mean, abs=0)
    has = {m: sum(r[1] for r in STUDY[m]) / 3 for m in STUDY}
    assert s.from_has_ans == pytest.approx(0.5 * (has["lora"] - has["full"]), abs=1e-12)        # -0.29
    assert s.from_no_ans == pytest.approx(0.5 * (100 * 287 / 750 - 100 * 207 / 750), abs=1e-12)  # +5.33
    assert s.difference == pytest.approx(21.00384268349786 - 15.957708587708588, abs=1e-9)     # verdicts.json
    assert s.from_has_ans + s.from_no_ans == pytest.approx(s.difference, abs=1e-12)
    assert qa.split_sentence == (
        "LoRA - full = +5.05 points of F1: +5.33 from the unanswerable questions (NoAns F1 38.3 against 27.6: LoRA "
        "abstains on more of them) and -0.29 from the answerable ones (HasAns F1 3.7 against 4.3); the whole "
        "difference comes from abstention on the unanswerable questions (the answerable ones go the other way).")
    assert qa.sentence.endswith(qa.split_sentence)
    fields = qa.verdict_fields()
    assert (fields["difference_from_has_ans"], fields["difference_from_no_ans"]) == (s.from_has_ans, s.from_no_ans)
    # unequal shares (60 answerable, 40 unanswerable): 0.6 x (5 - 0) + 0.4 x (92 - 100) = 39.8 - 40.0
    qa = qa_breakdown({"lora": lora_runs(), "full": silent_runs()})
    assert (qa.split.from_has_ans, qa.split.from_no_ans) == (pytest.approx(3.0), pytest.approx(-3.2))
    assert qa.split.from_has_ans + qa.split.from_no_ans == pytest.approx(qa.split.difference, abs=1e-12)
    assert qa.split_sentence == (
        "LoRA - full = -0.20 points of F1: -3.20 from the unanswerable questions (NoAns F1 92.0 against 100.0: "
        "LoRA abstains on fewer of them) and +3.00 from the answerable ones (HasAns F1 5.0 against 0.0); the whole "
        "difference comes from abstention on the unanswerable questions (the answerable ones go the other way).")
    # both parts the same way: the share from abstention
    qa = qa_breakdown({"lora": [run(1, 10.0, 80.0)], "full": [run(1, 5.0, 70.0)]})
    assert qa.split_sentence.endswith("; 57% of it comes from abstention on the unanswerable questions.")  # 4/7
    # no split without both methods, or when the test sets differ or a figure is missing
    assert qa_breakdown({"lora": lora_runs()}).split is None
    assert qa_breakdown({"lora": lora_runs()}).verdict_fields()["difference_from_no_ans"] is None
    differ = {"lora": [run(1, 5.0, 90.0, h=60, n=40)], "full": [run(1, 0.0, 100.0, h=50, n=50)]}
    assert qa_breakdown(differ).split is None
    assert qa_breakdown({"lora": [{"test": {"f1": 61.0, "total": 10}}], "full": silent_runs()}).split is None


def test_the_sentence_when_abstention_is_informative():
    qa = qa_breakdown({"lora": abstaining_runs((6, 24), (6, 24), (6, 24), has=45.0)})
    assert qa.methods[0].sentence.endswith(
        "It abstains on 10.0% of the answerable and 60.0% of the unanswerable questions: its abstention tells them "
        "apart (unanswerable - answerable: +50.0 points; 95% interval above 0 on 3 of 3 seeds).")
    one = qa_breakdown({"lora": abstaining_runs((6, 24))}).methods[0]
    assert one.sentence.endswith("(unanswerable - answerable: +50.0 points; 95% interval above 0 on the seed).")


def test_the_sentence_when_abstention_is_reversed_or_mixed():
    reversed_ = qa_breakdown({"lora": abstaining_runs((30, 4), (36, 4))}).methods[0]
    assert reversed_.abstention == "reversed"
    assert reversed_.sentence.endswith(
        "It abstains on 55.0% of the answerable and 10.0% of the unanswerable questions: it abstains more often on "
        "the answerable ones, the opposite of telling them apart (unanswerable - answerable: -45.0 points, -50.0 "
        "to -40.0 over seeds; 95% interval below 0 on 2 of 2 seeds).")
    mixed = qa_breakdown({"lora": abstaining_runs((6, 24), (12, 8), (30, 4))}).methods[0]
    assert (mixed.gap_seeds_above_0, mixed.gap_seeds_below_0, mixed.abstention) == (1, 1, "mixed")
    assert "its abstention tells them apart on some seeds only (" in mixed.sentence
    assert mixed.sentence.endswith("95% interval above 0 on 1 of 3 seeds, below 0 on 1 of 3 seeds).")


def test_the_sentence_when_uninformative_abstention_costs_less_than_answering_gains():
    # 90 answerable, 10 unanswerable, answers earning F1 50 on average: abstaining less would help
    m = qa_breakdown({"lora": [run(1, 25.0, 50.0, h=90, n=10, abstained=(45, 5))]}).methods[0]
    assert m.abstention == "uninformative"
    assert m.sentence.endswith(
        "its abstention does not tell them apart (unanswerable - answerable: 0.0 points; 95% interval includes 0 "
        "on the seed); while it does not, abstaining less would raise its F1 (its answers earn more on the "
        "answerable questions than they cost on the unanswerable ones).")


def test_the_sentence_for_a_model_that_never_or_always_abstains():
    never = qa_breakdown({"lora": abstaining_runs((0, 0), (0, 0), no=0.0)}).methods[0]
    assert never.abstention == "never abstains" and never.abstain_gap == OverSeeds(2, 0.0, 0.0, 0.0, 0.0)
    assert never.sentence.endswith(
        "overall F1 3.0 is 37.0 points below always no answer's 40.0. It never abstains: it gives an answer to "
        "every question, answerable or not.")
    always = qa_breakdown({"full": [run(s, 0.0, 100.0, abstained=(H, N)) for s in (1, 2)]}).methods[0]
    assert always.abstention == "always abstains"
    assert always.sentence.endswith(
        "overall F1 40.0 is the same as always no answer's. It abstains on every question, answerable or not, as "
        "always no answer does.")
    # a test set with one kind of question only: the rate, no gap, no word
    only = qa_breakdown({"lora": [run(1, 30.0, 0.0, h=50, n=0, abstained=(10, 0))]}).methods[0]
    assert only.abstention is None and only.abstain_gap.n == 0
    assert only.sentence.endswith("It abstains on 20.0% of the answerable questions (none is unanswerable).")
    assert signed(0.04) == "0.0" and signed(-0.8) == "-0.8" and signed(None) == "n/a"


# ---------------------------------------------------------------- in the report


def predictions(answered: int, no_ans_answered: int = 0) -> list[dict]:
    """100 questions, the first 60 answerable; the first `answered` of those and the first `no_ans_answered`
    unanswerable ones get an answer."""
    return [{"id": f"q{i:03d}", "has_answer": i < H,
             "prediction": "x" if i < answered or H <= i < H + no_ans_answered else "",
             "null_score_diff": 0.0, "exact": float(i >= H), "f1": float(i >= H)} for i in range(H + N)]


def write_squad_study(root) -> None:
    for seed, has, no, t in zip((1, 2, 3), LORA_HAS, LORA_NO, THRESHOLDS, strict=True):
        write_fake_run(root, "squad_v2", "lora", seed, test=squad_metrics(has, no, H, N), validation=50.0,
                       extra={"qa": {"null_threshold": t}}, predictions=predictions(30, 4))
        write_fake_run(root, "squad_v2", "full", seed, test=squad_metrics(0.0, 100.0, H, N), validation=50.0,
                       extra={"qa": {"null_threshold": 7.0}}, predictions=predictions(0))
    write_fake_run(root, "rte", "lora", 1, test=0.6, validation=0.6)
    write_fake_run(root, "rte", "full", 1, test=0.62, validation=0.6)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    write_squad_study(root)
    report = build_report(root, n_resamples=200, with_figures=False)
    return report, write_report(report, root / "report")


def test_report_reads_thresholds_and_answered_shares_from_the_run_folders(written):
    report, _ = written
    lora, full = report.qa.methods
    assert lora.null_threshold.mean == 2.0 and full.null_threshold.mean == 7.0
    assert lora.has_ans_answered == OverSeeds(3, 50.0, 0.0, 50.0, 50.0) and full.has_ans_answered.high == 0.0
    assert full.sentence.startswith("full predicts no answer for every answerable question")
    # abstention from predictions/test.jsonl: LoRA 30 of 60 answerable and 36 of 40 unanswerable, full all
    assert lora.abstain_has_ans == OverSeeds(3, 50.0, 0.0, 50.0, 50.0)
    assert lora.abstain_no_ans == OverSeeds(3, 90.0, 0.0, 90.0, 90.0)
    assert lora.abstain_gap.mean == pytest.approx(40.0) and lora.abstention == "informative"
    assert full.abstention == "always abstains" and full.abstain_gap.mean == 0.0


def test_html_holds_the_breakdown_after_the_verdict_and_before_efficiency(written):
    report, files = written
    page = files["report.html"].read_text(encoding="utf-8")
    at = page.index("SQuAD v2: answerable and unanswerable questions")
    assert page.index('class="tbl verdict"') < at < page.index("<h2>Efficiency")
    section = page[at:page.index("<h2>Efficiency")]
    for text in ("60 answerable (HasAns_total), 40 unanswerable (NoAns_total), 100 in all", "HasAns F1",
                 "NoAns F1", "null threshold", "5.0 (4.0–6.0)", "92.0 (90.0–94.0)", "39.8 (38.4–41.2)", "2.00",
                 "always no answer (trivial baseline)", "40.0", html.escape(report.qa.methods[0].sentence),
                 html.escape(report.qa.methods[1].sentence), html.escape(report.qa.split_sentence),
                 "abstains: answerable (%)", "abstains: unanswerable (%)", "unanswerable − answerable", "+40.0"):
        assert text in section, text
    assert section.count("<tr") == 4   # header, LoRA, full, baseline


def test_summary_holds_a_short_table_and_the_sentences(written):
    report, files = written
    summary = files["summary.md"].read_text(encoding="utf-8")
    assert summary.index("## Verdicts") < summary.index("## SQuAD v2: answerable") < summary.index("## Efficiency")
    assert ("| method | seeds | F1 | HasAns F1 | NoAns F1 | abstains: answerable (%) | abstains: unanswerable (%) "
            "| unanswerable − answerable | null threshold |" in summary)
    assert ("| LoRA | 3 | 39.8 (38.4–41.2) | 5.0 (4.0–6.0) | 92.0 (90.0–94.0) | 50.0 | 90.0 | +40.0 | 2.00 |"
            in summary)
    assert "| full | 3 | 40.0 | 0.0 | 100.0 | 100.0 | 100.0 | 0.0 | 7.00 |" in summary
    assert "| always no answer (trivial baseline) | – | 40.0 | 0.0 | 100.0 | 100.0 | 100.0 | 0.0 | – |" in summary
    for m in report.qa.methods:
        assert f"- {m.sentence}" in summary
    assert f"- {report.qa.split_sentence}" in summary and report.qa.split_sentence.startswith("LoRA - full = ")


def test_csv_holds_one_row_per_method_and_the_baseline(written):
    _, files = written
    table = pd.read_csv(files["squad_v2_breakdown.csv"]).set_index("row")
    assert list(table.index) == ["lora", "full", "always no answer"]
    assert table.loc["lora", "has_ans_f1_mean"] == 5.0 and table.loc["lora", "has_ans_f1_sd"] == 1.0
    assert (table.loc["lora", "has_ans_f1_min"], table.loc["lora", "has_ans_f1_max"]) == (4.0, 6.0)
    assert table.loc["lora", "null_threshold_mean"] == 2.0 and table.loc["lora", "seeds"] == "1,2,3"
    assert table.loc["full", "no_ans_f1_mean"] == 100.0 and not table.loc["full", "answers"]
    assert table.loc["always no answer", "f1_mean"] == 40.0 and table.loc["always no answer", "has_ans_f1_mean"] == 0
    assert (table["has_ans_total"] == 60).all() and (table["no_ans_total"] == 40).all()
    assert (table.loc["lora", "abstain_has_ans_mean"], table.loc["lora", "abstain_no_ans_mean"]) == (50.0, 90.0)
    assert table.loc["lora", "abstain_gap_min"] == pytest.approx(40.0)
    assert (table.loc["lora", "abstain_gap_seeds_above_0"], table.loc["lora", "abstain_gap_seeds_below_0"]) == (3, 0)
    assert table.loc["lora", "abstention"] == "informative" and table.loc["full", "abstention"] == "always abstains"
    assert table.loc["always no answer", "abstain_no_ans_mean"] == 100.0
    assert table.loc["always no answer", "abstain_gap_mean"] == 0.0


def test_verdicts_json_squad_row_gains_the_figures_and_other_rows_do_not(written):
    report, files = written
    data = json.loads(files["verdicts.json"].read_text(encoding="utf-8"),
                      parse_constant=lambda c: pytest.fail(f"{c} in verdicts.json"))
    squad, rte = data["squad_v2"], data["rte"]
    assert QA_FIELDS <= set(squad) and not QA_FIELDS & set(rte)
    assert squad["has_ans_f1"] == {"lora": 5.0, "full": 0.0}
    assert squad["no_ans_f1"] == {"lora": 92.0, "full": 100.0}
    assert squad["null_threshold"] == {"lora": 2.0, "full": 7.0}
    assert (squad["has_ans_total"], squad["no_ans_total"], squad["total"]) == (60, 40, 100)
    assert squad["answers"] == {"lora": True, "full": False}
    assert squad["no_answer_baseline"]["f1"] == 40.0 and squad["qa_sentence"] == report.qa.sentence
    assert squad["abstain_has_ans"] == {"lora": 50.0, "full": 100.0}
    assert squad["abstain_no_ans"] == {"lora": 90.0, "full": 100.0}
    assert squad["abstention"] == {"lora": "informative", "full": "always abstains"}
    # 0.6 x (5 - 0) and 0.4 x (92 - 100): LoRA - full = 39.8 - 40.0 = -0.2
    assert squad["difference_from_has_ans"] == pytest.approx(3.0, abs=1e-12)
    assert squad["difference_from_no_ans"] == pytest.approx(-3.2, abs=1e-12)
    assert squad["baseline"]["value"] == 40.0   # the verdict's own baseline (from predictions) agrees
    assert squad["word"] == "not learned"       # neither arm beats always no answer by more than the margin


def test_no_squad_runs_no_breakdown(tmp_path):
    write_fake_run(tmp_path, "rte", "lora", 1, test=0.6, validation=0.6)
    report = build_report(tmp_path, with_figures=False)
    assert report.qa is None
    files = write_report(report, tmp_path / "report")
    assert "squad_v2_breakdown.csv" not in files and not (tmp_path / "report" / "tables" /
                                                          "squad_v2_breakdown.csv").exists()
    assert "SQuAD v2: answerable" not in files["report.html"].read_text(encoding="utf-8")
    assert "SQuAD v2: answerable" not in render_markdown(report)
    assert not QA_FIELDS & set(report.verdict_rows[0])
