"""The verdict's corner cases (issue 13, part 1): no spread across seeds, Holm across tasks, the example-level
test on the verdict's metric, trivial baselines and "not learned". Pure: TaskComparisons in, words out."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tunebench.report.compare import (
    Baseline,
    TaskComparison,
    adjust_across_tasks,
    compare_task,
    trivial_baseline,
)
from tunebench.report.stats import SeedComparison, compare_paired_seeds, equivalence_test, summarize
from tunebench.report.verdict import (
    VERDICT_WORDS,
    compose_verdict,
    verdict_methods_text,
    verdict_row,
    verdict_word,
)

SEEDS = [42, 43, 44]


def comparison(task: str, lora: list[float], full: list[float], *, baseline: Baseline | None = None,
               example_tests: list[dict] | None = None, margin: float = 1.0) -> TaskComparison:
    """A paired 3-seed comparison of the given per-seed scores (points)."""
    return TaskComparison(
        task, "accuracy" if task in ("sst2", "rte") else "f1", summarize(lora), summarize(full), SEEDS, SEEDS,
        SEEDS, compare_paired_seeds(lora, full), example_tests=example_tests or [],
        equivalence=equivalence_test(lora, full, margin), lora_values=lora, full_values=full, baseline=baseline,
        margin=margin)


def with_t_p(c: TaskComparison, p: float) -> TaskComparison:
    """The same comparison with the seed-level t-test's p replaced (to build a Holm family by hand)."""
    from dataclasses import replace

    return replace(c, seeds=replace(c.seeds, t_p=p))


def mcnemar_row(b: int, c: int, p: float, n: int = 200) -> dict:
    return {"task": "rte", "comparison": "majority vote over seeds", "seeds": "42,43,44", "test": "McNemar exact",
            "metric": "accuracy", "n_examples": n, "b": b, "c": c, "odds_ratio": math.nan,
            "mean_diff": 100 * (b - c) / n, "ci_low": math.nan, "ci_high": math.nan, "statistic": float(min(b, c)),
            "p": p, "effect_size": math.nan}


# RTE-like, 200 test examples: LoRA gets exactly one more example right than full on every seed (+0.5 points).
RTE_FULL = [100 * k / 200 for k in (150, 155, 160)]
RTE_LORA = [100 * (k + 1) / 200 for k in (150, 155, 160)]
RTE_BASELINE = Baseline("majority class 'entailment' (of the test split)", 55.0, 200, majority_from_test=True)


# ---------------------------------------------------------------- no spread across seeds


def test_constant_difference_is_not_significantly_better_and_shows_no_interval():
    c = adjust_across_tasks([comparison("rte", RTE_LORA, RTE_FULL, baseline=RTE_BASELINE,
                                        example_tests=[mcnemar_row(1, 0, 1.0)])])[0]
    assert verdict_word(c) == "inconclusive"
    sentence = compose_verdict(c)
    assert sentence == (
        "rte: the seed-level test is undefined with 3 seeds (LoRA - full is +0.50 points on each of the 3 seeds: "
        "with no spread across seeds the paired t-test and its interval are undefined); on the example-level "
        "evidence instead (test-set noise only, not seed variance) there is no significant difference at "
        "alpha = 0.05 (McNemar exact on the majority vote over seeds (b = 1 only LoRA right, c = 0 only full "
        "right), p = 1.000), and without spread across seeds equivalence cannot be shown. Example-level "
        "evidence (test-set noise only, not seed variance): majority vote over seeds: p = 1.000 (b = 1 only LoRA "
        "right, c = 0 only full right).")
    assert "inf" not in sentence and "[0.50, 0.50]" not in sentence and "significantly better" not in sentence
    row = verdict_row(c, sentence)
    assert row["word"] == "inconclusive" and row["difference"] == pytest.approx(0.5)
    assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"]) and math.isnan(row["p"])
    assert row["seed_test_undefined_reason"].startswith("LoRA - full is +0.50 points on each of the 3 seeds")
    assert row["decided_on"] == "examples" and row["p_decision"] == 1.0 and row["p_adjusted"] == 1.0


