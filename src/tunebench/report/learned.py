"""Did each arm learn the task? A test per arm against the best constant predictor (pure: values in, values out).

A fine-tuned model that scores no better than a constant prediction has not learned the task, and comparing two
such models says nothing about the methods. So before LoRA is compared with full fine-tuning, each arm is
tested on its own against the best constant predictor on the test split (`trivial_baseline`):

* accuracy (SST-2, RTE): always the test split's majority class -- the best constant prediction there, so a
  model that always predicts the test majority never "learns";
* F1 of the positive class (MRPC): always the positive class (a constant negative prediction scores 0);
* SQuAD v2 F1: always no answer (the share of unanswerable questions; official script: an empty prediction
  scores F1 1 on an unanswerable question and 0 on an answerable one).

The test (`learned_test`), one-sided, H0: the arm's true score <= baseline + learn margin:
* seeds >= 3 with spread: a one-sided one-sample t-test of the arm's seed scores (training noise) and, where the
  predictions are on disk, also the example-level test below (test-set noise, which the seed scores share with
  the baseline scored on the same test set): both must reject (an intersection-union test, valid at alpha);
* fewer seeds, or the same score on every seed: a one-sided paired bootstrap over the test examples of the
  arm's score (averaged over its seeds) minus the constant predictor's, recomputed per resample (test-set
  noise only, said so);
* no predictions on disk: the baseline cannot be scored and learning is "unknown", never silently assumed.

`state`: "shown" (the Holm-adjusted p over every arm of every task is below alpha), "not shown" (it is not:
with a few seeds that is absence of evidence, not evidence of no learning) or "unknown" (no test possible).
The learned tests form their own Holm family, decided before and independently of LoRA against full.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats

from tunebench.data.tasks import TASKS
from tunebench.metrics.classification import majority_label
from tunebench.report.examples import aligned, common_examples, mean_correct, mean_f1
from tunebench.report.stats import (
    DEFAULT_BOOTSTRAP_RESAMPLES,
    DEFAULT_BOOTSTRAP_SEED,
    binary_f1,
    bootstrap_f1_differences,
    bootstrap_means,
    holm,
)

SHOWN, NOT_SHOWN, UNKNOWN = "shown", "not shown", "unknown"
MIN_SEEDS_FOR_SEED_TEST = 3   # a t-test on 2 seeds has 1 degree of freedom: no seed-level claim below 3


@dataclass(frozen=True)
class Baseline:
    """The best constant predictor's score on the test split, in points of the task's primary metric.

    `constant`: what it predicts (the class id; None for SQuAD v2's empty answer)."""

    name: str
    value: float
    n_examples: int
    constant: int | None = None

    def as_dict(self) -> dict:
        """What the verdict row holds: {"name", "value"}."""
        return {"name": self.name, "value": self.value}


def trivial_baseline(task: str, frames: list[pd.DataFrame | None]) -> Baseline | None:
    """The best constant predictor on the test examples that `frames` (predictions/test.jsonl of the task's runs)
    hold, in points (see the module docstring). None without labels."""
    spec = TASKS[task]
    key, field_ = ("id", "has_answer") if spec.is_qa else ("idx", "label")
    usable = [f[[key, field_]] for f in frames if f is not None and {key, field_} <= set(f.columns)]
    if not usable:
        return None
    truth = pd.concat(usable).drop_duplicates(key).dropna()
    n = len(truth)
    if n == 0:
        return None
    if spec.is_qa:
        unanswerable = int((~truth[field_].astype(bool)).sum())
        return Baseline("always no answer", 100.0 * unanswerable / n, n)
    labels = truth[field_].astype(int)
    if spec.primary_metric == "f1":
        positives = int((labels == 1).sum())
        value = 100.0 * 2 * positives / (positives + n)   # precision P/n, recall 1: F1 = 2P / (P + n)
        return Baseline(f"always the positive class '{spec.label_names[1]}'", value, n, constant=1)
    if spec.primary_metric != "accuracy":
        return None
    majority = majority_label(labels)
    value = 100.0 * int((labels == majority).sum()) / n
    return Baseline(f"always the test split's majority class '{spec.label_names[majority]}'", value, n,
                    constant=majority)


@dataclass(frozen=True)
class LearnedTest:
    """One arm against the best constant predictor: the one-sided test and its outcome."""

    arm: str                       # "lora" | "full"
    p: float                       # raw one-sided p (NaN: no test)
    test: str                      # e.g. "one-sided t-test over 3 seeds"; "" when no test
    estimate: float                # the arm's score minus the baseline, points (NaN when unknown)
    n: int                         # seeds (seed-level test) or test examples (example-level test)
    level: str | None              # "seeds" | "examples" | None
    reason: str | None = None      # why the test could not be run (state "unknown")
    p_adjusted: float | None = None   # Holm over every arm of every task (adjust_learned); None: not yet
    family_size: int = 1
    alpha: float = 0.05

    @property
    def p_used(self) -> float:
        return self.p if self.p_adjusted is None else self.p_adjusted

    @property
    def state(self) -> str:
        if math.isnan(self.p):
            return UNKNOWN
        return SHOWN if self.p_used < self.alpha else NOT_SHOWN

    def as_dict(self) -> dict:
        return {"state": self.state, "p": self.p, "p_adjusted": self.p_used, "test": self.test,
                "estimate": self.estimate, "n": self.n, "level": self.level, "reason": self.reason}


def learned_test(
    task: str, arm: str, values: Sequence[float], baseline: Baseline | None,
    frames: list[pd.DataFrame | None] | None = None, learn_margin: float = 0.0, alpha: float = 0.05,
    n_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES, bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> LearnedTest:
    """The arm's learned test (module docstring). `values`: its test primary metric per seed (points);
    `frames`: its runs' test predictions (one per seed, for the example-level test)."""
    x = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    nan = math.nan
    if baseline is None:
        return LearnedTest(arm, nan, "", nan, len(x), None, alpha=alpha,
                           reason="no test predictions on disk to score the best constant predictor")
    if len(x) == 0:
        return LearnedTest(arm, nan, "", nan, 0, None, "no completed run", alpha=alpha)
    threshold = baseline.value + learn_margin
    estimate = float(x.mean() - baseline.value)
    usable = [f for f in (frames or []) if f is not None]
    complete = bool(usable) and len(usable) == len(frames or [])
    example = (example_differences(task, usable, baseline, n_resamples, bootstrap_seed) if complete else None)
    p_examples = one_sided_bootstrap_p(example[0], example[1], learn_margin) if example is not None else nan
    what = "seeds" if len(x) > 1 else "seed"
    on_examples = (f"one-sided paired bootstrap over {example[2]} test examples ({len(x)} {what})"
                   if example is not None else "")
    if len(x) >= MIN_SEEDS_FOR_SEED_TEST and float(np.ptp(x)) > 1e-9 * max(1.0, float(np.abs(x).max())):
        p = float(stats.ttest_1samp(x, threshold, alternative="greater").pvalue)
        seeds = f"one-sided t-test over {len(x)} seeds"
        if example is None:
            return LearnedTest(arm, p, seeds, estimate, len(x), "seeds", alpha=alpha)
        # both must reject (intersection-union: valid at alpha): the seeds carry training noise, the test examples
        # test-set noise, which the seed scores share with the baseline scored on the same test set
        return LearnedTest(arm, max(p, p_examples), f"{seeds} and {on_examples}, both must reject", estimate,
                           len(x), "seeds", alpha=alpha)
    if example is None:
        why = ("fewer than 3 seeds" if len(x) < MIN_SEEDS_FOR_SEED_TEST else "no spread across seeds")
        missing = ("the test predictions lack the fields the example-level test needs" if complete else
                   "no test predictions for the example-level test")
        return LearnedTest(arm, nan, "", estimate, len(x), None, alpha=alpha, reason=f"{why} and {missing}")
    return LearnedTest(arm, p_examples, on_examples, estimate, example[2], "examples", alpha=alpha)


def one_sided_bootstrap_p(observed: float, resampled: np.ndarray, margin: float = 0.0) -> float:
    """p of H0: true value <= margin, from the bootstrap distribution shifted to the null boundary:
    (1 + #{D* - D >= D - margin}) / (B + 1) (the one-sided version of stats.paired_bootstrap's p)."""
    extreme = int(np.sum(resampled - observed >= observed - margin - 1e-12))
    return min(1.0, (1 + extreme) / (len(resampled) + 1))


def example_differences(task: str, frames: list[pd.DataFrame], baseline: Baseline, n_resamples: int,
                        seed: int) -> tuple[float, np.ndarray, int] | None:
    """(observed, resampled, n): the arm's score (mean over its runs) minus the constant predictor's, in points,
    on the test examples every run scored, and on n_resamples paired resamples of them. None without the
    needed fields."""
    spec = TASKS[task]
    if spec.is_qa:
        shared = common_examples(frames, {"id", "f1", "has_answer"}, "id")
        if not shared:
            return None
        constant = (~aligned(frames[:1], "id", shared)[0]["has_answer"].astype(bool)).to_numpy(float)
        d = 100.0 * (mean_f1(frames, shared) - constant)
        return float(d.mean()), bootstrap_means(d, n_resamples, seed), len(d)
    shared = common_examples(frames, {"idx", "label", "prediction"}, "idx")
    if not shared or baseline.constant is None:
        return None
    labels = aligned(frames[:1], "idx", shared)[0]["label"].to_numpy(int)
    if spec.primary_metric == "f1":
        preds = [g["prediction"].to_numpy(int) for g in aligned(frames, "idx", shared)]
        constant = [np.full(len(labels), baseline.constant)]
        observed = float(np.mean([binary_f1(labels, p) for p in preds]) - binary_f1(labels, constant[0]))
        resampled = bootstrap_f1_differences(labels, preds, constant, n_resamples, seed)
        return 100.0 * observed, 100.0 * resampled, len(labels)
    d = 100.0 * (mean_correct(frames, shared) - (labels == baseline.constant))
    return float(d.mean()), bootstrap_means(d, n_resamples, seed), len(d)


def adjust_learned(tests: list[LearnedTest]) -> list[LearnedTest]:
    """Holm over every defined learned test (every arm of every task): copies with p_adjusted and family_size."""
    adjusted = holm([t.p for t in tests])
    size = sum(not math.isnan(t.p) for t in tests)
    return [replace(t, p_adjusted=p, family_size=size) for t, p in zip(tests, adjusted, strict=True)]
