"""The exact power of the paired TOST and the seeds it needs (tunebench.report.power): against a simulation of
the report's own test, an independent integral, the naive shortcut it must not be, and hand-computed bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from tunebench.report.power import (
    SeedsPlan,
    describe,
    plan_seeds,
    sd_upper_bound,
    seeds_for_power,
    tost_power,
)

MARGIN, ALPHA = 1.0, 0.05


def simulated_power(n: int, sd: float, true_diff: float, draws: int = 20_000, seed: int = 0) -> float:
    """The paired TOST as the report runs it (report.stats.equivalence_test: two one-sided ttest_1samp at alpha
    against -margin and +margin), on `draws` simulated pilots at once (ttest_1samp along axis 1)."""
    d = np.random.default_rng(seed).normal(true_diff, sd, size=(draws, n))
    p_low = stats.ttest_1samp(d, -MARGIN, axis=1, alternative="greater").pvalue
    p_high = stats.ttest_1samp(d, MARGIN, axis=1, alternative="less").pvalue
    return float(np.mean(np.maximum(p_low, p_high) < ALPHA))


def naive_powers(n: int, sd: float, true_diff: float) -> tuple[float, float]:
    """The shortcut that treats the two one-sided tests as if each had its own sd: P(A) + P(B) - 1 and P(A) P(B)
    from two noncentral t's."""
    df, se = n - 1, sd / math.sqrt(n)
    t = stats.t.ppf(1 - ALPHA, df)
    p_a = stats.nct.sf(t, df, (true_diff + MARGIN) / se)
    p_b = stats.nct.cdf(-t, df, (true_diff - MARGIN) / se)
    return float(p_a + p_b - 1), float(p_a * p_b)


def power_over_sd(n: int, sd: float, margin: float, alpha: float, true_diff: float) -> float:
    """The same expectation integrated over the sample sd itself (chi density), not its quantile."""
    df, root_n = n - 1, math.sqrt(n)
    t = stats.t.ppf(1 - alpha, df)
    se = sd / root_n

    def f(s: float) -> float:
        half = t * s / root_n
        p = stats.norm.cdf((margin - half - true_diff) / se) - stats.norm.cdf((-margin + half - true_diff) / se)
        return max(p, 0.0) * stats.chi.pdf(s * math.sqrt(df) / sd, df) * math.sqrt(df) / sd

    s_max = margin * root_n / t
    return integrate.quad(f, 0, s_max, points=[p for p in (sd / 2, sd, 1.5 * sd) if p < s_max], limit=200,
                          epsabs=1e-12)[0]


# ---------------------------------------------------------------- tost_power


@pytest.mark.parametrize("n,sd,true_diff", [
    (3, 0.3, 0.0), (3, 0.5, 0.0), (4, 0.5, 0.0), (5, 0.6, 0.2), (10, 1.0, 0.0), (20, 1.5, -0.3), (56, 2.5, 0.0),
])
def test_power_matches_a_simulation_of_the_reports_tost(n, sd, true_diff):
    assert tost_power(n, sd, MARGIN, ALPHA, true_diff) == pytest.approx(simulated_power(n, sd, true_diff), abs=0.015)


@pytest.mark.parametrize("n,sd,margin,alpha,true_diff", [
    (3, 0.5, 1.0, 0.05, 0.0), (7, 2.0, 1.5, 0.025, 0.4), (55, 2.5, 1.0, 0.05, 0.0), (400, 6.0, 1.0, 0.0125, -0.3),
])
def test_power_matches_an_independent_integral(n, sd, margin, alpha, true_diff):
    assert tost_power(n, sd, margin, alpha, true_diff) == pytest.approx(
        power_over_sd(n, sd, margin, alpha, true_diff), abs=1e-8)


def test_naive_noncentral_t_shortcut_is_not_the_power_at_small_n():
    n, sd = 3, 0.5
    exact, simulated = tost_power(n, sd, MARGIN, ALPHA), simulated_power(n, sd, 0.0)
    assert exact == pytest.approx(0.558, abs=0.001)
    assert exact == pytest.approx(simulated, abs=0.015)
    for naive in naive_powers(n, sd, 0.0):          # 0.424 and 0.507: each off by more than 0.05
        assert abs(naive - exact) > 0.05
        assert abs(naive - simulated) > 0.03


def test_power_edges():
    assert tost_power(1, 1.0, MARGIN, ALPHA) == 0.0
    assert tost_power(0, 1.0, MARGIN, ALPHA) == 0.0
    assert tost_power(5, 0.0, MARGIN, ALPHA, 0.5) == 1.0
    assert tost_power(5, 0.0, MARGIN, ALPHA, 1.0) == 0.0
    assert tost_power(2, 0.01, MARGIN, ALPHA) > 0.99           # df 1, but a tiny spread
    assert tost_power(3, 100.0, MARGIN, ALPHA) < 1e-3
    assert tost_power(50, 1.0, MARGIN, ALPHA, 3.0) < 1e-6      # far beyond the margin
    assert tost_power(10_000, 2.5, MARGIN, ALPHA, 0.99) < 0.5  # at the margin: at most 1/2 (alpha) even at large n
    with pytest.raises(ValueError, match="margin"):
        tost_power(5, 1.0, 0.0, ALPHA)
    with pytest.raises(ValueError, match="alpha"):
        tost_power(5, 1.0, MARGIN, 0.5)
    with pytest.raises(ValueError, match="sd"):
        tost_power(5, -1.0, MARGIN, ALPHA)