def test_constant_difference_falls_back_to_a_significant_example_level_test():
    # +10 points on every seed, 20 examples that only LoRA gets right in the vote: exact McNemar p = 2 / 2^20.
    lora, full = [85.0, 87.5, 90.0], [75.0, 77.5, 80.0]
    p = 2 / 2**20
    c = adjust_across_tasks([comparison("rte", lora, full, baseline=RTE_BASELINE,
                                        example_tests=[mcnemar_row(20, 0, p)])])[0]
    assert verdict_word(c) == "better"
    assert ("; on the example-level evidence instead (test-set noise only, not seed variance), LoRA is "
            "significantly better than full fine-tuning at alpha = 0.05 (McNemar exact on the majority vote over "
            "seeds (b = 20 only LoRA right, c = 0 only full right), p < 0.001)") in compose_verdict(c)
    row = verdict_row(c, compose_verdict(c))
    assert math.isnan(row["p"]) and row["p_decision"] == pytest.approx(p) and math.isnan(row["ci_low"])


def test_constant_difference_without_example_evidence_claims_nothing():
    c = comparison("rte", RTE_LORA, RTE_FULL, baseline=RTE_BASELINE)
    assert verdict_word(c) == "inconclusive" and c.decided_on is None and math.isnan(c.decision_p)
    assert "there is no example-level test to fall back on: nothing is claimed" in compose_verdict(c)


# ---------------------------------------------------------------- Holm across tasks


def four_tasks(ps: list[float]) -> list[TaskComparison]:
    lora, full = [81.0, 82.5, 84.0], [80.0, 80.5, 81.0]   # a positive, varying difference
    return [with_t_p(comparison(t, lora, full), p) for t, p in zip(("sst2", "mrpc", "rte", "squad_v2"), ps,
                                                                    strict=True)]


def test_holm_decides_better_on_the_adjusted_p():
    # raw 0.01, 0.03, 0.04, 0.20 -> Holm 0.04, 0.09, 0.09, 0.20: only sst2 stays significant at 0.05
    adjusted = adjust_across_tasks(four_tasks([0.01, 0.03, 0.04, 0.20]))
    assert [c.p_adjusted for c in adjusted] == pytest.approx([0.04, 0.09, 0.09, 0.20])
    assert all(c.family_size == 4 for c in adjusted)
    assert [verdict_word(c) for c in adjusted] == ["better", "inconclusive", "inconclusive", "inconclusive"]
    rte = adjusted[2]
    assert "no significant difference at alpha = 0.05" in compose_verdict(rte)
    assert "paired t-test p = 0.040, Holm-adjusted over 4 tasks p = 0.090" in compose_verdict(rte)
    row = verdict_row(rte, compose_verdict(rte))
    assert row["p"] == 0.04 and row["p_adjusted"] == pytest.approx(0.09) and row["decided_on"] == "seeds"
    # alone (a family of one), rte's raw 0.04 reads "better"
    assert verdict_word(adjust_across_tasks([four_tasks([0.01, 0.03, 0.04, 0.20])[2]])[0]) == "better"


def test_tasks_without_a_p_are_outside_the_family():
    cs = four_tasks([0.01, 0.02, 0.5, 0.5])
    one_seed = TaskComparison("rte", "accuracy", summarize([80.0]), summarize([79.0]), [42], [42], [42],
                              SeedComparison("none", 1, 1, 1, 1.0, *[math.nan] * 7))
    adjusted = adjust_across_tasks([cs[0], cs[1], one_seed])
    assert adjusted[0].p_adjusted == pytest.approx(0.02) and adjusted[1].p_adjusted == pytest.approx(0.02)
    assert math.isnan(adjusted[2].p_adjusted) and adjusted[0].family_size == 2
    assert verdict_word(adjusted[2]) == "inconclusive"


# ---------------------------------------------------------------- trivial baselines and "not learned"


def test_baselines_by_hand():
    rte = pd.DataFrame({"idx": range(200), "label": [0] * 110 + [1] * 90})
    b = trivial_baseline("rte", [rte, rte])
    assert b == Baseline("majority class 'entailment' (of the test split)", 55.0, 200, majority_from_test=True)
    assert trivial_baseline("rte", [rte], train_majority=1) == Baseline(
        "train's majority class 'not_entailment'", 45.0, 200, majority_from_test=False)
    # MRPC: always "equivalent": precision 68/100, recall 1 -> F1 = 2 x 68 / (68 + 100)
    mrpc = pd.DataFrame({"idx": range(100), "label": [1] * 68 + [0] * 32})
    assert trivial_baseline("mrpc", [mrpc]) == Baseline("always the positive class 'equivalent'", 100 * 136 / 168,
                                                        100)
    # SQuAD v2 official dev: 5,945 of 11,873 unanswerable -> answering nothing scores F1 50.07
    squad = pd.DataFrame({"id": [f"q{i}" for i in range(11_873)], "has_answer": [False] * 5_945 + [True] * 5_928})
    b = trivial_baseline("squad_v2", [squad])
    assert b.name == "always no answer" and round(b.value, 2) == 50.07 and b.n_examples == 11_873
    assert trivial_baseline("rte", []) is None and trivial_baseline("rte", [pd.DataFrame({"idx": [1]})]) is None


