"""Pure statistics for the LoRA-versus-full comparison: values in, values out (no files, no printing).

Two levels of evidence, kept apart on purpose:

* **Across seeds** (`summarize`, `compare_paired_seeds`, `compare_unpaired_seeds`, `equivalence_test`): each
  seed is one replicate of the whole training procedure, so these tests answer "does the *method* differ"
  (and "is the difference within a pre-declared margin"), including training noise. This is the level the
  verdict uses.
* **Across test examples** (`mcnemar`, `paired_bootstrap`, `paired_bootstrap_f1`): one LoRA model against
  one full model on the same test examples. These only cover test-set sampling noise, not seed-to-seed
  variation, so they are reported as supporting evidence next to the seed-level tests, never instead of
  them -- except where the seed-level test is undefined (below), and then the verdict says so.

No spread, no seed-level test: when LoRA - full is the same on every seed (likely on a small test set, whose
metric moves in steps of one example: 0.36 points on RTE's 277), the sample sd of the differences is zero, t
is mean / 0 and a t-interval has zero width. Floating point hides this -- 100 x 161/277 - 100 x 160/277 differs
from seed to seed in the 14th digit, which scipy turns into t = 1.5e14, p = 4e-29 -- so differences whose
spread is below `SPREAD_TOLERANCE` of the values' scale count as constant, and the t-test, its interval, the
effect size and the equivalence test are then reported as undefined (NaN) with `undefined_reason`, never as
an infinite t, a p of 0 or a zero-width interval.

Several tasks, one family: `holm` adjusts the per-task p-values of the superiority decisions (Holm 1979).

Conventions: every difference is ``a - b`` with ``a`` = LoRA and ``b`` = full fine-tuning; intervals are
two-sided at ``confidence`` (default 0.95).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

# Below this many discordant pairs the chi-square approximation to McNemar's test is poor; use the exact
# binomial test instead (the usual rule of thumb, e.g. Fagerland, Lydersen & Laake 2013, BMC Med Res Meth).
MCNEMAR_EXACT_BELOW = 25
DEFAULT_BOOTSTRAP_RESAMPLES = 10_000
DEFAULT_BOOTSTRAP_SEED = 0
# Values whose spread (max - min) is at most this fraction of their scale (max |value|, at least 1) are taken
# as constant: float rounding of metrics like 100 x 161/277 leaves spreads near 1e-14 points, while one test
# example on SQuAD v2's 11,873 questions moves a metric by 8e-3 points, far above it.
SPREAD_TOLERANCE = 1e-9
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
    # Why the t-test (t_stat, t_p, ci_low, ci_high, effect_size: NaN) is undefined although there are seeds
    # enough for it: no spread (see the module docstring). None when the test is defined or not attempted.
    undefined_reason: str | None = None

    @property
    def undefined(self) -> bool:
        return self.undefined_reason is not None

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
    """Paired bootstrap of LoRA - full over examples: the mean per-example difference (e.g. SQuAD per-question
    F1, `paired_bootstrap`) or the difference of a metric recomputed on each resample (`paired_bootstrap_f1`;
    effect_size is then NaN: F1 has no per-example differences)."""

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
    if len(d) < 2 or _constant(d):
        return math.nan
    return float(np.mean(d)) / float(np.std(d, ddof=1))


def compare_paired_seeds(lora: Sequence[float], full: Sequence[float], confidence: float = 0.95) -> SeedComparison:
    """Paired t-test and Wilcoxon signed-rank on values aligned by seed (lora[i] and full[i] share a seed).

    With 5 seeds the exact two-sided Wilcoxon p-value cannot go below 2/2^5 = 0.0625, so it can never
    reject at alpha = 0.05; it is reported as a distribution-free check, and the verdict uses the t-test.

    Constant differences (zero included; within SPREAD_TOLERANCE): the t-test is undefined -- t_stat, t_p,
    the interval and d_z are NaN and `undefined_reason` says why. Wilcoxon stays defined for constant
    non-zero differences (all ranks tied: the exact p is 2/2^n), not for all-zero ones (NaN: no non-zero
    difference to rank).
    """
    a, b = np.asarray(lora, dtype=float), np.asarray(full, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {a.shape} vs {b.shape}")
    d = a - b
    n = len(d)
    s = summarize(d, confidence)
    nan = math.nan
    if n < 2 or not np.isfinite(d).all():
        return SeedComparison("paired", n, n, n, s.mean, s.ci_low, s.ci_high, nan, nan, nan, nan, cohens_dz(d))
    if _constant(d, _scale(a, b)):
        w_stat = w_p = nan
        if not _constant(d, _scale(a, b), around_zero=True):
            w = stats.wilcoxon(np.full(n, s.mean))  # the rounding noise is no ranking information
            w_stat, w_p = float(w.statistic), float(w.pvalue)
        return SeedComparison("paired", n, n, n, s.mean, nan, nan, nan, nan, w_stat, w_p, nan,
                              undefined_reason=no_spread_reason(s.mean, n, "the paired t-test"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's precision-loss warning on near-constant data
        t = stats.ttest_rel(a, b)
        w = stats.wilcoxon(a, b)
    return SeedComparison(
        design="paired", n_lora=n, n_full=n, n_pairs=n, mean_diff=s.mean, ci_low=s.ci_low, ci_high=s.ci_high,
        t_stat=float(t.statistic), t_p=float(t.pvalue), rank_stat=float(w.statistic), rank_p=float(w.pvalue),
        effect_size=cohens_dz(d),
    )


def no_spread_reason(diff: float, n: int, test: str) -> str:
    """One line saying why a seed-level test is undefined: no spread across seeds."""
    if test.startswith("Welch"):
        return (f"each method scores the same on all of its seeds (LoRA - full = {diff:+.2f} points): with no "
                f"spread across seeds {test} and its interval are undefined")
    return (f"LoRA - full is {diff:+.2f} points on each of the {n} seeds: with no spread across seeds "
            f"{test} and its interval are undefined")


def compare_unpaired_seeds(lora: Sequence[float], full: Sequence[float], confidence: float = 0.95) -> SeedComparison:
    """Welch's t-test (+ Welch-Satterthwaite interval) and Mann-Whitney U, for arms with different seeds.

    Both arms constant (within SPREAD_TOLERANCE): Welch's standard error is 0 and the t-test is undefined --
    t_stat, t_p, the interval and d are NaN, `undefined_reason` says why; Mann-Whitney is still reported.
    """
    a, b = _finite(lora), _finite(full)
    na, nb = len(a), len(b)
    diff = float(np.mean(a) - np.mean(b)) if na and nb else math.nan
    nan = math.nan
    if na < 2 or nb < 2:
        return SeedComparison("unpaired", na, nb, 0, diff, nan, nan, nan, nan, nan, nan, nan)
    u = stats.mannwhitneyu(a, b, alternative="two-sided")
    if _constant(a, _scale(a, b)) and _constant(b, _scale(a, b)):
        return SeedComparison("unpaired", na, nb, 0, diff, nan, nan, nan, nan, float(u.statistic),
                              float(u.pvalue), nan, undefined_reason=no_spread_reason(diff, 0, "Welch's t-test"))
    _, se, dof = _welch(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t = stats.ttest_ind(a, b, equal_var=False)
    half = float(stats.t.ppf(1 - (1 - confidence) / 2, dof)) * se
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
    undefined_reason: str | None = None   # no spread across seeds: p and the interval are NaN (see module doc)

    @property
    def equivalent(self) -> bool:
        return not math.isnan(self.p) and self.p < self.alpha

    def as_dict(self) -> dict:
        return asdict(self) | {"equivalent": self.equivalent}


def equivalence_test(lora: Sequence[float], full: Sequence[float], margin: float, alpha: float = 0.05,
                     paired: bool = True) -> EquivalenceResult:
    """TOST of the seed-level difference LoRA - full against +-margin (same units as the values): paired
    t-tests on the differences when paired (values aligned by seed), else Welch t-tests.

    Undefined wherever the matching t-test is: a missing paired value or too few seeds (design "none"), and
    no spread -- constant differences (paired) or both arms constant (Welch) -- where p and the interval are
    NaN with `undefined_reason`: a zero-width interval inside the margin would claim equivalence from no
    measured variation at all.
    """
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
        if _constant(d, _scale(a, b)):
            return EquivalenceResult("paired", margin, alpha, math.nan, math.nan, math.nan,
                                     no_spread_reason(float(np.mean(d)), len(d), "the equivalence test (TOST)"))
        ci = summarize(d, 1 - 2 * alpha)
        p_low = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
        p_high = stats.ttest_1samp(d, margin, alternative="less").pvalue
        return EquivalenceResult("paired", margin, alpha, float(max(p_low, p_high)), ci.ci_low, ci.ci_high)
    a, b = _finite(lora), _finite(full)
    if len(a) < 2 or len(b) < 2:
        return none
    diff, se, dof = _welch(a, b)
    if _constant(a, _scale(a, b)) and _constant(b, _scale(a, b)):   # Welch's test is undefined: so is this one
        return EquivalenceResult("unpaired", margin, alpha, math.nan, math.nan, math.nan,
                                 no_spread_reason(diff, 0, "Welch's equivalence test (TOST)"))
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
    """Means of n_resamples resamples (with replacement) of values."""
    return bootstrap_statistic(len(values), n_resamples, seed, lambda idx: values[idx].mean(axis=1))


def bootstrap_statistic(n: int, n_resamples: int, seed: int,
                        statistic: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """`statistic` on n_resamples resamples (with replacement) of n examples: each call gets a (k, n) array of
    example indices, one resample a row, and returns k values. Drawn in chunks of _BOOTSTRAP_CHUNK resamples to
    bound memory, from numpy's PCG64 seeded with `seed`: a seed gives every statistic the same resamples."""
    rng = np.random.default_rng(seed)
    out = np.empty(n_resamples)
    for start in range(0, n_resamples, _BOOTSTRAP_CHUNK):
        stop = min(start + _BOOTSTRAP_CHUNK, n_resamples)
        out[start:stop] = statistic(rng.integers(0, n, size=(stop - start, n)))
    return out


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979, Scand. J. Statist. 6:65-70), in the input order.

    With the m defined p-values sorted, p_(1) <= ... <= p_(m), the adjusted p_(i) is
    max over j <= i of min(1, (m - j + 1) p_(j)); rejecting where the adjusted p < alpha controls the
    family-wise error rate at alpha under any dependence (four tasks at 0.05 each: up to 1 - 0.95^4 = 18.5%
    unadjusted). NaN entries (no test) are not part of the family and stay NaN. Equals statsmodels'
    `multipletests(p, method="holm")[1]` on the defined entries.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, math.nan)
    defined = np.flatnonzero(~np.isnan(p))
    m = len(defined)
    order = defined[np.argsort(p[defined], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p[i])))
        out[i] = running
    return [float(x) for x in out]