def test_power_grows_with_n_and_falls_with_sd_and_the_true_difference():
    by_n = [tost_power(n, 2.0, MARGIN, ALPHA) for n in (3, 5, 10, 20, 40, 80)]
    assert by_n == sorted(by_n) and by_n[-1] > by_n[0]
    by_sd = [tost_power(20, sd, MARGIN, ALPHA) for sd in (0.5, 1, 2, 4)]
    assert by_sd == sorted(by_sd, reverse=True)
    by_diff = [tost_power(20, 1.0, MARGIN, ALPHA, d) for d in (0, 0.2, 0.5, 0.8)]
    assert by_diff == sorted(by_diff, reverse=True)
    assert tost_power(20, 1.0, MARGIN, ALPHA, 0.3) == pytest.approx(tost_power(20, 1.0, MARGIN, ALPHA, -0.3))


# ---------------------------------------------------------------- seeds_for_power


def test_sanity_figure_sd_2_5_needs_55_seeds():
    """sd 2.5, alpha 0.05, true difference 0, margin 1, 80% power, planning with the sd itself: 55 pairs (power
    0.8009; 54 give 0.7911). The normal approximation (1.645 + 1.282)^2 x 2.5^2 = 53.5 is a little low."""
    assert seeds_for_power(2.5, MARGIN, ALPHA, 0.8) == 55
    assert tost_power(55, 2.5, MARGIN, ALPHA) == pytest.approx(0.80090, abs=1e-5)
    assert tost_power(54, 2.5, MARGIN, ALPHA) == pytest.approx(0.79113, abs=1e-5)
    assert seeds_for_power(2.5, MARGIN, ALPHA, 0.9) == 70


@pytest.mark.parametrize("sd,power,true_diff,alpha", [
    (0.4, 0.8, 0.0, 0.05), (1.0, 0.8, 0.0, 0.05), (2.5, 0.9, 0.3, 0.05), (5.3, 0.8, 0.0, 0.0125),
    (1.2, 0.95, -0.5, 0.05),
])
def test_seeds_reach_the_power_and_one_fewer_does_not(sd, power, true_diff, alpha):
    n = seeds_for_power(sd, MARGIN, alpha, power, true_diff)
    assert n is not None and n >= 3
    assert tost_power(n, sd, MARGIN, alpha, true_diff) >= power
    if n > 3:
        assert tost_power(n - 1, sd, MARGIN, alpha, true_diff) < power


def test_seeds_are_monotone():
    by_sd = [seeds_for_power(sd, MARGIN, ALPHA, 0.8) for sd in (0.5, 1.0, 2.0, 3.0, 5.0)]
    assert by_sd == sorted(by_sd) and len(set(by_sd)) == len(by_sd)
    by_power = [seeds_for_power(2.0, MARGIN, ALPHA, p) for p in (0.5, 0.8, 0.9, 0.99)]
    assert by_power == sorted(by_power)
    by_margin = [seeds_for_power(2.0, m, ALPHA, 0.8) for m in (0.5, 1.0, 2.0)]
    assert by_margin == sorted(by_margin, reverse=True)
    by_diff = [seeds_for_power(2.0, MARGIN, ALPHA, 0.8, d) for d in (0.0, 0.3, 0.6, 0.9)]
    assert by_diff == sorted(by_diff)


def test_seeds_none_beyond_the_margin_or_past_max_n():
    assert seeds_for_power(1.0, MARGIN, ALPHA, 0.8, true_diff=1.0) is None
    assert seeds_for_power(1.0, MARGIN, ALPHA, 0.8, true_diff=-1.5) is None
    assert seeds_for_power(100.0, MARGIN, ALPHA, 0.8) is None                # more than 10,000
    assert seeds_for_power(2.5, MARGIN, ALPHA, 0.8, max_n=54) is None
    assert seeds_for_power(2.5, MARGIN, ALPHA, 0.8, max_n=55) == 55
    assert seeds_for_power(0.0, MARGIN, ALPHA, 0.8) == 3
    assert seeds_for_power(0.05, MARGIN, ALPHA, 0.8) == 3
    with pytest.raises(ValueError, match="power"):
        seeds_for_power(1.0, MARGIN, ALPHA, 1.0)


# ---------------------------------------------------------------- sd_upper_bound