def test_every_run_at_the_majority_class_is_not_learned_never_matches():
    # issue 13's demo RTE: all six runs predict the majority class; differences vary by rounding only
    base = Baseline("majority class 'entailment' (of the test split)", 71.0, 200, True)
    c = adjust_across_tasks([comparison("rte", [71.0, 71.5, 70.5], [71.0, 71.0, 71.0], baseline=base)])[0]
    assert c.unlearned_arms == ["lora", "full"] and verdict_word(c) == "not learned"
    sentence = compose_verdict(c)
    assert sentence == (
        "rte: not learned: neither LoRA (71.00) nor full fine-tuning (71.00) beats the trivial baseline "
        "(majority class 'entailment' (of the test split): 71.00 points of accuracy on test) by more than ±1 "
        "point, so LoRA is not compared with full fine-tuning here (LoRA - full = +0.00 points).")
    row = verdict_row(c, sentence)
    assert row["baseline"] == {"name": "majority class 'entailment' (of the test split)", "value": 71.0}
    assert row["unlearned_arms"] == ["lora", "full"]


def test_one_arm_at_the_baseline_is_not_learned_even_when_the_other_is_significantly_better():
    base = Baseline("always the positive class 'equivalent'", 80.0, 100)
    c = comparison("mrpc", [90.0, 91.0, 92.5], [80.5, 80.0, 81.0], baseline=base)   # full: 80.5 <= 80 + 1
    assert c.seeds.t_p < 0.05 and c.unlearned_arms == ["full"] and verdict_word(c) == "not learned"
    assert "not learned: full fine-tuning (80.50; LoRA 91.17) does not beat the trivial baseline" in compose_verdict(c)
    just_above = comparison("mrpc", [90.0, 91.0, 92.5], [81.5, 81.0, 82.0], baseline=base)   # 81.5 > 81
    assert verdict_word(just_above) == "better"


def test_matches_only_when_learned():
    lora, full = [80.1, 80.3, 80.2], [80.0, 80.25, 80.05]
    learned = comparison("rte", lora, full, baseline=Baseline("majority", 55.0, 200))
    assert verdict_word(learned) == "matches"
    assert verdict_word(comparison("rte", lora, full, baseline=Baseline("majority", 79.5, 200))) == "not learned"
    assert verdict_word(comparison("rte", lora, full)) == "matches"   # no predictions: no baseline to check


# ---------------------------------------------------------------- example level on the verdict's metric


def mrpc_frames() -> tuple[pd.DataFrame, dict]:
    """Three seeds of MRPC, 100 examples (40 paraphrases): LoRA says "not a paraphrase" to everything but a
    few positives (accuracy higher), full says "paraphrase" to everything (F1 higher)."""
    labels = np.array(([1] * 4 + [0] * 6) * 10)
    rows, predictions = [], {}
    for seed in SEEDS:
        lora_pred = np.zeros(100, dtype=int)
        lora_pred[:seed - 40] = 1                     # 2, 3, 4 true positives: F1 9.5 / 13.6 / 18.2
        for method, pred in (("lora", lora_pred), ("full", np.ones(100, dtype=int))):
            run = f"{method}-{seed}"
            predictions[run] = pd.DataFrame({"idx": range(100), "label": labels, "prediction": pred})
            f1 = 2 * ((pred == 1) & (labels == 1)).sum() / ((pred == 1).sum() + (labels == 1).sum())
            rows.append({"task": "mrpc", "method": method, "seed": seed, "test_primary": 100 * f1, "run_dir": run})
    return pd.DataFrame(rows), predictions