def binary_f1(labels: Sequence[int], predictions: Sequence[int], positive: int = 1) -> float:
    """F1 of the positive class as a fraction, 2 TP / (2 TP + FP + FN); 0 when there is no positive label or
    prediction at all (scikit-learn's f1_score with zero_division=0, as metrics/classification.py scores it)."""
    tp, fp, fn = _f1_indicators(labels, predictions, positive)
    return float(_f1_from_counts(tp.sum(), fp.sum(), fn.sum()))


def bootstrap_f1_differences(labels: Sequence[int], lora_predictions: Sequence[Sequence[int]],
                             full_predictions: Sequence[Sequence[int]], n_resamples: int, seed: int,
                             positive: int = 1) -> np.ndarray:
    """F1(LoRA) - F1(full) (fractions) on n_resamples resamples of the examples, with replacement, the same
    resample for every run (paired). Each arm's F1 on a resample is the mean over its runs (seeds) of each
    run's F1 recomputed on that resample. The resamples are `bootstrap_statistic`'s, as `bootstrap_means`'s:
    a seed gives the same resamples to both.
    """
    arms = [[_f1_indicators(labels, p, positive) for p in preds] for preds in (lora_predictions, full_predictions)]
    if not arms[0] or not arms[1]:
        raise ValueError("each arm needs at least one run's predictions")

    def difference(idx: np.ndarray) -> np.ndarray:
        means = [np.mean([_f1_from_counts(tp[idx].sum(1), fp[idx].sum(1), fn[idx].sum(1)) for tp, fp, fn in arm],
                         axis=0) for arm in arms]
        return means[0] - means[1]

    return bootstrap_statistic(len(labels), n_resamples, seed, difference)


