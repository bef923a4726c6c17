"""LoRA versus full fine-tuning per task, on the headline setting (pure: DataFrames in, values out).

Seed level (the verdict): values are each run's test primary metric in points. Runs are paired by seed
and only seeds present in both arms enter the paired tests (a seed fixes data order, head init and
dropout, so pairing removes that shared noise). With fewer than 2 common seeds but 2+ seeds per arm the
arms are compared unpaired (Welch); with less than that no test is run and nothing is claimed. The same
design carries the equivalence test (TOST against a pre-declared margin in points, default 1).

Example level (supporting evidence) -- how seeds combine:
* one test per seed pair (LoRA seed s vs full seed s on the test examples both scored), each reported
  with its own p-value: these are not pooled, because pooling discordant counts (or questions) over
  seeds would count the same test example several times as if independent and overstate significance;
* plus one combined version: classification compares the per-example *majority vote over seeds* of each
  method (an example counts as correct for a method when more than half of its seeds got it right; a
  tie -- possible with an even seed count -- counts as wrong for both methods alike); SQuAD compares the
  per-question F1 *averaged over seeds* of each method. The combined version uses the common seeds, or
  every seed of each arm when the arms share none.
The example-level test is on the verdict's metric: McNemar (exact binomial when b + c < 25) only where
the primary metric is accuracy (SST-2, RTE); for MRPC, whose verdict is on F1 of the positive class, a
paired bootstrap over examples that recomputes each arm's F1 on every resample (F1 is not a mean over
examples: `stats.paired_bootstrap_f1`); for SQuAD v2 a paired bootstrap of per-question F1 (its F1 is the
mean of per-question F1s, so resampling per-question differences is the same thing).

When the seed-level test is undefined (no spread across seeds, `stats`), the verdict rests on the
example-level evidence instead (`TaskComparison.fallback_test`): the combined test, or the one per-seed
test when there is a single seed pair.

Trivial baselines (`trivial_baseline`), scored on the test split from the labels in predictions/test.jsonl:
the majority class (accuracy; SST-2, RTE), always the positive class (MRPC F1), always no answer (SQuAD v2
F1: the share of unanswerable questions, 50.07 on the official dev set). The train split's label
distribution is not recorded in a run folder (metrics.json, predictions/test.jsonl: docs/results.md), so
unless the caller passes train's majority class the majority is the test split's own: the best constant
prediction on test, so the "not learned" check against it is, if anything, strict. A task where either
arm's mean does not beat its baseline by more than the equivalence margin is "not learned" (verdict.py).

Several tasks, one family: `adjust_across_tasks` Holm-adjusts the p-value each task's better / worse
decision rests on (`TaskComparison.decision_p`) over all tasks that have one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from tunebench.data.tasks import TASKS
from tunebench.metrics.classification import majority_label
from tunebench.report.stats import (
    DEFAULT_BOOTSTRAP_RESAMPLES,
    DEFAULT_BOOTSTRAP_SEED,
    EquivalenceResult,
    SeedComparison,
    Summary,
    compare_paired_seeds,
    compare_unpaired_seeds,
    equivalence_test,
    holm,
    mcnemar_from_correct,
    paired_bootstrap,
    paired_bootstrap_f1,
    summarize,
)

Predictions = dict[str, pd.DataFrame]  # run_dir -> predictions/test.jsonl rows


@dataclass(frozen=True)
class Baseline:
    """A trivial predictor's score on the test split, in points of the task's primary metric.

    `majority_from_test`: the majority class was taken from the test split (train's was not given)."""

    name: str
    value: float
    n_examples: int
    majority_from_test: bool = False

    def as_dict(self) -> dict:
        """What the verdict row holds: {"name", "value"}."""
        return {"name": self.name, "value": self.value}


@dataclass
class TaskComparison:
    """Everything the verdict of one task needs."""

    task: str
    primary_metric: str
    lora: Summary                      # test primary metric over seeds, points
    full: Summary
    lora_seeds: list[int]
    full_seeds: list[int]
    common_seeds: list[int]
    seeds: SeedComparison | None       # None when an arm has no ok run
    example_tests: list[dict] = field(default_factory=list)
    n_not_ok: int = 0                  # failed / running / unreadable runs of this task
    equivalence: EquivalenceResult | None = None   # TOST on the same seeds as `seeds`
    lora_values: list[float] = field(default_factory=list)   # test primary metric per seed (points), seed order
    full_values: list[float] = field(default_factory=list)
    baseline: Baseline | None = None   # trivial predictor on test (None: no predictions to score it from)
    margin: float = 1.0                # the equivalence margin, points: also the "not learned" margin
    p_adjusted: float | None = None    # decision_p Holm-adjusted across tasks (adjust_across_tasks); None: not yet
    family_size: int = 1               # tasks in the Holm family

    @property
    def methods_present(self) -> list[str]:
        return [m for m, s in (("lora", self.lora), ("full", self.full)) if s.n > 0]

    @property
    def seed_test_undefined_reason(self) -> str | None:
        """Why the seed-level t-test is undefined although there are seeds for it (no spread), else None."""
        return self.seeds.undefined_reason if self.seeds is not None else None

    @property
    def fallback_test(self) -> dict | None:
        """The example-level test the decision falls back to when the seed-level test is undefined: the
        combined test, else the only per-seed test. None when the seed-level test is defined or none exists."""
        if self.seed_test_undefined_reason is None or not self.example_tests:
            return None
        combined = [t for t in self.example_tests if not str(t["comparison"]).startswith("seed ")]
        if combined:
            return combined[0]
        return self.example_tests[0] if len(self.example_tests) == 1 else None

    @property
    def decided_on(self) -> str | None:
        """"seeds" (the seed-level t-test), "examples" (fallback_test) or None (no test: nothing claimed)."""
        k = self.seeds
        if k is None:
            return None
        if k.undefined:
            return "examples" if self.fallback_test is not None and not math.isnan(self.fallback_test["p"]) else None
        return "seeds" if k.design != "none" and not math.isnan(k.t_p) else None

    @property
    def decision_p(self) -> float:
        """The raw p-value the better / worse decision rests on (NaN when there is none)."""
        if self.decided_on == "seeds":
            return self.seeds.t_p
        if self.decided_on == "examples":
            return float(self.fallback_test["p"])
        return math.nan

    @property
    def decision_p_adjusted(self) -> float:
        """decision_p after the Holm adjustment across tasks (the raw p when not adjusted: a family of one)."""
        return self.decision_p if self.p_adjusted is None else self.p_adjusted

    @property
    def decision_diff(self) -> float:
        """LoRA - full (points) of the deciding test: its sign says which arm a significant result favours."""
        if self.decided_on == "examples":
            return float(self.fallback_test["mean_diff"])
        return self.seeds.mean_diff if self.seeds is not None else math.nan

    @property
    def unlearned_arms(self) -> list[str]:
        """Arms ("lora", "full") whose mean test score does not beat the baseline by more than the margin."""
        if self.baseline is None:
            return []
        return [m for m, s in (("lora", self.lora), ("full", self.full))
                if s.n > 0 and not s.mean > self.baseline.value + self.margin]


def adjust_across_tasks(comparisons: list[TaskComparison]) -> list[TaskComparison]:
    """Copies of the comparisons with `p_adjusted` = Holm's adjustment of `decision_p` over every task that
    has one (`stats.holm`), and `family_size` = how many those are. Pure; tasks without a p keep NaN."""
    adjusted = holm([c.decision_p for c in comparisons])
    size = sum(not math.isnan(c.decision_p) for c in comparisons)
    return [replace(c, p_adjusted=p, family_size=size) for c, p in zip(comparisons, adjusted, strict=True)]


def trivial_baseline(task: str, frames: list[pd.DataFrame], train_majority: int | None = None) -> Baseline | None:
    """The task's trivial baseline on the test examples that `frames` (predictions/test.jsonl of its runs)
    hold, in points: majority class (accuracy), always the positive class 1 (F1, MRPC), always no answer
    (SQuAD v2 F1 = share of unanswerable questions; official script: an empty prediction scores F1 1 on an
    unanswerable question and 0 on an answerable one). `train_majority`: the train split's majority class
    when known; otherwise the test split's is used (`majority_from_test`). None without labels."""
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
        return Baseline(f"always the positive class '{spec.label_names[1]}'", value, n)
    if spec.primary_metric != "accuracy":
        return None
    counts = labels.value_counts()
    if train_majority is None:
        majority = majority_label(labels)
        name = f"majority class '{spec.label_names[majority]}' (of the test split)"
    else:
        majority = int(train_majority)
        name = f"train's majority class '{spec.label_names[majority]}'"
    value = 100.0 * int(counts.get(majority, 0)) / n
    return Baseline(name, value, n, majority_from_test=train_majority is None)


def compare_task(
    task: str,
    headline: pd.DataFrame,
    predictions: Predictions | None = None,
    n_not_ok: int = 0,
    n_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED,
    margin: float = 1.0,
    alpha: float = 0.05,
    train_majority: int | None = None,
) -> TaskComparison:
    """Compare the headline runs of one task (columns: method, seed, test_primary, run_dir); `margin` is
    the equivalence margin in points of the primary metric (and the "not learned" margin over the trivial
    baseline, scored from the runs' predictions; `train_majority`: see `trivial_baseline`)."""
    runs = headline[headline["task"] == task]
    lora, full = runs[runs["method"] == "lora"], runs[runs["method"] == "full"]
    common = sorted(set(_seeds(lora)) & set(_seeds(full)))
    seeds = equivalence = None
    if len(lora) and len(full):
        seeds, equivalence = compare_seed_level(lora, full, common, margin, alpha)
    tests = []
    if seeds is not None and predictions:
        tests = compare_example_level(task, lora, full, common, predictions, n_resamples, bootstrap_seed)
    return TaskComparison(
        task=task, primary_metric=TASKS[task].primary_metric, lora=summarize(lora["test_primary"]),
        full=summarize(full["test_primary"]), lora_seeds=_seeds(lora), full_seeds=_seeds(full),
        common_seeds=common, seeds=seeds, example_tests=tests, n_not_ok=n_not_ok, equivalence=equivalence,
        lora_values=_values(lora), full_values=_values(full), margin=margin,
        baseline=trivial_baseline(task, [predictions.get(r) for r in runs["run_dir"]] if predictions else [],
                                  train_majority),
    )


def compare_seed_level(lora: pd.DataFrame, full: pd.DataFrame, common: list[int], margin: float = 1.0,
                       alpha: float = 0.05) -> tuple[SeedComparison, EquivalenceResult]:
    """The t-test and the equivalence test (TOST) on the same values and design: paired on the common seeds
    when there are 2+, else Welch when each arm has 2+, else estimate only."""
    if len(common) >= 2:
        a = lora.set_index("seed").loc[common, "test_primary"].to_numpy(float)
        b = full.set_index("seed").loc[common, "test_primary"].to_numpy(float)
        return compare_paired_seeds(a, b), equivalence_test(a, b, margin, alpha, paired=True)
    a, b = lora["test_primary"].to_numpy(float), full["test_primary"].to_numpy(float)
    equivalence = equivalence_test(a, b, margin, alpha, paired=False)
    if len(lora) >= 2 and len(full) >= 2:
        return compare_unpaired_seeds(a, b), equivalence
    diff = float(lora["test_primary"].mean() - full["test_primary"].mean())
    nan = math.nan
    return (SeedComparison("none", len(lora), len(full), len(common), diff, nan, nan, nan, nan, nan, nan, nan),
            equivalence)


def compare_example_level(
    task: str, lora: pd.DataFrame, full: pd.DataFrame, common: list[int], predictions: Predictions,
    n_resamples: int, bootstrap_seed: int,
) -> list[dict]:
    """Per-seed-pair tests plus the combined-over-seeds test (see the module docstring)."""
    rows = []
    for seed in common:
        pair = [_run_dir(lora, seed), _run_dir(full, seed)]
        frames = [predictions.get(r) for r in pair]
        if any(f is None for f in frames):
            continue
        row = _example_test(task, [frames[0]], [frames[1]], n_resamples, bootstrap_seed)
        if row:
            rows.append({"task": task, "comparison": f"seed {seed}", "seeds": str(seed)} | row)
    if len(common) != 1:  # one common seed: the combined test would repeat the per-seed one
        rows += _combined_test(task, lora, full, common, predictions, n_resamples, bootstrap_seed)
    return rows


def _combined_test(
    task: str, lora: pd.DataFrame, full: pd.DataFrame, common: list[int], predictions: Predictions,
    n_resamples: int, bootstrap_seed: int,
) -> list[dict]:
    """Majority vote (classification) / seed-mean F1 (SQuAD) of the common seeds, else of all seeds."""
    if common:
        runs_a, runs_b = [_run_dir(lora, s) for s in common], [_run_dir(full, s) for s in common]
        seeds = ",".join(str(s) for s in common)
    else:
        runs_a, runs_b = list(lora["run_dir"]), list(full["run_dir"])
        seeds = f"lora {','.join(map(str, _seeds(lora)))} vs full {','.join(map(str, _seeds(full)))}"
    la, fa = [predictions.get(r) for r in runs_a], [predictions.get(r) for r in runs_b]
    if any(f is None for f in la + fa):
        return []
    row = _example_test(task, la, fa, n_resamples, bootstrap_seed)
    single = len(la) == 1 and len(fa) == 1
    label = ("unpaired seeds" if single else
             "majority vote over seeds" if row and row["test"].startswith("McNemar") else "mean F1 over seeds")
    return [{"task": task, "comparison": label, "seeds": seeds} | row] if row else []


def _example_test(task: str, lora_frames: list[pd.DataFrame], full_frames: list[pd.DataFrame], n_resamples: int,
                  seed: int) -> dict | None:
    """The example-level test on the task's primary metric (see the module docstring)."""
    spec = TASKS[task]
    if spec.is_qa:
        return _bootstrap_f1(lora_frames, full_frames, n_resamples, seed)
    if spec.primary_metric == "f1":
        return _bootstrap_class_f1(lora_frames, full_frames, n_resamples, seed)
    if spec.primary_metric == "accuracy":
        return _mcnemar_correct(lora_frames, full_frames)
    return None


def _bootstrap_class_f1(lora_frames: list[pd.DataFrame], full_frames: list[pd.DataFrame], n_resamples: int,
                        seed: int) -> dict | None:
    """Paired bootstrap of F1 (positive class) recomputed per resample; each arm: mean F1 over its runs."""
    frames = lora_frames + full_frames
    shared = _common_examples(frames, {"idx", "label", "prediction"}, "idx")
    if not shared:
        return None
    aligned = [f.drop_duplicates("idx").set_index("idx").loc[shared] for f in frames]
    labels = aligned[0]["label"].to_numpy(int)
    preds = [g["prediction"].to_numpy(int) for g in aligned]
    r = paired_bootstrap_f1(labels, preds[:len(lora_frames)], preds[len(lora_frames):], n_resamples=n_resamples,
                            seed=seed)
    return {"test": "paired bootstrap of F1", "metric": "f1", "n_examples": r.n, "b": None, "c": None,
            "odds_ratio": math.nan, "mean_diff": 100.0 * r.mean_diff, "ci_low": 100.0 * r.ci_low,
            "ci_high": 100.0 * r.ci_high, "statistic": math.nan, "p": r.p, "effect_size": r.effect_size}


def _mcnemar_correct(lora_frames: list[pd.DataFrame], full_frames: list[pd.DataFrame]) -> dict | None:
    """Majority-correct per example over each list of runs (one run: its own correctness), then McNemar."""
    frames = lora_frames + full_frames
    shared = _common_examples(frames, {"idx", "label", "prediction"}, "idx")
    if not shared:
        return None
    a, f = _majority_correct(lora_frames, shared), _majority_correct(full_frames, shared)
    r = mcnemar_from_correct(a, f)
    diff = 100.0 * (r.b - r.c) / r.n  # accuracy difference on these examples, points
    return {"test": "McNemar exact" if r.exact else "McNemar chi2 (cc)", "metric": "accuracy", "n_examples": r.n,
            "b": r.b, "c": r.c, "odds_ratio": r.odds_ratio, "mean_diff": diff, "ci_low": math.nan, "ci_high": math.nan,
            "statistic": r.statistic, "p": r.p, "effect_size": r.odds_ratio}


def _majority_correct(frames: list[pd.DataFrame], shared: list) -> np.ndarray:
    votes = np.zeros(len(shared))
    for f in frames:
        g = f.drop_duplicates("idx").set_index("idx").loc[shared]
        votes += (g["prediction"].to_numpy() == g["label"].to_numpy())
    return votes > len(frames) / 2  # strict majority; ties count as wrong for both methods


def _bootstrap_f1(lora_frames: list[pd.DataFrame], full_frames: list[pd.DataFrame], n_resamples: int,
                  seed: int) -> dict | None:
    frames = lora_frames + full_frames
    shared = _common_examples(frames, {"id", "f1"}, "id")
    if not shared:
        return None
    diffs = 100.0 * (_mean_f1(lora_frames, shared) - _mean_f1(full_frames, shared))  # 0-1 -> points
    r = paired_bootstrap(diffs, n_resamples=n_resamples, seed=seed)
    return {"test": "paired bootstrap", "metric": "f1", "n_examples": r.n, "b": None, "c": None, "odds_ratio": math.nan,
            "mean_diff": r.mean_diff, "ci_low": r.ci_low, "ci_high": r.ci_high, "statistic": math.nan,
            "p": r.p, "effect_size": r.effect_size}


def _mean_f1(frames: list[pd.DataFrame], shared: list) -> np.ndarray:
    cols = [f.drop_duplicates("id").set_index("id").loc[shared, "f1"].to_numpy(float) for f in frames]
    return np.mean(cols, axis=0)


def _common_examples(frames: list[pd.DataFrame], columns: set[str], key: str) -> list:
    """The examples (by `key`) every run's predictions hold, when all have `columns`; [] otherwise."""
    if not all(columns <= set(f.columns) for f in frames):
        return []
    return _shared_keys(frames, key)


def _shared_keys(frames: list[pd.DataFrame], key: str) -> list:
    """Examples scored by every run, in a fixed (sorted) order."""
    common = set(frames[0][key])
    for f in frames[1:]:
        common &= set(f[key])
    return sorted(common)


def _values(runs: pd.DataFrame) -> list[float]:
    """The test primary metric per seed, in the order of _seeds."""
    return [float(v) for v in runs.dropna(subset=["seed"]).sort_values("seed")["test_primary"]]


def _seeds(runs: pd.DataFrame) -> list[int]:
    return sorted(int(s) for s in runs["seed"].dropna())


def _run_dir(runs: pd.DataFrame, seed: int) -> str:
    return str(runs.loc[runs["seed"] == seed, "run_dir"].iloc[0])
