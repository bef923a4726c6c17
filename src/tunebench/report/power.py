"""How many seeds: the exact power of the paired equivalence test (TOST) and the seeds it needs (pure).

The report says "LoRA matches full fine-tuning" on a task only when a paired TOST on the per-seed differences
LoRA - full shows them within +-margin points (report.stats.equivalence_test): two one-sided paired t-tests at
level alpha each, against -margin and +margin, on n seed pairs (df = n - 1). This module answers the question
an inconclusive verdict raises: how many seeds would that test need?

Exact power. Both one-sided tests use the same sample sd S, so the power is neither a product nor a sum of two
noncentral t probabilities (that shortcut is wrong most where it matters, at small n). With differences
~ N(delta, sd^2), the sample mean M ~ N(delta, sd^2 / n) is independent of S, and (n - 1) S^2 / sd^2 ~
chi2(n - 1). Given S = s, with t = t_{1-alpha, n-1}, equivalence is shown iff

    -margin + t s / sqrt(n) < M < margin - t s / sqrt(n),

an interval that is empty once s >= margin sqrt(n) / t. So

    power = E_S[ (Phi((margin - t S/sqrt(n) - delta) / (sd/sqrt(n)))
                  - Phi((-margin + t S/sqrt(n) - delta) / (sd/sqrt(n))))^+ ],

the same quantity Owen's Q function gives (Owen 1965; Phillips 1990, J. Pharmacokin. Biopharm. 18:137-144),
computed here by integrating over the chi-square quantile u = F(V), V = (n - 1) S^2 / sd^2, on (0, F(v_max)):
a bounded, smooth integrand on a finite range, whatever n is.

Planning with a pilot's sd underestimates the seeds needed about half the time (the sd of three seeds is
itself very uncertain); `sd_upper_bound` gives the one-sided upper confidence bound Browne (1995, Stat. Med.
14:1933-1940) recommends planning with. `plan_seeds` puts it together per task from the paired differences,
and `describe` says it in one line.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import integrate, special, stats

MIN_PAIRS = 3                       # fewer seed pairs give no usable estimate of the spread
DEFAULT_POWERS = (0.8, 0.9)
DEFAULT_BOUND_CONFIDENCE = 0.8
DEFAULT_MAX_N = 10_000
OBSERVED = "observed"               # plan_seeds(true_diff=OBSERVED): plan at the pilot's mean difference


# ---------------------------------------------------------------- exact power


def tost_power(n: int, sd: float, margin: float, alpha: float, true_diff: float = 0.0) -> float:
    """The exact power of a paired TOST at level `alpha` (each one-sided test) with n pairs whose differences
    are N(true_diff, sd^2): the probability that both one-sided t-tests reject, i.e. that the 1 - 2 alpha
    t-interval of the mean difference lies inside (-margin, margin). 0 for n < 2; for sd == 0, 1 when
    |true_diff| < margin, else 0."""
    _check_test(margin, alpha)
    if not math.isfinite(sd) or sd < 0:
        raise ValueError(f"sd must be a finite number >= 0, got {sd}")
    if not math.isfinite(true_diff):
        raise ValueError(f"true_diff must be finite, got {true_diff}")
    n = int(n)
    if n < 2:
        return 0.0
    if sd == 0:
        return 1.0 if abs(true_diff) < margin else 0.0
    df = n - 1
    t = float(stats.t.ppf(1 - alpha, df))
    root_n = math.sqrt(n)
    se = sd / root_n
    v_max = df * (margin * root_n / (t * sd)) ** 2     # (n-1) S^2 / sd^2 at the largest S that can show it
    u_max = float(special.gammainc(df / 2, v_max / 2))   # chi2.cdf(v_max, df)
    if u_max <= 0.0:
        return 0.0

    def shown(u: float) -> float:
        """P(equivalence | S = the sd at chi-square quantile u)."""
        half = t * sd * math.sqrt(2.0 * float(special.gammaincinv(df / 2, u)) / df) / root_n   # chi2.ppf(u, df)
        hi, lo = (margin - half - true_diff) / se, (-margin + half - true_diff) / se
        if lo >= hi:
            return 0.0
        # the difference of the upper tails when both bounds are above 0 keeps the digits Phi(hi) - Phi(lo) loses
        p = special.ndtr(-lo) - special.ndtr(-hi) if lo > 0 else special.ndtr(hi) - special.ndtr(lo)
        return max(float(p), 0.0)

    with warnings.catch_warnings():   # quad's roundoff warning at tiny alphas: the value is smooth in n (checked)
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        value, _ = integrate.quad(shown, 0.0, u_max, epsabs=1e-10, epsrel=1e-9, limit=200)
    return min(max(value, 0.0), 1.0)


def seeds_for_power(sd: float, margin: float, alpha: float, power: float, true_diff: float = 0.0,
                    max_n: int = DEFAULT_MAX_N) -> int | None:
    """The smallest n >= 3 whose exact TOST power (`tost_power`) reaches `power`; None when |true_diff| >=
    margin (equivalence cannot be shown at that difference: the power tends to at most 1/2 at the margin, 0
    beyond it) or when not even max_n pairs reach it. Doubling, then bisection (power grows with n)."""
    _check_test(margin, alpha)
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    if abs(true_diff) >= margin:
        return None
    if max_n < MIN_PAIRS:
        return None

    def enough(n: int) -> bool:
        return tost_power(n, sd, margin, alpha, true_diff) >= power

    if enough(MIN_PAIRS):
        return MIN_PAIRS
    low, high = MIN_PAIRS, MIN_PAIRS                  # invariant: not enough(low)
    while True:
        high = min(2 * high, max_n)
        if enough(high):
            break
        if high >= max_n:
            return None
        low = high
    while high - low > 1:                             # not enough(low), enough(high)
        mid = (low + high) // 2
        if enough(mid):
            high = mid
        else:
            low = mid
    return high


def sd_upper_bound(sd: float, n: int, confidence: float = DEFAULT_BOUND_CONFIDENCE) -> float:
    """The one-sided upper `confidence` bound of a standard deviation estimated as `sd` from n observations
    (df = n - 1): sd * sqrt((n - 1) / chi2.ppf(1 - confidence, n - 1)). Browne (1995, "On the use of a pilot
    sample for sample size determination", Stat. Med. 14:1933-1940) shows that planning with a pilot's sd
    itself gives the intended power less than half the time, and recommends such an upper bound (80% by
    default here) instead. NaN when n < 2."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n < 2:
        return math.nan
    df = n - 1
    return float(sd * math.sqrt(df / stats.chi2.ppf(1 - confidence, df)))


def _check_test(margin: float, alpha: float) -> None:
    if not (math.isfinite(margin) and margin > 0):
        raise ValueError(f"equivalence margin must be a positive number, got {margin}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5) for an equivalence test, got {alpha}")


# ---------------------------------------------------------------- a task's plan


@dataclass(frozen=True)
class SeedsPlan:
    """The seeds one task needs for its TOST to show LoRA - full within +-margin, from a pilot's pairs.

    `seeds[i]` is the number of seeds (pairs: one LoRA and one full run each) for power `powers[i]` at
    alpha_per_test = alpha / family_size, planning with `sd_bound` (use_bound) or the observed `sd`; None
    where no number can be given (`reason` says why, or more than max_n seeds would be needed)."""

    task: str
    n_pairs: int
    mean_diff: float               # observed mean of LoRA - full over the pairs, points (NaN without pairs)
    sd: float                      # observed sd of the differences (NaN with fewer than 2 pairs)
    sd_bound: float                # its one-sided upper `bound_confidence` bound (NaN with fewer than 2 pairs)
    bound_confidence: float
    use_bound: bool                # planned with sd_bound (True) or with sd itself
    margin: float
    alpha: float
    family_size: int
    alpha_per_test: float
    true_diff: float               # the difference the power is computed at
    powers: tuple[float, ...]
    seeds: tuple[int | None, ...]
    reason: str | None = None      # why no number can be given
    max_n: int = DEFAULT_MAX_N

    @property
    def planning_sd(self) -> float:
        return self.sd_bound if self.use_bound else self.sd

    def seeds_at(self, power: float) -> int | None:
        for p, n in zip(self.powers, self.seeds, strict=True):
            if math.isclose(p, power):
                return n
        raise KeyError(f"power {power} not planned (powers: {self.powers})")

    @property
    def most_seeds(self) -> int | None:
        """The largest number of seeds any planned power needs (None when none could be computed)."""
        known = [n for n in self.seeds if n is not None]
        return max(known) if known else None


def plan_seeds(task: str, differences: Sequence[float], margin: float = 1.0, alpha: float = 0.05,
               family_size: int = 1, powers: Sequence[float] = DEFAULT_POWERS, true_diff: float | str = 0.0,
               use_bound: bool = True, bound_confidence: float = DEFAULT_BOUND_CONFIDENCE,
               max_n: int = DEFAULT_MAX_N) -> SeedsPlan:
    """Seeds needed on `task` from its pilot's paired per-seed differences LoRA - full (points): the exact TOST
    power (`tost_power`) at alpha / family_size, at the true difference `true_diff` (a number, or "observed":
    the pilot's mean difference), with the pilot's sd or (use_bound, the default) its upper confidence bound.

    No number (`reason`): fewer than 3 pairs; no spread at all (the same difference on every seed: the report's
    TOST is undefined there, and a zero sd would promise 3 seeds); |true_diff| >= margin."""
    _check_test(margin, alpha)
    if int(family_size) != family_size or family_size < 1:
        raise ValueError(f"family_size must be a positive integer, got {family_size}")
    powers = tuple(float(p) for p in powers)
    if not powers or not all(0 < p < 1 for p in powers):
        raise ValueError(f"powers must be in (0, 1), got {powers}")
    d = np.asarray(list(differences), dtype=float)
    if not np.isfinite(d).all():
        raise ValueError("differences must be finite numbers")
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    sd = float(d.std(ddof=1)) if n >= 2 else math.nan
    bound = sd_upper_bound(sd, n, bound_confidence) if n >= 2 else math.nan
    if isinstance(true_diff, str):
        if true_diff != OBSERVED:
            raise ValueError(f"true_diff must be a number or {OBSERVED!r}, got {true_diff!r}")
        delta = mean
    else:
        delta = float(true_diff)
    base = dict(task=task, n_pairs=n, mean_diff=mean, sd=sd, sd_bound=bound, bound_confidence=bound_confidence,
                use_bound=use_bound, margin=float(margin), alpha=float(alpha), family_size=int(family_size),
                alpha_per_test=alpha / family_size, true_diff=delta, powers=powers, max_n=max_n)
    none = tuple(None for _ in powers)
    if n < MIN_PAIRS:
        return SeedsPlan(**base, seeds=none, reason=f"a pilot of {n} seed{'' if n == 1 else 's'} is too small to "
                         f"estimate the spread: run at least {MIN_PAIRS} seeds per method")
    if _no_spread(d):
        return SeedsPlan(**base, seeds=none, reason=f"LoRA - full is {_fmt(mean)} on every one of the {n} seed "
                         "pairs: no spread to plan with (the equivalence test is undefined there too)")
    if not math.isfinite(delta) or abs(delta) >= margin:
        return SeedsPlan(**base, seeds=none, reason=f"at a true difference of {_fmt(delta)} equivalence within "
                         f"{margin_text(margin)} cannot be shown")
    planning_sd = bound if use_bound else sd
    seeds = tuple(seeds_for_power(planning_sd, margin, alpha / family_size, p, delta, max_n) for p in powers)
    return SeedsPlan(**base, seeds=seeds)


def _no_spread(d: np.ndarray) -> bool:
    """As report.stats treats constant differences: a spread below 1e-9 of the values' scale is float noise."""
    scale = max(float(np.max(np.abs(d))), 1.0)
    return float(np.ptp(d)) <= 1e-9 * scale


# ---------------------------------------------------------------- one line


def describe(plan: SeedsPlan, hours_per_seed: float | None = None, unit: str = "GPU-hours") -> str:
    """One line: "to show ±1 point on sst2 at the observed spread (sd 2.52, bound 5.33) and a true difference
    of 0: 245 seeds at 80% power, about 4.02 GPU-hours" -- the seeds at the first power level (with "(alpha
    0.05/4)" for a family of 4); the hours (seeds x hours_per_seed: one LoRA and one full run per seed) only when
    hours_per_seed is given, in `unit`. "bound" only when the plan used it. When no number can be given: the
    task, ": " and the reason ("sst2: at a true difference of -1.91 equivalence within ±1 point cannot be
    shown")."""
    if plan.reason:
        return f"{plan.task}: {plan.reason}"
    spread = f"sd {_fmt(plan.sd)}, bound {_fmt(plan.sd_bound)}" if plan.use_bound else f"sd {_fmt(plan.sd)}"
    level = f"{_percent(plan.powers[0])} power"
    if plan.family_size > 1:
        level += f" (alpha {plan.alpha:g}/{plan.family_size})"
    n = plan.seeds[0]
    head = (f"to show {margin_text(plan.margin)} on {plan.task} at the observed spread ({spread}) and a true "
            f"difference of {_fmt(plan.true_diff)}: ")
    if n is None:
        return head + f"more than {plan.max_n:,} seeds at {level}"
    cost = f", about {format_hours(n * hours_per_seed)} {unit}" if hours_per_seed is not None else ""
    return head + f"{n:,} seeds at {level}{cost}"


def format_hours(hours: float) -> str:
    """3 significant digits, thousands whole: 12.3, 0.0163, 2,540 (below 1e-4 with an exponent, as plan show)."""
    if hours >= 1000:
        return f"{hours:,.0f}"
    return f"{hours:.3g}"


def _fmt(x: float) -> str:
    """2 decimals; 0 for anything that rounds to it: 2.52, -0.43, 5.60, 0."""
    if x is None or not math.isfinite(x):
        return "n/a"
    text = f"{x:.2f}"
    return "0" if float(text) == 0 else text


def margin_text(m: float) -> str:
    """As the report writes the margin (report.verdict): ±1 point, ±0.5 points."""
    return f"±{m:g} point" + ("" if m == 1 else "s")


def _percent(p: float) -> str:
    return f"{100 * p:g}%"


def pair_hours(runs: pd.DataFrame, arm: str, reference: str, column: str = "method") -> float | None:
    """Hours of one run of `arm` and one of `reference` (the rows whose `column` is each): the sum of their
    runs' mean measured wall times; None when either is unknown."""
    if "wall_s" not in runs.columns:
        return None
    means = [pd.to_numeric(runs.loc[runs[column] == a, "wall_s"], errors="coerce").mean() for a in (arm, reference)]
    return None if any(pd.isna(x) for x in means) else float(sum(means)) / 3600


def measured_hours_per_seed(headline: pd.DataFrame) -> tuple[dict[str, float | None], str]:
    """Hours of one LoRA + one full run per task: the mean measured wall time of each method's headline runs,
    and the unit naming the device the runs record."""
    out = {str(task): pair_hours(runs, "lora", "full") for task, runs in headline.groupby("task")}
    devices = []
    for col in ("cpu", "device"):
        if col in headline.columns:
            devices = sorted({str(d) for d in headline[col].dropna()})
            if devices:
                break
    return out, f"h measured on {' / '.join(devices) or 'an unrecorded device'}"