def test_sd_upper_bound_by_hand():
    # df 2: the chi-square cdf is 1 - exp(-x/2), so its 20% quantile is -2 ln 0.8 and the bound is
    # sd sqrt(2 / (-2 ln 0.8)) = sd / sqrt(-ln 0.8) = 2.1169 sd
    assert sd_upper_bound(2.0, 3) == pytest.approx(2.0 / math.sqrt(-math.log(0.8)), rel=1e-12)
    assert sd_upper_bound(1.0, 3) == pytest.approx(2.116936, abs=1e-6)
    # df 1 at 90%: chi2.ppf(0.1, 1) = z_{0.55}^2
    assert sd_upper_bound(1.0, 2, 0.9) == pytest.approx(1 / stats.norm.ppf(0.55), rel=1e-12)
    assert sd_upper_bound(1.0, 101) == pytest.approx(1.0, abs=0.1) and sd_upper_bound(1.0, 101) > 1
    assert math.isnan(sd_upper_bound(1.0, 1))
    with pytest.raises(ValueError):
        sd_upper_bound(1.0, 3, 1.0)


# ---------------------------------------------------------------- plan_seeds and describe

SST2 = [-0.45871559633029335, -4.816513761467888, -0.45871559633027914]   # docs/study-cpu's SST-2 LoRA - full
SST2_SD = float(np.std(SST2, ddof=1))


def test_plan_seeds_on_the_study_cpu_sst2_pilot():
    plan = plan_seeds("sst2", SST2)
    assert isinstance(plan, SeedsPlan) and plan.reason is None
    assert plan.n_pairs == 3 and plan.mean_diff == pytest.approx(-1.911315, abs=1e-6)
    assert plan.sd == pytest.approx(2.515976, abs=1e-6)
    assert plan.sd_bound == pytest.approx(plan.sd * 2.116936, rel=1e-6)
    assert plan.alpha_per_test == 0.05 and plan.family_size == 1 and plan.true_diff == 0.0
    assert plan.powers == (0.8, 0.9) and plan.seeds == (245, 309) and plan.most_seeds == 309
    assert plan.seeds_at(0.9) == 309 and plan.planning_sd == plan.sd_bound
    assert plan_seeds("sst2", SST2, use_bound=False).seeds == (56, 70)
    assert plan_seeds("sst2", SST2, family_size=4, powers=(0.8,)).alpha_per_test == 0.0125
    assert plan_seeds("sst2", SST2, family_size=4, powers=(0.8,)).seeds[0] > 245
    assert describe(plan, 0.016426823658519222, "h measured on cpu (x86_64)") == (
        "to show ±1 point on sst2 at the observed spread (sd 2.52, bound 5.33) and a true difference of 0: "
        "245 seeds at 80% power, about 4.02 h measured on cpu (x86_64)")
    assert describe(plan) == (
        "to show ±1 point on sst2 at the observed spread (sd 2.52, bound 5.33) and a true difference of 0: "
        "245 seeds at 80% power")
    assert describe(plan_seeds("sst2", SST2, margin=2, alpha=0.05, family_size=4, use_bound=False,
                               true_diff=0.5), 0.5) == (
        "to show ±2 points on sst2 at the observed spread (sd 2.52) and a true difference of 0.50: "
        f"{seeds_for_power(SST2_SD, 2, 0.0125, 0.8, 0.5)} seeds at 80% power (alpha 0.05/4), about "
        f"{0.5 * seeds_for_power(SST2_SD, 2, 0.0125, 0.8, 0.5):.3g} GPU-hours")


def test_plan_seeds_reasons():
    small = plan_seeds("rte", [1.0, 2.0])
    assert small.reason == "a pilot of 2 seeds is too small to estimate the spread: run at least 3 seeds per method"
    assert small.seeds == (None, None) and small.most_seeds is None and small.sd == pytest.approx(0.7071, abs=1e-4)
    assert describe(small, 1.0) == ("rte: a pilot of 2 seeds is too small to estimate the spread: run at least 3 "
                                    "seeds per method")
    assert plan_seeds("rte", [1.0]).reason.startswith("a pilot of 1 seed is too small")
    assert plan_seeds("rte", []).reason.startswith("a pilot of 0 seeds is too small")
    beyond = plan_seeds("sst2", SST2, true_diff="observed")
    assert beyond.true_diff == pytest.approx(-1.911315, abs=1e-6) and beyond.seeds == (None, None)
    assert describe(beyond) == "sst2: at a true difference of -1.91 equivalence within ±1 point cannot be shown"
    assert plan_seeds("sst2", SST2, true_diff=1.0).reason == (
        "at a true difference of 1.00 equivalence within ±1 point cannot be shown")
    within = plan_seeds("mrpc", [0.1, -0.3, 0.5], true_diff="observed")
    assert within.reason is None and within.true_diff == pytest.approx(0.1)
    flat = plan_seeds("rte", [0.36, 0.36, 0.36])
    assert flat.reason is not None and "no spread" in flat.reason and flat.seeds == (None, None)
    huge = plan_seeds("squad_v2", [30.0, -30.0, 0.0])
    assert huge.reason is None and huge.seeds == (None, None)
    assert describe(huge).endswith(": more than 10,000 seeds at 80% power")
    with pytest.raises(ValueError, match="margin"):
        plan_seeds("sst2", SST2, margin=0)
    with pytest.raises(ValueError, match="true_diff"):
        plan_seeds("sst2", SST2, true_diff="mean")
    with pytest.raises(ValueError, match="finite"):
        plan_seeds("sst2", [1.0, math.nan, 2.0])
