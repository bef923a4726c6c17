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
McNemar (exact binomial when b + c < 25) for classification; paired bootstrap of per-question F1 for
SQuAD v2, whose F1 is not a right/wrong outcome.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tunebench.data.tasks import TASKS
from tunebench.report.stats import (
    DEFAULT_BOOTSTRAP_RESAMPLES,
    DEFAULT_BOOTSTRAP_SEED,
    EquivalenceResult,
    SeedComparison,
    Summary,
    compare_paired_seeds,
    compare_unpaired_seeds,
    equivalence_test,
    mcnemar_from_correct,
    paired_bootstrap,
    summarize,
)

Predictions = dict[str, pd.DataFrame]  # run_dir -> predictions/test.jsonl rows


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

    @property
    def methods_present(self) -> list[str]:
        return [m for m, s in (("lora", self.lora), ("full", self.full)) if s.n > 0]


def compare_task(
    task: str,
    headline: pd.DataFrame,
    predictions: Predictions | None = None,
    n_not_ok: int = 0,
    n_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED,
    margin: float = 1.0,
    alpha: float = 0.05,
) -> TaskComparison:
    """Compare the headline runs of one task (columns: method, seed, test_primary, run_dir); `margin` is
    the equivalence margin in points of the primary metric."""
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
        lora_values=_values(lora), full_values=_values(full),
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
    is_qa = TASKS[task].is_qa
    rows = []
    for seed in common:
        pair = [_run_dir(lora, seed), _run_dir(full, seed)]
        frames = [predictions.get(r) for r in pair]
        if any(f is None for f in frames):
            continue
        row = (_bootstrap_f1([frames[0]], [frames[1]], n_resamples, bootstrap_seed) if is_qa
               else _mcnemar_correct([frames[0]], [frames[1]]))
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
    is_qa = TASKS[task].is_qa
    row = _bootstrap_f1(la, fa, n_resamples, bootstrap_seed) if is_qa else _mcnemar_correct(la, fa)
    single = len(la) == 1 and len(fa) == 1
    label = "unpaired seeds" if single else ("mean F1 over seeds" if is_qa else "majority vote over seeds")
    return [{"task": task, "comparison": label, "seeds": seeds} | row] if row else []


def _mcnemar_correct(lora_frames: list[pd.DataFrame], full_frames: list[pd.DataFrame]) -> dict | None:
    """Majority-correct per example over each list of runs (one run: its own correctness), then McNemar."""
    frames = lora_frames + full_frames
    if not all({"idx", "label", "prediction"} <= set(f.columns) for f in frames):
        return None
    shared = _shared_keys(frames, "idx")
    if not shared:
        return None
    a, f = _majority_correct(lora_frames, shared), _majority_correct(full_frames, shared)
    r = mcnemar_from_correct(a, f)
    diff = 100.0 * (r.b - r.c) / r.n  # accuracy difference on these examples, points
    return {"test": "McNemar exact" if r.exact else "McNemar chi2 (cc)", "n_examples": r.n, "b": r.b, "c": r.c,
            "odds_ratio": r.odds_ratio, "mean_diff": diff, "ci_low": math.nan, "ci_high": math.nan,
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
    if not all({"id", "f1"} <= set(f.columns) for f in frames):
        return None
    shared = _shared_keys(frames, "id")
    if not shared:
        return None
    diffs = 100.0 * (_mean_f1(lora_frames, shared) - _mean_f1(full_frames, shared))  # 0-1 -> points
    r = paired_bootstrap(diffs, n_resamples=n_resamples, seed=seed)
    return {"test": "paired bootstrap", "n_examples": r.n, "b": None, "c": None, "odds_ratio": math.nan,
            "mean_diff": r.mean_diff, "ci_low": r.ci_low, "ci_high": r.ci_high, "statistic": math.nan,
            "p": r.p, "effect_size": r.effect_size}


def _mean_f1(frames: list[pd.DataFrame], shared: list) -> np.ndarray:
    cols = [f.drop_duplicates("id").set_index("id").loc[shared, "f1"].to_numpy(float) for f in frames]
    return np.mean(cols, axis=0)


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