def paired_bootstrap_f1(
    labels: Sequence[int],
    lora_predictions: Sequence[Sequence[int]],
    full_predictions: Sequence[Sequence[int]],
    n_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
    confidence: float = 0.95,
    positive: int = 1,
) -> BootstrapResult:
    """Paired bootstrap over examples of F1(LoRA) - F1(full) (fractions; F1 of the positive class).

    F1 is not a mean over examples, so the per-example differences that `paired_bootstrap` resamples do
    not exist: each resample of the examples (the same for both arms; Koehn 2004) recomputes each run's F1
    (`bootstrap_f1_differences`; with several seeds per arm, the mean of its runs' F1). Observed difference,
    percentile interval and the null-shifted two-sided p-value p = (1 + #{|D* - D| >= |D|}) / (B + 1) as in
    `paired_bootstrap` (Berg-Kirkpatrick et al. 2012); p = 1 when the observed difference is 0.
    effect_size is NaN. `lora_predictions` / `full_predictions`: one prediction sequence per run, each
    aligned with `labels`.
    """
    y = np.asarray(labels)
    for p in [*lora_predictions, *full_predictions]:
        if len(p) != len(y):
            raise ValueError(f"{len(p)} predictions for {len(y)} labels")
    if len(y) == 0:
        return BootstrapResult(0, math.nan, math.nan, math.nan, math.nan, math.nan, n_resamples, seed)
    observed = float(np.mean([binary_f1(y, p, positive) for p in lora_predictions])
                     - np.mean([binary_f1(y, p, positive) for p in full_predictions]))
    diffs = bootstrap_f1_differences(y, lora_predictions, full_predictions, n_resamples, seed, positive)
    alpha = 1 - confidence
    lo, hi = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    extreme = int(np.sum(np.abs(diffs - observed) >= abs(observed) - 1e-12))
    p = min(1.0, (1 + extreme) / (n_resamples + 1)) if observed != 0 else 1.0
    return BootstrapResult(len(y), observed, float(lo), float(hi), p, math.nan, n_resamples, seed)


