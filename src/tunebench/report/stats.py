"""Pure statistics for the LoRA-versus-full comparison: values in, values out (no files, no printing).

Two levels of evidence, kept apart on purpose:

* **Across seeds** (`summarize`, `compare_paired_seeds`, `compare_unpaired_seeds`, `equivalence_test`): each
  seed is one replicate of the whole training procedure, so these tests answer "does the *method* differ"
  (and "is the difference within a pre-declared margin"), including training noise. This is the level the
  verdict uses.
* **Across test examples** (`mcnemar`, `paired_bootstrap`): one LoRA model against one full model on the
  same test examples. These only cover test-set sampling noise, not seed-to-seed variation, so they are
  reported as supporting evidence next to the seed-level tests, never instead of them.

Conventions: every difference is ``a - b`` with ``a`` = LoRA and ``b`` = full fine-tuning; intervals are
two-sided at ``confidence`` (default 0.95).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

# Below this many discordant pairs the chi-square approximation to McNemar's test is poor; use the exact
# binomial test instead (the usual rule of thumb, e.g. Fagerland, Lydersen & Laake 2013, BMC Med Res Meth).
MCNEMAR_EXACT_BELOW = 25
DEFAULT_BOOTSTRAP_RESAMPLES = 10_000
DEFAULT_BOOTSTRAP_SEED = 0
_BOOTSTRAP_CHUNK = 500  # resamples per batch: bounds memory at ~500 x n_examples indices


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation and t-interval of one set of values (e.g. a metric over seeds)."""

    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SeedComparison:
    """LoRA - full over seeds: the difference, its t-interval, two tests and an effect size."""

    design: str            # "paired" (same seeds in both arms) | "unpaired" (Welch) | "none"
    n_lora: int
    n_full: int
    n_pairs: int
    mean_diff: float
    ci_low: float
    ci_high: float
    t_stat: float
    t_p: float             # paired t-test (ttest_rel) or Welch's t-test (ttest_ind, equal_var=False)
    rank_stat: float
    rank_p: float          # Wilcoxon signed-rank (paired) or Mann-Whitney U (unpaired)
    effect_size: float     # Cohen's d_z = mean(d) / sd(d) (paired) or Cohen's d with pooled sd (unpaired)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test on one pair of classifiers. b = only LoRA right, c = only full right."""

    n: int
    b: int
    c: int
    statistic: float       # chi-square statistic, or min(b, c) for the exact version
    p: float
    odds_ratio: float      # b / c: > 1 favours LoRA (inf when c = 0, nan when b = c = 0)
    exact: bool

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BootstrapResult:
    """Paired bootstrap of the mean per-example difference (e.g. SQuAD per-question F1)."""

    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    p: float
    effect_size: float     # d_z of the per-example differences
    n_resamples: int
    seed: int

    def as_dict(self) -> dict:
        return asdict(self)