def test_mrpc_example_level_test_is_an_f1_bootstrap_not_mcnemar():
    headline, predictions = mrpc_frames()
    c = compare_task("mrpc", headline, predictions, n_resamples=500)
    tests = c.example_tests
    assert [t["comparison"] for t in tests] == ["seed 42", "seed 43", "seed 44", "mean F1 over seeds"]
    assert all(t["test"] == "paired bootstrap of F1" and t["metric"] == "f1" for t in tests)
    # per seed: F1(LoRA) - F1(full), points; LoRA is right on 60 + tp examples, full on 40: accuracy favours LoRA
    f1_full = 100 * 80 / 140
    for t, tp in zip(tests, (2, 3, 4), strict=False):
        assert t["mean_diff"] == pytest.approx(100 * 2 * tp / (tp + 40) - f1_full)
        assert t["mean_diff"] < 0 and t["ci_high"] < 0 and t["b"] is None
    assert tests[3]["mean_diff"] == pytest.approx(np.mean([100 * 2 * tp / (tp + 40) for tp in (2, 3, 4)]) - f1_full)
    assert c.seeds.mean_diff == pytest.approx(tests[3]["mean_diff"])   # the example level agrees with the verdict
    # the baseline (always "equivalent") is exactly full's score: full is not learned
    assert c.baseline.value == pytest.approx(f1_full) and c.unlearned_arms == ["lora", "full"]


def test_accuracy_tasks_keep_mcnemar():
    headline, predictions = mrpc_frames()
    rte = headline.assign(task="rte")
    c = compare_task("rte", rte.assign(test_primary=[61.0, 40.0, 62.0, 40.0, 63.0, 40.0]), predictions)
    assert all(t["test"].startswith("McNemar") and t["metric"] == "accuracy" for t in c.example_tests)
    assert c.example_tests[-1]["comparison"] == "majority vote over seeds"


# ---------------------------------------------------------------- the word and the sentence agree


def test_word_and_sentence_agree():
    rng = np.random.default_rng(0)
    phrases = {"better": "LoRA is significantly better", "worse": "full fine-tuning is significantly better",
               "matches": "LoRA matches full fine-tuning", "not learned": ": not learned:"}
    seen = set()
    for _ in range(300):
        full = list(rng.normal(80, rng.uniform(0.05, 2), 3))
        lora = list(np.add(full, rng.normal(rng.choice([-3, 0, 3]), rng.uniform(0.01, 1), 3)))
        if rng.random() < 0.2:
            lora = list(np.add(full, 0.5))   # no spread
        base = Baseline("majority", float(rng.choice([55.0, 79.5])), 200)
        tests = [mcnemar_row(int(rng.integers(0, 30)), int(rng.integers(0, 30)), float(rng.uniform(0, 0.2)))]
        c = adjust_across_tasks([comparison("rte", lora, full, baseline=base, example_tests=tests)])[0]
        word, sentence = verdict_word(c), compose_verdict(c)
        assert word in VERDICT_WORDS
        seen.add(word)
        for w, phrase in phrases.items():
            assert (w == word) == (phrase in sentence), (word, sentence)
        assert " inf" not in sentence and "nan" not in sentence
    assert seen == {"better", "worse", "matches", "inconclusive", "not learned"}


def test_methods_text_explains_holm_and_why_equivalence_needs_no_adjustment():
    text = verdict_methods_text()
    assert len(text) == 4 and all(isinstance(t, str) for t in text)
    assert "Holm" in text[0] and "18.5%" in text[0] and "intersection-union test" in text[0]
    assert "50.07" in text[3] and "not learned" in text[3].lower()


def test_the_report_scores_trains_majority_class_the_runs_recorded(tmp_path):
    """metrics.json data.train_majority_label (written by the engine) names the baseline's class; the test
    split's majority is only the fallback for runs that did not record it."""
    from fake_results import classification_predictions, write_fake_run
    from tunebench.report.build import build_report

    labels = [0] * 6 + [1] * 4                               # test: 60% class 0, train's majority is class 1
    for method in ("lora", "full"):
        for seed in (42, 43):
            preds = classification_predictions(labels, [True] * 9 + [False])
            write_fake_run(tmp_path, "rte", method, seed, test=0.9, predictions=preds,
                           extra={"data": {"train_majority_label": 1}})
    (row,) = build_report(tmp_path, with_figures=False).verdict_rows
    assert row["baseline"] == {"name": "train's majority class 'not_entailment'", "value": 40.0}


def test_the_engine_records_trains_majority_label():
    from tunebench.metrics.classification import majority_label

    assert majority_label([1, 0, 1]) == 1
    assert majority_label([1, 0]) == 0          # a tie: the lower label id
    assert majority_label([]) is None