def _f1_indicators(labels: Sequence[int], predictions: Sequence[int], positive: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-example 0/1 indicators of true positive, false positive and false negative."""
    y, p = np.asarray(labels) == positive, np.asarray(predictions) == positive
    if y.shape != p.shape:
        raise ValueError(f"{p.shape[0]} predictions for {y.shape[0]} labels")
    return (y & p).astype(np.int64), (~y & p).astype(np.int64), (y & ~p).astype(np.int64)


def _f1_from_counts(tp, fp, fn):
    """2 TP / (2 TP + FP + FN), 0 where the denominator is 0 (works on scalars and arrays)."""
    tp, denom = np.asarray(tp, dtype=float), np.asarray(2 * np.asarray(tp) + fp + fn, dtype=float)
    return np.divide(2 * tp, denom, out=np.zeros_like(denom), where=denom > 0)


def _constant(x: np.ndarray, scale: float | None = None, around_zero: bool = False) -> bool:
    """True when x has no spread (max - min) beyond SPREAD_TOLERANCE of `scale` (default: max |x|), at least
    1; with around_zero, when every value is itself that close to 0."""
    x = np.asarray(x, dtype=float)
    tol = SPREAD_TOLERANCE * max(1.0, scale if scale is not None else float(np.max(np.abs(x), initial=0.0)))
    if around_zero:
        return bool(np.all(np.abs(x) <= tol))
    return len(x) == 0 or float(np.ptp(x)) <= tol


def _scale(*arrays: np.ndarray) -> float:
    """The magnitude of the values a difference comes from (its rounding noise is relative to them)."""
    return max((float(np.max(np.abs(a), initial=0.0)) for a in arrays), default=0.0)


def _finite(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[~np.isnan(x)]


@dataclass(frozen=True)
class DiscordanceEquivalence:
    """Example-level equivalence from how many test examples the two arms disagree on (exact, conservative).

    When the arms' predictions differ on D of n test examples, |LoRA - full| <= scale x D / n: one differing
    example moves accuracy, or a mean of per-question F1, by at most 1 / n (scale 1), and F1 of the positive
    class by at most 2 / P with P positive examples (scale 2n / P). So a true difference at or beyond the margin M
    needs a true discordance rate pi >= pi0 = M / (100 scale), and H0: |difference| >= M is rejected with the exact
    binomial p = P(Binomial(n, pi0) <= D). Equivalently the one-sided Clopper-Pearson upper bound of pi, times
    100 scale (`bound`, points), lies inside the margin. Test-set noise only: seed variance is not in it.
    """

    n: int
    discordant: int
    scale: float
    margin: float
    alpha: float
    p: float
    bound: float           # upper (1 - alpha) bound of |LoRA - full|, points

    @property
    def equivalent(self) -> bool:
        return not math.isnan(self.p) and self.p < self.alpha

    def as_dict(self) -> dict:
        return asdict(self) | {"equivalent": self.equivalent}


def discordance_equivalence(discordant: int, n: int, margin: float, alpha: float = 0.05,
                            scale: float = 1.0) -> DiscordanceEquivalence:
    """The exact example-level equivalence test of `DiscordanceEquivalence` (margin in points)."""
    if n <= 0:
        return DiscordanceEquivalence(0, 0, scale, margin, alpha, math.nan, math.nan)
    d = int(discordant)
    pi0 = margin / (100.0 * scale)
    p = 1.0 if pi0 >= 1 else float(stats.binom.cdf(d, n, pi0))
    upper = 1.0 if d >= n else float(stats.beta.ppf(1 - alpha, d + 1, n - d))
    return DiscordanceEquivalence(n, d, scale, margin, alpha, p, 100.0 * scale * upper)
