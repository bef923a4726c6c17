"""The verdict's corner cases: no spread across seeds, one Holm family of both kinds of claim, the example-level
test on the verdict's metric, the best constant predictor and the learned test per arm. Pure: TaskComparisons in,
words out."""

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
from tunebench.report.learned import learned_test
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
    """A paired 3-seed comparison of the given per-seed scores (points), each arm's learned test over its seeds."""
    learned = {arm: learned_test(task, arm, values, baseline) for arm, values in (("lora", lora), ("full", full))}
    return TaskComparison(
        task, "accuracy" if task in ("sst2", "rte") else "f1", summarize(lora), summarize(full), SEEDS, SEEDS,
        SEEDS, compare_paired_seeds(lora, full), example_tests=example_tests or [],
        equivalence=equivalence_test(lora, full, margin), lora_values=lora, full_values=full, baseline=baseline,
        margin=margin, learned=learned)


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
RTE_BASELINE = Baseline("always the test split's majority class 'entailment'", 55.0, 200, constant=0)


# ---------------------------------------------------------------- no spread across seeds


def test_constant_difference_is_not_significantly_better_and_shows_no_interval():
    c = adjust_across_tasks([comparison("rte", RTE_LORA, RTE_FULL, baseline=RTE_BASELINE,
                                        example_tests=[mcnemar_row(1, 0, 1.0)])])[0]
    assert c.learned_arms == ["lora", "full"]
    assert verdict_word(c) == "inconclusive"
    sentence = compose_verdict(c)
    assert sentence == (
        "rte: the seed-level test is undefined with 3 seeds (LoRA - full is +0.50 points on each of the 3 seeds: "
        "with no spread across seeds the paired t-test and its interval are undefined); on the example-level "
        "evidence instead (test-set noise only, not seed variance) there is no significant difference at "
        "alpha = 0.05 (McNemar exact on the majority vote over seeds (b = 1 only LoRA right, c = 0 only full "
        "right), p = 1.000), and equivalence cannot be shown. Example-level "
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


# ---------------------------------------------------------------- one Holm family, both kinds of claim


def four_tasks(ps: list[float]) -> list[TaskComparison]:
    lora, full = [81.0, 82.5, 84.0], [80.0, 80.5, 81.0]   # a positive, varying difference
    return [with_t_p(comparison(t, lora, full), p) for t, p in zip(("sst2", "mrpc", "rte", "squad_v2"), ps,
                                                                    strict=True)]


def test_holm_family_holds_difference_and_equivalence_of_every_task():
    # lora - full = 1, 2, 3 points: the TOST at a 1-point margin cannot succeed (p >= 0.5); the family holds 8
    cs = four_tasks([0.01, 0.03, 0.04, 0.20])
    tost = [c.equivalence.p for c in cs]
    adjusted = adjust_across_tasks(cs)
    from tunebench.report.stats import holm

    expected = holm([p for pair in zip([0.01, 0.03, 0.04, 0.20], tost, strict=True) for p in pair])
    assert [c.p_adjusted for c in adjusted] == pytest.approx(expected[0::2])
    assert [c.p_equivalence_adjusted for c in adjusted] == pytest.approx(expected[1::2])
    assert expected[0] == pytest.approx(0.08)     # 8 hypotheses: 0.01 x 8
    assert all(c.family_size == 8 for c in adjusted)
    assert [verdict_word(c) for c in adjusted] == ["inconclusive"] * 4
    rte = adjusted[2]
    assert "paired t-test p = 0.040, Holm-adjusted over 8 hypotheses p = 0.240" in compose_verdict(rte)
    row = verdict_row(rte, compose_verdict(rte))
    assert row["p"] == 0.04 and row["p_adjusted"] == pytest.approx(0.24) and row["decided_on"] == "seeds"
    assert row["family_size"] == 8 and row["p_equivalence"] == pytest.approx(tost[2])
    # alone (a family of two hypotheses), rte's raw 0.04 x 2 = 0.08 is not significant; sst2's 0.01 x 2 is
    assert verdict_word(adjust_across_tasks([cs[2]])[0]) == "inconclusive"
    assert verdict_word(adjust_across_tasks([cs[0]])[0]) == "better"


def test_equivalence_claims_are_adjusted_too():
    # four tasks whose TOST alone succeeds (p ~ 0.03 each): one family of 8 makes none of them a claim
    lora, full = [80.2, 80.6, 79.7], [80.0, 80.1, 79.9]
    c = comparison("sst2", lora, full, baseline=Baseline("always", 50.0, 872, 1))
    assert 0.01 < c.equivalence.p < 0.05 and verdict_word(adjust_across_tasks([c])[0]) == "inconclusive"
    assert verdict_word(c) == "matches"   # unadjusted it would read "matches"
    four = adjust_across_tasks([comparison(t, lora, full, baseline=Baseline("always", 50.0, 872, 1))
                                for t in ("sst2", "mrpc", "rte", "squad_v2")])
    assert all(x.equivalence_p_adjusted > 0.05 for x in four) and {verdict_word(x) for x in four} == {"inconclusive"}


def test_a_significant_difference_inside_the_margin_matches_and_says_so():
    lora, full = [80.30, 80.81, 80.32], [80.0, 80.5, 80.0]     # +0.30 / +0.31 / +0.32 at margin 1
    c = adjust_across_tasks([comparison("sst2", lora, full, baseline=Baseline("always", 50.0, 872, 1))])[0]
    assert c.decision_p_adjusted < 0.05 and c.equivalence_p_adjusted < 0.05
    assert verdict_word(c) == "matches"
    sentence = compose_verdict(c)
    assert sentence.startswith("sst2: LoRA matches full fine-tuning within ±1 point of accuracy at alpha = 0.05 "
                               "with 3 seeds (TOST p < 0.001")
    assert "; the difference itself, +0.31 points, is significant but lies inside the ±1 point margin." in sentence
    assert "significantly better" not in sentence


def test_tasks_without_a_p_are_outside_the_family():
    cs = four_tasks([0.01, 0.02, 0.5, 0.5])
    one_seed = TaskComparison("rte", "accuracy", summarize([80.0]), summarize([79.0]), [42], [42], [42],
                              SeedComparison("none", 1, 1, 1, 1.0, *[math.nan] * 7))
    adjusted = adjust_across_tasks([cs[0], cs[1], one_seed])
    assert adjusted[0].family_size == 4 and math.isnan(adjusted[2].p_adjusted)
    assert verdict_word(adjusted[2]) == "inconclusive"
    assert "no seed-level verdict (1 seed per method" in compose_verdict(adjusted[2])


def test_two_seeds_give_no_seed_level_verdict():
    lora, full = [82.0, 84.0], [80.0, 80.5]      # the paired t on 2 seeds would be p = 0.19 with 1 dof
    c = TaskComparison("sst2", "accuracy", summarize(lora), summarize(full), [42, 43], [42, 43], [42, 43],
                       compare_paired_seeds(lora, full), equivalence=equivalence_test(lora, full, 1.0),
                       lora_values=lora, full_values=full,
                       example_tests=[dict(mcnemar_row(30, 5, 1e-5, n=872), task="sst2")])
    c = adjust_across_tasks([c])[0]
    assert c.seed_level_reason == ("2 seeds per method: a seed-level verdict needs at least 3 (a t-test on 2 seeds "
                                   "has 1 degree of freedom)")
    # the example level compares two trained models, not two methods: evidence, never the verdict
    assert c.decided_on is None and math.isnan(c.decision_p) and verdict_word(c) == "inconclusive"
    assert compose_verdict(c).startswith(
        "sst2: no seed-level verdict (2 seeds per method: a seed-level verdict needs at least 3 (a t-test on 2 seeds "
        "has 1 degree of freedom)): nothing is claimed; the example-level evidence below covers test-set noise only "
        "and decides nothing (accuracy: LoRA - full = +2.75 points)")


def test_zero_discordant_examples_show_equivalence_at_the_example_level_when_the_test_set_is_large_enough():
    # every seed of both arms predicts exactly the same labels: no spread, zero discordant examples
    def frames(n: int, task: str) -> tuple[pd.DataFrame, dict]:
        labels = np.array([0, 1] * (n // 2) + [1] * (n % 2))
        pred = labels.copy()
        pred[: n // 5] = 1 - pred[: n // 5]          # 80% right
        acc = 100 * float((pred == labels).mean())
        rows, preds = [], {}
        for seed in SEEDS:
            for method in ("lora", "full"):
                run = f"{method}-{seed}"
                preds[run] = pd.DataFrame({"idx": range(n), "label": labels, "prediction": pred})
                rows.append({"task": task, "method": method, "seed": seed, "test_primary": acc, "run_dir": run})
        return pd.DataFrame(rows), preds

    sst2 = adjust_across_tasks([compare_task("sst2", *frames(872, "sst2"), n_resamples=200)])[0]
    e = sst2.example_equivalence
    assert (e.discordant, e.n) == (0, 872) and e.p == pytest.approx(0.99 ** 872)
    assert e.bound == pytest.approx(100 * (1 - 0.05 ** (1 / 872)))          # Clopper-Pearson with 0 events
    assert sst2.decided_on == "examples" and verdict_word(sst2) == "matches"
    sentence = compose_verdict(sst2)
    assert ("on the example-level evidence instead (test-set noise only, not seed variance), LoRA matches full "
            "fine-tuning within ±1 point of accuracy: the arms' predictions differ on 0 of 872 test examples in any "
            "common seed, so |LoRA - full| <= 0.34 points at 95% (exact binomial bound, unadjusted, p < 0.001, "
            "Holm-adjusted over 2 hypotheses p < 0.001)") in sentence
    row = verdict_row(sst2, sentence)
    assert row["example_equivalence"]["discordant"] == 0 and row["example_equivalence"]["equivalent"]
    rte = adjust_across_tasks([compare_task("rte", *frames(277, "rte"), n_resamples=200)])[0]
    assert rte.example_equivalence.bound == pytest.approx(1.0757, abs=1e-4)   # > 1 point: not enough examples
    assert verdict_word(rte) == "inconclusive"
    assert "equivalence within ±1 point is not shown (the arms' predictions differ on 0 of 277" in \
        compose_verdict(rte)


# ---------------------------------------------------------------- the best constant predictor and "learned"


def test_baselines_by_hand():
    rte = pd.DataFrame({"idx": range(200), "label": [0] * 110 + [1] * 90})
    assert trivial_baseline("rte", [rte, rte]) == Baseline(
        "always the test split's majority class 'entailment'", 55.0, 200, constant=0)
    # the test majority decides whatever train's was: the best constant predictor on test
    rte1 = pd.DataFrame({"idx": range(200), "label": [1] * 120 + [0] * 80})
    assert trivial_baseline("rte", [rte1]).value == 60.0 and trivial_baseline("rte", [rte1]).constant == 1
    # MRPC: always "equivalent": precision 68/100, recall 1 -> F1 = 2 x 68 / (68 + 100)
    mrpc = pd.DataFrame({"idx": range(100), "label": [1] * 68 + [0] * 32})
    assert trivial_baseline("mrpc", [mrpc]) == Baseline("always the positive class 'equivalent'", 100 * 136 / 168,
                                                        100, constant=1)
    # SQuAD v2 official dev: 5,945 of 11,873 unanswerable -> answering nothing scores F1 50.07
    squad = pd.DataFrame({"id": [f"q{i}" for i in range(11_873)], "has_answer": [False] * 5_945 + [True] * 5_928})
    b = trivial_baseline("squad_v2", [squad])
    assert b.name == "always no answer" and round(b.value, 2) == 50.07 and b.n_examples == 11_873
    assert trivial_baseline("rte", []) is None and trivial_baseline("rte", [pd.DataFrame({"idx": [1]})]) is None


def test_rte_of_the_cpu_study_is_not_learned_by_either_arm():
    """docs/study-cpu's RTE: neither arm beats the 52.7 baseline significantly (one-sided t: p 0.23 and 0.37),
    although LoRA's mean clears it by more than a point: two test examples per seed flip either label."""
    base = Baseline("always the test split's majority class 'entailment'", 100 * 146 / 277, 277, constant=0)
    lora, full = [100 * k / 277 for k in (152, 141, 160)], [100 * k / 277 for k in (149, 142, 150)]
    c = adjust_across_tasks([comparison("rte", lora, full, baseline=base)])[0]
    assert c.learned["lora"].p == pytest.approx(0.230, abs=1e-3)
    assert c.learned["full"].p == pytest.approx(0.365, abs=1e-3)
    assert c.unlearned_arms == ["lora", "full"] and verdict_word(c) == "not learned"
    sentence = compose_verdict(c)
    assert sentence == (
        "rte: not learned: neither LoRA (54.51; one-sided t-test over 3 seeds p = 0.230, Holm-adjusted over 2 "
        "arms p = 0.460) nor full fine-tuning (53.07; one-sided t-test over 3 seeds p = 0.365, Holm-adjusted over "
        "2 arms p = 0.460) is shown to beat the best constant predictor (always the test split's majority class "
        "'entailment': 52.71 points of accuracy on test) at alpha = 0.05 (a test that does not reject with 3 "
        "seeds is absence of evidence that it learned, not evidence that it did not), so LoRA is not compared "
        "with full fine-tuning here (LoRA - full = +1.44 points).")
    row = verdict_row(c, sentence)
    assert row["learned"]["lora"]["state"] == "not shown" and row["learned"]["full"]["state"] == "not shown"
    assert row["compared"] is False and row["unlearned_arms"] == ["lora", "full"]


def test_exactly_one_arm_learned_says_which():
    base = Baseline("always the positive class 'equivalent'", 80.0, 408, constant=1)
    c = adjust_across_tasks([comparison("mrpc", [90.0, 91.0, 92.5], [80.5, 79.0, 81.0], baseline=base)])[0]
    assert c.learned_arms == ["lora"] and c.unlearned_arms == ["full"]
    assert verdict_word(c) == "only LoRA learned"
    sentence = compose_verdict(c)
    assert sentence.startswith("mrpc: only LoRA learned: LoRA (91.17; one-sided t-test over 3 seeds p = ")
    assert "beats the best constant predictor (always the positive class 'equivalent': 80.00 points of f1 on " \
           "test) significantly at alpha = 0.05; full fine-tuning (80.17; one-sided t-test" in sentence
    assert "is not shown to (a test that does not reject with 3 seeds is absence of evidence" in sentence
    flipped = adjust_across_tasks([comparison("mrpc", [80.5, 79.0, 81.0], [90.0, 91.0, 92.5], baseline=base)])[0]
    assert verdict_word(flipped) == "only full learned"


def test_the_learning_margin_is_its_own_setting():
    base = Baseline("always", 50.0, 872, constant=1)
    lora, full = [52.0, 53.0, 54.0], [52.5, 53.0, 53.5]       # ~3 points above the baseline, clearly
    for margin in (0.3, 1.0, 5.0):   # the equivalence margin no longer changes what counts as learned
        c = adjust_across_tasks([comparison("sst2", lora, full, baseline=base, margin=margin)])[0]
        assert c.learned_arms == ["lora", "full"], margin
    strict = TaskComparison(**{**comparison("sst2", lora, full, baseline=base).__dict__,
                               "learned": {a: learned_test("sst2", a, v, base, learn_margin=5.0)
                                           for a, v in (("lora", lora), ("full", full))}, "learn_margin": 5.0})
    strict = adjust_across_tasks([strict])[0]
    assert verdict_word(strict) == "not learned" and "by more than 5 points" in compose_verdict(strict)


def test_learning_that_cannot_be_checked_is_said_and_never_matches():
    lora, full = [80.1, 80.3, 80.2], [80.0, 80.25, 80.05]
    c = adjust_across_tasks([comparison("rte", lora, full)])[0]      # no predictions: no baseline
    assert c.equivalence_p_adjusted < 0.05                            # the TOST alone would say "matches"
    assert c.unknown_learning == ["lora", "full"] and verdict_word(c) == "inconclusive"
    sentence = compose_verdict(c)
    assert ("; the equivalence test puts LoRA - full within ±1 point (TOST p < 0.001, 90% CI [0.02, 0.18] "
            "(unadjusted), Holm-adjusted over 2 hypotheses p = 0.001), but 'matches' is not said while it is unknown "
            "whether the arms learned the task") in sentence
    assert sentence.endswith("Whether either arm learned the task could not be checked (no test predictions on disk "
                             "to score the best constant predictor): two arms that learned nothing would match each "
                             "other, so 'matches' is not said.")
    row = verdict_row(c, sentence)
    assert row["learned"]["lora"]["state"] == "unknown" and row["compared"] is True
    checked = adjust_across_tasks([comparison("rte", lora, full, baseline=Baseline("m", 50.0, 200, 0))])[0]
    assert verdict_word(checked) == "matches"
    assert verdict_word(adjust_across_tasks([comparison("rte", lora, full, baseline=Baseline("m", 80.1, 200, 0))
                                             ])[0]) == "not learned"


def test_few_seeds_learned_test_runs_on_the_examples():
    # one seed: a paired bootstrap of the arm's per-example correctness minus the majority class's
    labels = np.array([0] * 60 + [1] * 40)
    good = labels.copy()
    good[:10] = 1 - good[:10]                                         # 90% right
    frame = pd.DataFrame({"idx": range(100), "label": labels, "prediction": good})
    base = trivial_baseline("rte", [frame])
    t = learned_test("rte", "lora", [90.0], base, [frame], n_resamples=2000)
    assert t.level == "examples" and t.n == 100 and t.estimate == pytest.approx(30.0) and t.p < 0.001
    assert t.test == "one-sided paired bootstrap over 100 test examples (1 seed)" and t.state == "shown"
    majority = pd.DataFrame({"idx": range(100), "label": labels, "prediction": np.zeros(100, int)})
    t0 = learned_test("rte", "full", [60.0], base, [majority], n_resamples=2000)
    assert t0.estimate == 0.0 and t0.p > 0.4 and t0.state == "not shown"
    unknown = learned_test("rte", "full", [60.0], base, [None])
    assert unknown.state == "unknown" and "no test predictions" in unknown.reason


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
    # the baseline (always "equivalent") is exactly full's score: full is not learned; LoRA is below it
    assert c.baseline.value == pytest.approx(f1_full)
    c = adjust_across_tasks([c])[0]
    assert c.unlearned_arms == ["lora", "full"] and verdict_word(c) == "not learned"


def test_accuracy_tasks_keep_mcnemar_per_seed_and_the_seed_mean_combined():
    headline, predictions = mrpc_frames()
    rte = headline.assign(task="rte")
    c = compare_task("rte", rte.assign(test_primary=[61.0, 40.0, 62.0, 40.0, 63.0, 40.0]), predictions)
    per_seed, combined = c.example_tests[:-1], c.example_tests[-1]
    assert all(t["test"].startswith("McNemar") and t["metric"] == "accuracy" for t in per_seed)
    assert (combined["comparison"], combined["test"]) == ("mean accuracy over seeds", "paired bootstrap")
    # the combined difference is the difference of the seed-mean accuracies on these 100 examples (points)
    labels = predictions["lora-42"]["label"].to_numpy()
    acc = {m: np.mean([100 * (predictions[f"{m}-{s}"]["prediction"].to_numpy() == labels).mean() for s in SEEDS])
           for m in ("lora", "full")}
    assert combined["mean_diff"] == pytest.approx(acc["lora"] - acc["full"])


# ---------------------------------------------------------------- the word and the sentence agree


def test_word_and_sentence_agree():
    rng = np.random.default_rng(0)
    phrases = {"better": "LoRA is significantly better", "worse": "full fine-tuning is significantly better",
               "matches": "LoRA matches full fine-tuning", "not learned": ": not learned:",
               "only LoRA learned": ": only LoRA learned:", "only full learned": ": only full fine-tuning learned:"}
    seen = set()
    for _ in range(300):
        full = list(rng.normal(80, rng.uniform(0.05, 2), 3))
        lora = list(np.add(full, rng.normal(rng.choice([-3, 0, 3]), rng.uniform(0.01, 1), 3)))
        if rng.random() < 0.2:
            lora = list(np.add(full, 0.5))   # no spread
        base = Baseline("majority", float(rng.choice([55.0, 79.5, 80.0])), 200, 0)
        tests = [mcnemar_row(int(rng.integers(0, 30)), int(rng.integers(0, 30)), float(rng.uniform(0, 0.2)))]
        c = adjust_across_tasks([comparison("rte", lora, full, baseline=base, example_tests=tests)])[0]
        word, sentence = verdict_word(c), compose_verdict(c)
        assert word in VERDICT_WORDS
        seen.add(word)
        for w, phrase in phrases.items():
            assert (w == word) == (phrase in sentence), (word, sentence)
        assert " inf" not in sentence and "nan" not in sentence
    assert seen == {"better", "worse", "matches", "inconclusive", "not learned", "only LoRA learned",
                    "only full learned"}


def test_methods_text_explains_the_learned_gate_and_the_one_family():
    text = verdict_methods_text()
    assert len(text) == 4 and all(isinstance(t, str) for t in text)
    assert "best constant predictor" in text[0] and "50.07" in text[0] and "absence of evidence" in text[0]
    assert "one Holm family" in text[1] and "0.19" in text[1]
    assert "at least 3 seeds" in text[2] and "1.08 points" in text[2]


def test_the_baseline_is_the_test_splits_majority_even_when_the_runs_recorded_trains(tmp_path):
    """A model that always predicts the test split's majority class never counts as learned, whatever class was
    train's majority (metrics.json data.train_majority_label is kept, not used for the baseline)."""
    from fake_results import classification_predictions, write_fake_run
    from tunebench.report.build import build_report

    labels = [0] * 6 + [1] * 4                               # test: 60% class 0, train's majority is class 1
    for method in ("lora", "full"):
        for seed in (42, 43, 44):
            preds = classification_predictions(labels, [lab == 0 for lab in labels])   # always class 0
            write_fake_run(tmp_path, "rte", method, seed, test=0.6, predictions=preds,
                           extra={"data": {"train_majority_label": 1}})
    (row,) = build_report(tmp_path, with_figures=False, n_resamples=500).verdict_rows
    assert row["baseline"] == {"name": "always the test split's majority class 'entailment'", "value": 60.0}
    assert row["word"] == "not learned" and row["learned"]["lora"]["level"] == "examples"


def test_the_engine_records_trains_majority_label():
    from tunebench.metrics.classification import majority_label

    assert majority_label([1, 0, 1]) == 1
    assert majority_label([1, 0]) == 0          # a tie: the lower label id
    assert majority_label([]) is None