def t_critical(n: int, confidence: float = 0.95) -> float:
    """Two-sided Student-t quantile for n observations (n - 1 degrees of freedom)."""
    return float(stats.t.ppf(1 - (1 - confidence) / 2, n - 1))


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean, sd (ddof=1) and t-interval mean +- t(1-alpha/2, n-1) * sd / sqrt(n). NaNs are dropped.

    With one value the mean is reported and sd / interval are NaN: one seed says nothing about spread.
    """
    x = _finite(values)
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(np.mean(x))
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    sd = float(np.std(x, ddof=1))
    half = t_critical(n, confidence) * sd / math.sqrt(n)
    return Summary(n, mean, sd, mean - half, mean + half)


def cohens_dz(diffs: Sequence[float]) -> float:
    """Effect size of paired differences: mean(d) / sd(d) (Cohen 1988, d_z). NaN when sd is 0 or n < 2."""
    d = _finite(diffs)
    if len(d) < 2:
        return math.nan
    sd = float(np.std(d, ddof=1))
    return float(np.mean(d)) / sd if sd > 0 else math.nan


def compare_paired_seeds(lora: Sequence[float], full: Sequence[float], confidence: float = 0.95) -> SeedComparison:
    """Paired t-test and Wilcoxon signed-rank on values aligned by seed (lora[i] and full[i] share a seed).

    With 5 seeds the exact two-sided Wilcoxon p-value cannot go below 2/2^5 = 0.0625, so it can never
    reject at alpha = 0.05; it is reported as a distribution-free check, and the verdict uses the t-test.
    """
    a, b = np.asarray(lora, dtype=float), np.asarray(full, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {a.shape} vs {b.shape}")
    d = a - b
    n = len(d)
    s = summarize(d, confidence)
    t_stat = t_p = w_stat = w_p = math.nan
    if n >= 2:
        if np.all(d == 0):
            t_stat, t_p, w_stat, w_p = 0.0, 1.0, 0.0, 1.0  # identical arms: scipy would return NaN
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # constant differences: t = +-inf, p = 0
                t = stats.ttest_rel(a, b)
                w = stats.wilcoxon(a, b)
            t_stat, t_p, w_stat, w_p = float(t.statistic), float(t.pvalue), float(w.statistic), float(w.pvalue)
    return SeedComparison(
        design="paired", n_lora=n, n_full=n, n_pairs=n, mean_diff=s.mean, ci_low=s.ci_low, ci_high=s.ci_high,
        t_stat=t_stat, t_p=t_p, rank_stat=w_stat, rank_p=w_p, effect_size=cohens_dz(d),
    )


def compare_unpaired_seeds(lora: Sequence[float], full: Sequence[float], confidence: float = 0.95) -> SeedComparison:
    """Welch's t-test (+ Welch-Satterthwaite interval) and Mann-Whitney U, for arms with different seeds."""
    a, b = _finite(lora), _finite(full)
    na, nb = len(a), len(b)
    diff = float(np.mean(a) - np.mean(b)) if na and nb else math.nan
    if na < 2 or nb < 2:
        return SeedComparison("unpaired", na, nb, 0, diff, math.nan, math.nan, math.nan, math.nan,
                              math.nan, math.nan, math.nan)
    _, se, dof = _welch(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t = stats.ttest_ind(a, b, equal_var=False)
        u = stats.mannwhitneyu(a, b, alternative="two-sided")
    half = float(stats.t.ppf(1 - (1 - confidence) / 2, dof)) * se if se > 0 else 0.0
    pooled = math.sqrt(((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / (na + nb - 2))
    return SeedComparison(
        design="unpaired", n_lora=na, n_full=nb, n_pairs=0, mean_diff=diff, ci_low=diff - half,
        ci_high=diff + half, t_stat=float(t.statistic), t_p=float(t.pvalue), rank_stat=float(u.statistic),
        rank_p=float(u.pvalue), effect_size=diff / pooled if pooled > 0 else math.nan,
    )


@dataclass(frozen=True)
class EquivalenceResult:
    """Two one-sided tests (TOST; Schuirmann 1987) of -margin < LoRA - full < margin over seeds.

    Equivalence is shown when both one-sided nulls (difference <= -margin, difference >= margin) are
    rejected at alpha, i.e. when p = max of the two one-sided p-values is below alpha -- the same as the
    (1 - 2 alpha) interval of the difference lying inside (-margin, margin).
    """

    design: str            # "paired" | "unpaired" (Welch) | "none" (too few seeds: nothing can be shown)
    margin: float
    alpha: float
    p: float
    ci_low: float          # (1 - 2 alpha) interval, e.g. 90% at alpha = 0.05
    ci_high: float

    @property
    def equivalent(self) -> bool:
        return not math.isnan(self.p) and self.p < self.alpha

    def as_dict(self) -> dict:
        return asdict(self) | {"equivalent": self.equivalent}


def equivalence_test(lora: Sequence[float], full: Sequence[float], margin: float, alpha: float = 0.05,
                     paired: bool = True) -> EquivalenceResult:
    """TOST of the seed-level difference LoRA - full against +-margin (same units as the values): paired
    t-tests on the differences when paired (values aligned by seed), else Welch t-tests."""
    if margin <= 0:
        raise ValueError(f"equivalence margin must be positive, got {margin}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5) for an equivalence test (1 - 2 alpha interval), got {alpha}")
    none = EquivalenceResult("none", margin, alpha, math.nan, math.nan, math.nan)
    if paired:
        a, b = np.asarray(lora, dtype=float), np.asarray(full, dtype=float)
        if len(a) != len(b):
            raise ValueError(f"paired values differ in length: {len(a)} vs {len(b)}")
        d = a - b
        if len(d) < 2 or not np.isfinite(d).all():   # as the paired t-test: a missing value leaves it undefined
            return none
        ci = summarize(d, 1 - 2 * alpha)
        if ci.sd == 0:   # identical differences: the interval is a point
            p = 0.0 if abs(ci.mean) < margin else 1.0
            return EquivalenceResult("paired", margin, alpha, p, ci.mean, ci.mean)
        p_low = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
        p_high = stats.ttest_1samp(d, margin, alternative="less").pvalue
        return EquivalenceResult("paired", margin, alpha, float(max(p_low, p_high)), ci.ci_low, ci.ci_high)
    a, b = _finite(lora), _finite(full)
    if len(a) < 2 or len(b) < 2:
        return none
    diff, se, dof = _welch(a, b)
    if se == 0:   # both arms constant: Welch's test is undefined, and so is this one
        return none
    p_low = stats.ttest_ind(a + margin, b, equal_var=False, alternative="greater").pvalue
    p_high = stats.ttest_ind(a - margin, b, equal_var=False, alternative="less").pvalue
    half = float(stats.t.ppf(1 - alpha, dof)) * se
    return EquivalenceResult("unpaired", margin, alpha, float(max(p_low, p_high)), diff - half, diff + half)


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Difference of means, its Welch standard error and Welch-Satterthwaite degrees of freedom."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else math.nan
    return float(np.mean(a) - np.mean(b)), se, float(dof)


def mcnemar(b: int, c: int, n: int | None = None, exact: bool | None = None) -> McNemarResult:
    """McNemar's test from the discordant counts.

    b = examples only LoRA got right, c = examples only full got right. Exact version (two-sided
    binomial test of min(b, c) out of b + c at p = 0.5) when b + c < 25 unless told otherwise; otherwise
    the chi-square statistic with Edwards' continuity correction, (|b - c| - 1)^2 / (b + c), on 1 dof.
    """
    b, c = int(b), int(c)
    m = b + c
    use_exact = m < MCNEMAR_EXACT_BELOW if exact is None else exact
    odds = math.nan if m == 0 else (math.inf if c == 0 else b / c)
    if m == 0:
        return McNemarResult(n if n is not None else 0, b, c, 0.0, 1.0, odds, use_exact)
    if use_exact:
        stat, p = float(min(b, c)), float(stats.binomtest(min(b, c), m, 0.5).pvalue)
    else:
        stat = (abs(b - c) - 1) ** 2 / m
        p = float(stats.chi2.sf(stat, 1))
    return McNemarResult(n if n is not None else m, b, c, float(stat), p, odds, use_exact)


def mcnemar_from_correct(lora_correct: Sequence[bool], full_correct: Sequence[bool]) -> McNemarResult:
    """McNemar's test from per-example correctness of the two models on the same examples (same order)."""
    a, f = np.asarray(lora_correct, dtype=bool), np.asarray(full_correct, dtype=bool)
    if a.shape != f.shape:
        raise ValueError(f"correctness vectors differ in length: {a.shape} vs {f.shape}")
    return mcnemar(int(np.sum(a & ~f)), int(np.sum(~a & f)), n=len(a))


def paired_bootstrap(
    diffs: Sequence[float],
    n_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Paired bootstrap over examples of the mean of per-example differences (LoRA - full).

    Resamples examples with replacement (the same resample for both systems, which is what "paired"
    means, Koehn 2004); the interval is the percentile interval of the resampled means. The two-sided
    p-value uses the bootstrap distribution shifted to the null (Berg-Kirkpatrick et al. 2012, sec. 2):
    p = (1 + #{|m* - m| >= |m|}) / (B + 1), the +1 keeping p above zero with finitely many resamples.
    Deterministic for a given seed (numpy PCG64).
    """
    d = _finite(diffs)
    n = len(d)
    if n == 0:
        return BootstrapResult(0, math.nan, math.nan, math.nan, math.nan, math.nan, n_resamples, seed)
    observed = float(np.mean(d))
    means = bootstrap_means(d, n_resamples, seed)
    alpha = 1 - confidence
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    extreme = int(np.sum(np.abs(means - observed) >= abs(observed) - 1e-12))
    p = min(1.0, (1 + extreme) / (n_resamples + 1)) if observed != 0 else 1.0
    return BootstrapResult(n, observed, float(lo), float(hi), p, cohens_dz(d), n_resamples, seed)


def bootstrap_means(values: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Means of n_resamples resamples (with replacement) of values, drawn in chunks to bound memory."""
    rng = np.random.default_rng(seed)
    n = len(values)
    out = np.empty(n_resamples)
    for start in range(0, n_resamples, _BOOTSTRAP_CHUNK):
        stop = min(start + _BOOTSTRAP_CHUNK, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = values[idx].mean(axis=1)
    return out


def _finite(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[~np.isnan(x)]
