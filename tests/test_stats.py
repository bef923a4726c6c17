"""tunebench.report.stats against hand computation and direct scipy calls."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tunebench.report.stats import (
    cohens_dz,
    compare_paired_seeds,
    compare_unpaired_seeds,
    equivalence_test,
    mcnemar,
    mcnemar_from_correct,
    paired_bootstrap,
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


def test_identical_arms_give_p_one_not_nan():
    r = compare_paired_seeds([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])
    assert r.t_p == 1.0 and r.rank_p == 1.0 and r.mean_diff == 0.0


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
    same = equivalence_test([90.0, 91.0], [89.8, 90.8], margin=1)     # constant difference 0.2
    assert same.p == 0.0 and same.equivalent and same.ci_low == pytest.approx(0.2)
    assert not equivalence_test([90.0, 91.0], [88.0, 89.0], margin=1).equivalent   # constant 2 > margin
    with pytest.raises(ValueError, match="margin must be positive"):
        equivalence_test([1.0, 2.0], [1.0, 2.0], margin=0)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 0.5\)"):
        equivalence_test([91.05, 92.05, 90.05], [90.0, 90.0, 90.0], margin=1, alpha=0.6)
    # undefined wherever the matching t-test is: both arms constant (Welch), a missing paired value
    assert equivalence_test([90.0, 90.0], [90.0, 90.0, 90.0], margin=1, paired=False).design == "none"
    missing = equivalence_test([90.2, 91.2, math.nan], [90.0, 91.0, 89.0], margin=1)
    assert missing.design == "none" and not missing.equivalent
