"""tunebench.report.stats against hand computation and direct scipy calls."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tunebench.report.stats import (
    binary_f1,
    bootstrap_f1_differences,
    cohens_dz,
    compare_paired_seeds,
    compare_unpaired_seeds,
    equivalence_test,
    holm,
    mcnemar,
    mcnemar_from_correct,
    paired_bootstrap,
    paired_bootstrap_f1,
    summarize,
    t_critical,
)

LORA = [91.2, 90.4, 92.0, 90.9, 91.5]
FULL = [91.0, 91.1, 92.3, 91.6, 91.4]


def test_summarize_three_values_by_hand():
    s = summarize([0.80, 0.82, 0.84])
    assert s.n == 3
    assert s.mean == pytest.approx(0.82)
    assert s.sd == pytest.approx(0.02)
    # t(0.975, 2) = 4.302652729749464 (table value); half-width = t * sd / sqrt(3)
    assert t_critical(3) == pytest.approx(4.302652729749464)
    assert s.half_width == pytest.approx(4.302652729749464 * 0.02 / math.sqrt(3))
    assert s.half_width == pytest.approx(0.049682, abs=1e-6)
    assert (s.ci_low, s.ci_high) == pytest.approx((0.82 - s.half_width, 0.82 + s.half_width))


def test_summarize_one_value_has_no_spread_and_nans_are_dropped():
    one = summarize([0.9, float("nan")])
    assert one.n == 1 and one.mean == 0.9
    assert math.isnan(one.sd) and math.isnan(one.ci_low) and math.isnan(one.ci_high)
    assert summarize([]).n == 0 and math.isnan(summarize([]).mean)


def test_paired_comparison_equals_scipy():
    r = compare_paired_seeds(LORA, FULL)
    t = stats.ttest_rel(LORA, FULL)
    w = stats.wilcoxon(LORA, FULL)
    assert r.design == "paired" and r.n_pairs == 5
    assert r.t_p == pytest.approx(t.pvalue) and r.t_stat == pytest.approx(t.statistic)
    assert r.rank_p == pytest.approx(w.pvalue) and r.rank_stat == pytest.approx(w.statistic)
    assert (r.ci_low, r.ci_high) == pytest.approx(tuple(t.confidence_interval()))
    d = np.subtract(LORA, FULL)
    assert r.mean_diff == pytest.approx(d.mean())
    assert r.effect_size == pytest.approx(d.mean() / d.std(ddof=1))  # Cohen's d_z


def test_wilcoxon_cannot_reject_with_five_seeds():
    # Why the verdict decides on the t-test: 5 positive differences give the smallest exact p, 2/2^5.
    r = compare_paired_seeds([2, 3, 4, 5, 6.5], [1, 1, 1, 1, 1])
    assert r.rank_p == pytest.approx(0.0625)
    assert r.t_p < 0.05


# ---------------------------------------------------------------- no spread across seeds

# RTE-like accuracies in points as the report computes them (fraction correct x 100): LoRA gets one more
# test example right than full on every seed.
RTE_FULL_200 = [100 * k / 200 for k in (150, 155, 160)]
RTE_LORA_200 = [100 * (k + 1) / 200 for k in (150, 155, 160)]
RTE_FULL_277 = [100 * k / 277 for k in (150, 155, 160)]
RTE_LORA_277 = [100 * (k + 1) / 277 for k in (150, 155, 160)]


@pytest.mark.parametrize(("lora", "full", "diff"), [(RTE_LORA_200, RTE_FULL_200, 0.5),
                                                     (RTE_LORA_277, RTE_FULL_277, 100 / 277)])
def test_constant_differences_leave_the_paired_t_test_undefined(lora, full, diff):
    # Formerly: t = inf (200) or 1.5e14 (277, float noise in the 14th digit), p ~ 0, CI [d, d].
    r = compare_paired_seeds(lora, full)
    assert r.design == "paired" and r.n_pairs == 3 and r.mean_diff == pytest.approx(diff)
    for x in (r.t_stat, r.t_p, r.ci_low, r.ci_high, r.effect_size):
        assert math.isnan(x)
    assert r.undefined and r.undefined_reason == (
        f"LoRA - full is +{diff:.2f} points on each of the 3 seeds: with no spread across seeds the paired t-test "
        "and its interval are undefined")
    assert r.rank_p == pytest.approx(0.25) and r.rank_stat == 0.0   # Wilcoxon: 3 tied positive ranks, 2/2^3
    assert math.isnan(cohens_dz(np.subtract(lora, full)))


def test_identical_arms_leave_both_seed_tests_undefined():
    r = compare_paired_seeds([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])
    assert r.mean_diff == 0.0 and r.undefined and "+0.00 points on each of the 3 seeds" in r.undefined_reason
    assert math.isnan(r.t_p) and math.isnan(r.rank_p) and math.isnan(r.ci_low)


def test_a_small_real_spread_is_still_tested():
    # One seed differs by one more example: a spread of 0.5 points is data, not rounding.
    r = compare_paired_seeds([75.5, 78.0, 80.5], [75.0, 77.5, 79.5])
    t = stats.ttest_rel([75.5, 78.0, 80.5], [75.0, 77.5, 79.5])
    assert not r.undefined and r.t_p == pytest.approx(t.pvalue) and r.ci_high - r.ci_low > 0


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")   # scipy's own call below, on a constant arm
def test_both_arms_constant_leave_welch_undefined():
    r = compare_unpaired_seeds([80.5, 80.5], [80.0, 80.0, 80.0])
    assert r.design == "unpaired" and r.mean_diff == pytest.approx(0.5) and r.undefined
    assert math.isnan(r.t_p) and math.isnan(r.ci_low) and math.isnan(r.ci_high) and math.isnan(r.effect_size)
    assert r.undefined_reason.startswith("each method scores the same on all of its seeds (LoRA - full = +0.50")
    assert r.rank_p == pytest.approx(stats.mannwhitneyu([80.5, 80.5], [80.0] * 3).pvalue)
    one_constant = compare_unpaired_seeds([80.5, 80.5], [79.0, 80.0, 81.5])   # one arm varies: Welch is defined
    assert not one_constant.undefined and one_constant.t_p == pytest.approx(
        stats.ttest_ind([80.5, 80.5], [79.0, 80.0, 81.5], equal_var=False).pvalue)


@pytest.mark.parametrize(("lora", "full"), [(RTE_LORA_200, RTE_FULL_200), (RTE_LORA_277, RTE_FULL_277)])
def test_constant_differences_leave_the_equivalence_test_undefined(lora, full):
    # The bug this guards: constant differences gave p = 0 and "equivalent" with a 90% interval [0.50, 0.50].
    e = equivalence_test(lora, full, margin=1)
    assert e.design == "paired" and math.isnan(e.p) and not e.equivalent
    assert math.isnan(e.ci_low) and math.isnan(e.ci_high)
    assert "the equivalence test (TOST) and its interval are undefined" in e.undefined_reason


# ---------------------------------------------------------------- Holm


def test_holm_by_hand():
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> max(0.06, 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # NaN: not in the family (m = 2); caps at 1; a family of one is unadjusted
    adjusted = holm([0.02, math.nan, 0.5])
    assert adjusted[0] == pytest.approx(0.04) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.5)
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    assert holm([0.03]) == [0.03] and holm([]) == []
    # ties keep their order and get the same adjusted value: 0.01 x 3, then max(0.03, 0.01 x 2), then 0.02 x 1
    assert holm([0.01, 0.01, 0.02]) == pytest.approx([0.03, 0.03, 0.03])


def test_holm_rejects_what_bonferroni_would_not():
    # alpha 0.05, four tasks: Bonferroni needs p < 0.0125 for all; Holm steps down.
    adjusted = holm([0.011, 0.014, 0.02, 0.04])
    assert adjusted == pytest.approx([0.044, 0.044, 0.044, 0.044])
    assert all(p < 0.05 for p in adjusted) and not all(4 * p < 0.05 for p in (0.011, 0.014, 0.02, 0.04))


# ---------------------------------------------------------------- example-level F1 (MRPC)

# 4 positives, 6 negatives. LoRA always says "not a paraphrase": accuracy 0.6, F1 0. Full always says
# "paraphrase": accuracy 0.4, F1 = 2 x 4 / (2 x 4 + 6) = 8/14. Accuracy favours LoRA, F1 favours full.
F1_LABELS = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
LORA_NEG = [0] * 10
FULL_POS = [1] * 10


def test_binary_f1_against_scikit_learn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    for _ in range(50):
        y, p = rng.integers(0, 2, 30), rng.integers(0, 2, 30)
        assert binary_f1(y, p) == pytest.approx(f1_score(y, p, zero_division=0))
    assert binary_f1(F1_LABELS, FULL_POS) == pytest.approx(8 / 14) and binary_f1(F1_LABELS, LORA_NEG) == 0.0
    assert binary_f1([0, 0], [0, 0]) == 0.0   # no positive label or prediction: 0, as zero_division=0


def test_f1_bootstrap_recomputes_f1_on_each_resample():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 40)
    lora = [np.where(rng.random(40) < 0.8, y, 1 - y) for _ in range(2)]
    full = [np.where(rng.random(40) < 0.7, y, 1 - y) for _ in range(2)]
    got = bootstrap_f1_differences(y, lora, full, n_resamples=30, seed=5)
    idx = np.random.default_rng(5).integers(0, 40, size=(30, 40))   # the resamples, drawn as bootstrap_means does
    want = [np.mean([f1_score(y[i], p[i], zero_division=0) for p in lora])
            - np.mean([f1_score(y[i], p[i], zero_division=0) for p in full]) for i in idx]
    assert got == pytest.approx(want, abs=1e-12)


def test_f1_bootstrap_where_accuracy_favours_the_other_arm():
    y = F1_LABELS * 10   # 100 examples, 40 positive
    r = paired_bootstrap_f1(y, [LORA_NEG * 10], [FULL_POS * 10], n_resamples=2000, seed=0)
    assert r.n == 100 and r.mean_diff == pytest.approx(-8 / 14) and math.isnan(r.effect_size)
    assert r.ci_high < 0 and r.p == pytest.approx(1 / 2001)   # no resample gets F1(full) anywhere near 0
    assert mcnemar_from_correct(np.equal(LORA_NEG * 10, y), np.equal(FULL_POS * 10, y)).b == 60   # accuracy: LoRA
    assert paired_bootstrap_f1(y, [FULL_POS * 10], [FULL_POS * 10], n_resamples=100).p == 1.0
    with pytest.raises(ValueError, match="predictions for 100 labels"):
        paired_bootstrap_f1(y, [LORA_NEG], [FULL_POS * 10])


def test_paired_needs_equal_lengths():
    with pytest.raises(ValueError):
        compare_paired_seeds([1, 2], [1, 2, 3])


def test_unpaired_comparison_equals_welch():
    a, b = [90.0, 91.5, 92.0], [88.0, 89.0, 88.5, 90.5]
    r = compare_unpaired_seeds(a, b)
    t = stats.ttest_ind(a, b, equal_var=False)
    assert r.design == "unpaired" and r.n_pairs == 0 and (r.n_lora, r.n_full) == (3, 4)
    assert r.t_p == pytest.approx(t.pvalue)
    assert (r.ci_low, r.ci_high) == pytest.approx(tuple(t.confidence_interval()))
    assert r.rank_p == pytest.approx(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)


def test_unpaired_with_one_seed_runs_no_test():
    r = compare_unpaired_seeds([90.0], [88.0, 89.0])
    assert r.mean_diff == pytest.approx(1.5) and math.isnan(r.t_p)


def test_mcnemar_exact_small_discordant_counts():
    r = mcnemar(8, 2)
    assert r.exact
    assert r.p == pytest.approx(0.109375)
    assert r.p == pytest.approx(stats.binomtest(2, 10, 0.5).pvalue)
    assert r.odds_ratio == 4.0


def test_mcnemar_chi_square_with_continuity_correction_for_large_counts():
    r = mcnemar(30, 10)
    assert not r.exact
    assert r.statistic == pytest.approx((abs(30 - 10) - 1) ** 2 / 40)
    assert r.p == pytest.approx(stats.chi2.sf(9.025, 1))


def test_mcnemar_edge_cases():
    assert mcnemar(0, 0).p == 1.0 and math.isnan(mcnemar(0, 0).odds_ratio)
    assert mcnemar(5, 0).odds_ratio == math.inf
    assert mcnemar(3, 9).p == pytest.approx(mcnemar(9, 3).p)  # two-sided: symmetric


def test_mcnemar_from_correctness_counts_discordant_pairs():
    lora = [True, True, True, False, False, True]
    full = [True, False, False, True, False, True]
    r = mcnemar_from_correct(lora, full)
    assert (r.n, r.b, r.c) == (6, 2, 1)
    assert r.p == pytest.approx(stats.binomtest(1, 3, 0.5).pvalue)


def test_paired_bootstrap_is_deterministic_and_covers_the_observed_mean():
    rng = np.random.default_rng(1)
    d = rng.normal(0.5, 3.0, size=400)
    a = paired_bootstrap(d, n_resamples=2000, seed=7)
    b = paired_bootstrap(d, n_resamples=2000, seed=7)
    c = paired_bootstrap(d, n_resamples=2000, seed=8)
    assert a == b
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
    assert a.mean_diff == pytest.approx(d.mean())
    assert a.ci_low < a.mean_diff < a.ci_high
    assert 0 < a.p <= 1 and a.effect_size == pytest.approx(cohens_dz(d))


def test_paired_bootstrap_p_values_at_the_extremes():
    assert paired_bootstrap(np.zeros(50), n_resamples=200).p == 1.0
    strong = paired_bootstrap(np.full(100, 1.0) + np.linspace(0, 0.1, 100), n_resamples=999)
    assert strong.p == pytest.approx(1 / 1000)  # no resample as far from the observed mean as 0 is


# ---------------------------------------------------------------- equivalence (TOST)


def test_tost_paired_against_the_closed_form_t_distribution_with_two_degrees_of_freedom():
    # d = [1, 2, 3]: mean 2, sd 1, se 1/sqrt(3); with 2 dof the t CDF is 1/2 + t / (2 sqrt(2 + t^2)).
    def cdf2(t):
        return 0.5 + t / (2 * math.sqrt(2 + t * t))

    se = 1 / math.sqrt(3)
    p_low = 1 - cdf2((2 + 5) / se)     # H0: d <= -5
    p_high = cdf2((2 - 5) / se)        # H0: d >= 5
    e = equivalence_test([11, 12, 13], [10, 10, 10], margin=5)
    assert e.design == "paired" and e.p == pytest.approx(max(p_low, p_high), rel=1e-9)
    assert e.p == pytest.approx(0.017549, abs=1e-6) and e.equivalent
    half = 2.919986 * se                # t(0.95, 2 dof): the 90% interval
    assert (e.ci_low, e.ci_high) == (pytest.approx(2 - half, abs=1e-5), pytest.approx(2 + half, abs=1e-5))
    assert not equivalence_test([11, 12, 13], [10, 10, 10], margin=2).equivalent


@pytest.mark.parametrize("paired", [True, False])
def test_tost_shows_equivalence_exactly_when_the_90_percent_interval_is_inside_the_margin(paired):
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 8))
        a = rng.normal(rng.normal(0, 1), rng.uniform(0.1, 2), n)
        b = rng.normal(0, rng.uniform(0.1, 2), n if paired else int(rng.integers(2, 8)))
        margin = float(rng.uniform(0.2, 3))
        e = equivalence_test(a, b, margin, alpha=0.05, paired=paired)
        inside = -margin < e.ci_low and e.ci_high < margin
        assert e.equivalent == inside, (a, b, margin, e)


def test_tost_unpaired_uses_welch():
    a, b = [90.0, 91.0, 92.0], [88.0, 89.0, 88.5, 89.0]
    e = equivalence_test(a, b, margin=3, paired=False)
    low = stats.ttest_ind(np.add(a, 3), b, equal_var=False, alternative="greater").pvalue
    high = stats.ttest_ind(np.subtract(a, 3), b, equal_var=False, alternative="less").pvalue
    assert e.design == "unpaired" and e.p == pytest.approx(max(low, high))
    welch90 = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.90)
    assert (e.ci_low, e.ci_high) == (pytest.approx(welch90.low), pytest.approx(welch90.high))


def test_tost_edge_cases():
    one = equivalence_test([90.0], [89.0], margin=1)
    assert one.design == "none" and math.isnan(one.p) and not one.equivalent
    same = equivalence_test([90.0, 91.0], [89.8, 90.8], margin=1)     # constant difference 0.2: no spread
    assert math.isnan(same.p) and not same.equivalent and math.isnan(same.ci_low) and same.undefined_reason
    assert not equivalence_test([90.0, 91.0], [88.0, 89.0], margin=1).equivalent   # constant 2 > margin
    with pytest.raises(ValueError, match="margin must be positive"):
        equivalence_test([1.0, 2.0], [1.0, 2.0], margin=0)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 0.5\)"):
        equivalence_test([91.05, 92.05, 90.05], [90.0, 90.0, 90.0], margin=1, alpha=0.6)
    # undefined wherever the matching t-test is: both arms constant (Welch), a missing paired value
    welch = equivalence_test([90.0, 90.0], [90.0, 90.0, 90.0], margin=1, paired=False)
    assert welch.design == "unpaired" and math.isnan(welch.p) and not welch.equivalent
    assert "Welch's equivalence test (TOST) and its interval are undefined" in welch.undefined_reason
    missing = equivalence_test([90.2, 91.2, math.nan], [90.0, 91.0, 89.0], margin=1)
    assert missing.design == "none" and not missing.equivalent
