"""LoRA versus full fine-tuning per task, on the headline setting (pure: DataFrames in, values out).

With named arms (tunebench.arms) every arm is compared with the reference arm the same way: one
TaskComparison per task and arm, whose `lora` side is the compared arm and whose `full` side is the reference
(in the study, LoRA and full fine-tuning); everything below holds per pair, and the families span every task
and arm (the learned test of an arm counted once however many pairs it is in).

Order of decisions, each made before and independently of the next:

1. Did each arm learn? (`tunebench.report.learned`) A one-sided test per arm against the best constant
   predictor on test, its own Holm family over every arm of every task. A task where an arm is not shown to
   have learned gets no LoRA-against-full verdict ("not learned", or "only LoRA / full learned"); where
   learning cannot be checked (no predictions on disk) the comparison is made and says so.
2. LoRA against full, two hypotheses per task in one Holm family over every task with both arms (fixed before
   any test; a task that step 1 stops keeps its place but makes no claim): the difference (two-sided: better /
   worse) and equivalence within the margin (TOST: matches). At most one of "the difference is 0" and "the
   difference is at or beyond the margin" is true, and Holm controls the chance of any false comparison claim,
   either kind, at alpha. Equivalence shown wins: the study's question is equivalence, so a significant
   difference inside the margin reads "matches" with the small difference stated. "matches" also needs both
   arms' learning checked: two arms that learned nothing match each other.

Seed level (the verdict): values are each run's test primary metric in points. Runs are paired by seed
and only seeds present in both arms enter the paired tests (a seed fixes data order, head init and
dropout, so pairing removes that shared noise). Without 3 common seeds but 3+ seeds per arm the arms are
compared unpaired (Welch). A seed-level verdict needs 3 seeds (a t-test on 2 has one degree of freedom) and
spread across them (`stats`: no spread, no t-test).

Example level (supporting evidence, and the decision where the seed level cannot decide) -- how seeds combine:
* one test per seed pair (LoRA seed s vs full seed s on the test examples both scored), each reported
  with its own p-value: these are not pooled, because pooling discordant counts (or questions) over
  seeds would count the same test example several times as if independent and overstate significance;
* plus one combined version on the seed average, whose mean difference is exactly LoRA - full of the mean
  over seeds: accuracy compares each example's correctness *averaged over seeds* (paired bootstrap; a majority
  vote would not be the seed mean: with two seeds it favours the steadier arm), MRPC each arm's F1 averaged over
  its seeds, SQuAD the per-question F1 *averaged over seeds*. The combined version uses the common seeds, or
  every seed of each arm when the arms share none.
The example-level test is on the verdict's metric: per seed pair, McNemar (exact binomial when b + c < 25)
where the primary metric is accuracy (SST-2, RTE); for MRPC, whose verdict is on F1 of the positive class, a
paired bootstrap over examples that recomputes each arm's F1 on every resample (F1 is not a mean over
examples: `stats.paired_bootstrap_f1`); for SQuAD v2 a paired bootstrap of per-question F1 (its F1 is the
mean of per-question F1s, so resampling per-question differences is the same thing).

Fewer than 3 seeds give no verdict: the example-level tests compare two trained models, not two methods, and are
shown as evidence only. With 3+ seeds but no spread (`TaskComparison.seed_level_reason`: the t-test is
undefined), seed variance is gone and the decision rests on the example-level evidence instead, labelled as
test-set noise only: the difference on `TaskComparison.fallback_test` (the combined test), and equivalence on
the exact discordance bound (`stats.discordance_equivalence`: from the test examples on which the arms'
predictions differ in any common seed; zero such examples is strong evidence at the example level).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from tunebench.data.tasks import TASKS
from tunebench.report.examples import aligned, common_examples, mean_correct, mean_f1
from tunebench.report.learned import (
    MIN_SEEDS_FOR_SEED_TEST,
    NOT_SHOWN,
    SHOWN,
    Baseline,
    LearnedTest,
    adjust_learned,
    learned_test,
    trivial_baseline,
)
from tunebench.report.stats import (
    DEFAULT_BOOTSTRAP_RESAMPLES,
    DEFAULT_BOOTSTRAP_SEED,
    DiscordanceEquivalence,
    EquivalenceResult,
    SeedComparison,
    Summary,
    compare_paired_seeds,
    compare_unpaired_seeds,
    discordance_equivalence,
    equivalence_test,
    holm,
    mcnemar_from_correct,
    paired_bootstrap,
    paired_bootstrap_f1,
    summarize,
)

__all__ = ["Baseline", "TaskComparison", "adjust_across_tasks", "compare_task", "trivial_baseline"]

Predictions = dict[str, pd.DataFrame]  # run_dir -> predictions/test.jsonl rows
ARMS = ("lora", "full")     # the two sides of a comparison: the compared arm and the reference
_NAMES = {"lora": "LoRA", "full": "full fine-tuning"}
_SHORT = {"lora": "LoRA", "full": "full"}


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
    baseline: Baseline | None = None   # best constant predictor on test (None: no predictions to score it from)
    margin: float = 1.0                # the equivalence margin, points
    p_adjusted: float | None = None    # decision_p Holm-adjusted in the family (adjust_across_tasks); None: not yet
    family_size: int = 1               # hypotheses in the Holm family (difference and equivalence, per task)
    learned: dict[str, LearnedTest] = field(default_factory=dict)   # arm -> its learned test (learned.py)
    learn_margin: float = 0.0          # points over the baseline an arm must beat (learned.py)
    example_equivalence: DiscordanceEquivalence | None = None   # the example-level equivalence test
    p_equivalence_adjusted: float | None = None   # equivalence_p Holm-adjusted in the same family
    alpha: float = 0.05
    # the arms compared (tunebench.arms): `arm` on the `lora` side, `reference` on the `full` side, and how the
    # text names them ({} for the study's two arms: LoRA and full fine-tuning)
    arm: str = "lora"
    reference: str = "full"
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def sides(self) -> dict[str, str]:
        """{"lora": the compared arm's name, "full": the reference's}."""
        return {"lora": self.arm, "full": self.reference}

    def name(self, side: str) -> str:
        """How the text names a side: "LoRA" / "full fine-tuning" for the study's arms, else the arm's label."""
        arm = self.sides[side]
        return self.labels.get(arm) or _NAMES.get(arm, arm)

    def short(self, side: str) -> str:
        """The short name, in "LoRA - full": "LoRA" / "full" for the study's arms, else the arm's label."""
        arm = self.sides[side]
        label = self.labels.get(arm)
        return "full" if label == "full fine-tuning" else label or _SHORT.get(arm, arm)

    @property
    def pair(self) -> str:
        """"sst2" for the study's two arms, "sst2/dora_r16" when arms are named: the comparison's key."""
        return self.task if (self.arm, self.reference) == ("lora", "full") else f"{self.task}/{self.arm}"

    @property
    def methods_present(self) -> list[str]:
        return [m for m, s in (("lora", self.lora), ("full", self.full)) if s.n > 0]

    @property
    def seed_level_reason(self) -> str | None:
        """Why the seed level gives no verdict although both arms have runs (too few seeds, or no spread across
        them), else None."""
        k = self.seeds
        if k is None:
            return None
        return self.too_few_seeds or k.undefined_reason

    @property
    def too_few_seeds(self) -> str | None:
        """Why the seeds are too few for any verdict (fewer than 3 per method in the test's design), else None."""
        k = self.seeds
        if k is None:
            return None
        if k.design == "paired":
            n = k.n_pairs
            if n < MIN_SEEDS_FOR_SEED_TEST:
                per = "per method" if k.n_pairs == len(self.lora_seeds) == len(self.full_seeds) else "in common"
                return (f"{_seeds_text(n)} {per}: a seed-level verdict needs at least "
                        f"{MIN_SEEDS_FOR_SEED_TEST} (a t-test on {n} seeds has {max(n - 1, 0)} degree"
                        f"{'' if n == 2 else 's'} of freedom)")
            return None
        n = min(k.n_lora, k.n_full)
        if n < MIN_SEEDS_FOR_SEED_TEST and k.n_lora == k.n_full == len(self.common_seeds):
            return (f"{_seeds_text(n)} per method: a seed-level verdict needs at least {MIN_SEEDS_FOR_SEED_TEST}")
        if n < MIN_SEEDS_FOR_SEED_TEST:
            return (f"{_seeds_text(k.n_lora)} of LoRA and {_seeds_text(k.n_full)} of full fine-tuning "
                    f"({len(self.common_seeds)} shared): a seed-level verdict needs at least "
                    f"{MIN_SEEDS_FOR_SEED_TEST} per method")
        return None

    @property
    def seed_test_undefined_reason(self) -> str | None:
        """Alias of seed_level_reason (the verdict table's footnote and verdicts.json use this name)."""
        return self.seed_level_reason

    @property
    def fallback_test(self) -> dict | None:
        """The example-level test the difference decision falls back to when the seed-level test is undefined for
        want of spread (3+ seeds): the combined test, else the only per-seed test. None otherwise (with fewer than
        3 seeds the example-level tests decide nothing: they compare two trained models, not two methods)."""
        if self.seeds is None or not self.seeds.undefined or self.too_few_seeds or not self.example_tests:
            return None
        combined = [t for t in self.example_tests if not str(t["comparison"]).startswith("seed ")]
        if combined:
            return combined[0]
        return self.example_tests[0] if len(self.example_tests) == 1 else None

    @property
    def decided_on(self) -> str | None:
        """"seeds" (the seed-level tests), "examples" (example-level tests) or None (no test: nothing claimed)."""
        k = self.seeds
        if k is None:
            return None
        if self.too_few_seeds:   # example-level tests compare two models, not two methods: evidence, not a verdict
            return None
        if k.undefined:   # 3+ seeds without spread: test-set noise is the only noise left to test against
            examples = self.fallback_test is not None and not math.isnan(self.fallback_test["p"])
            return "examples" if examples or self.example_equivalence is not None else None
        return "seeds" if not math.isnan(k.t_p) else None

    @property
    def decision_p(self) -> float:
        """The raw p-value the better / worse decision rests on (NaN when there is none)."""
        if self.decided_on == "seeds":
            return self.seeds.t_p
        if self.decided_on == "examples" and self.fallback_test is not None:
            return float(self.fallback_test["p"])
        return math.nan

    @property
    def equivalence_p(self) -> float:
        """The raw p-value the "matches" decision rests on: the seed-level TOST, or the example-level
        discordance test when the decision rests on examples (NaN when there is none)."""
        if self.decided_on == "seeds":
            return self.equivalence.p if self.equivalence is not None else math.nan
        if self.decided_on == "examples" and self.example_equivalence is not None:
            return self.example_equivalence.p
        return math.nan

    @property
    def decision_p_adjusted(self) -> float:
        """decision_p after the Holm adjustment (the raw p when not adjusted)."""
        return self.decision_p if self.p_adjusted is None else self.p_adjusted

    @property
    def equivalence_p_adjusted(self) -> float:
        return self.equivalence_p if self.p_equivalence_adjusted is None else self.p_equivalence_adjusted

    @property
    def significant(self) -> bool:
        return self.decision_p_adjusted < self.alpha      # False for NaN

    @property
    def equivalent(self) -> bool:
        return self.equivalence_p_adjusted < self.alpha

    @property
    def decision_diff(self) -> float:
        """LoRA - full (points) of the deciding test: its sign says which arm a significant result favours."""
        if self.decided_on == "examples" and self.fallback_test is not None:
            return float(self.fallback_test["mean_diff"])
        return self.seeds.mean_diff if self.seeds is not None else math.nan

    @property
    def unlearned_arms(self) -> list[str]:
        """Arms ("lora", "full") not shown to beat the best constant predictor (learned test not significant)."""
        return [m for m in ARMS if m in self.learned and self.learned[m].state == NOT_SHOWN]

    @property
    def learned_arms(self) -> list[str]:
        return [m for m in ARMS if m in self.learned and self.learned[m].state == SHOWN]

    @property
    def unknown_learning(self) -> list[str]:
        """Arms whose learning could not be checked (no predictions to score the baseline from, ...)."""
        return [m for m in self.methods_present if m not in self.learned or self.learned[m].state not in
                (SHOWN, NOT_SHOWN)]

    @property
    def compared(self) -> bool:
        """Whether LoRA is compared with full fine-tuning here: both arms ran and none is shown not to learn."""
        return self.seeds is not None and not self.unlearned_arms


def adjust_across_tasks(comparisons: list[TaskComparison]) -> list[TaskComparison]:
    """The two Holm families (module docstring): the learned tests of every arm of every task with both arms; and
    each such task's difference p and equivalence p together, a family fixed before any test (a task gated out
    by its learned test keeps its place in it but makes no claim). Copies; pure. Tests that do not exist (NaN)
    are not part of a family and stay NaN."""
    # one learned test per task and arm: the reference's is in every pair of its task, counted once
    family: dict[tuple[str, str], LearnedTest] = {}
    for c in comparisons:
        if c.seeds is not None:
            for side in ARMS:
                if side in c.learned:
                    family.setdefault((c.task, c.sides[side]), c.learned[side])
    adjusted = dict(zip(family, adjust_learned(list(family.values())), strict=True))
    # every pair holding a tested arm shows its one adjusted test
    learned = [{side: replace(adjusted[key], arm=t.arm) if (key := (c.task, c.sides[side])) in adjusted else t
                for side, t in c.learned.items()} for c in comparisons]
    staged = [replace(c, learned=lt) for c, lt in zip(comparisons, learned, strict=True)]
    # The comparison family is fixed before any test: every task with both arms, whatever its gate says (a family
    # chosen by the gate's outcome would be data-dependent); a gated task's tests count but make no claim.
    ps = [p for c in staged for p in (c.decision_p, c.equivalence_p)]
    adjusted = holm(ps)
    size = sum(not math.isnan(p) for p in ps)
    return [replace(c, p_adjusted=adjusted[2 * i], p_equivalence_adjusted=adjusted[2 * i + 1], family_size=size)
            for i, c in enumerate(staged)]


def compare_task(
    task: str,
    headline: pd.DataFrame,
    predictions: Predictions | None = None,
    n_not_ok: int = 0,
    n_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED,
    margin: float = 1.0,
    alpha: float = 0.05,
    learn_margin: float = 0.0,
    arm: str = "lora",
    reference: str = "full",
    labels: dict[str, str] | None = None,
) -> TaskComparison:
    """Compare the headline runs of one task (columns: method or arm, seed, test_primary, run_dir): `arm`
    against `reference` (the study: LoRA against full fine-tuning); `margin` is the equivalence margin in points
    of the primary metric; `learn_margin` the points over the best constant predictor an arm must beat to count
    as learned (learned.py); `labels`: how the text names arms other than the study's two."""
    runs = headline[headline["task"] == task]
    arms = runs["arm"] if "arm" in runs else runs["method"]
    lora, full = runs[arms == arm], runs[arms == reference]
    common = sorted(set(_seeds(lora)) & set(_seeds(full)))
    seeds = equivalence = None
    if len(lora) and len(full):
        seeds, equivalence = compare_seed_level(lora, full, common, margin, alpha)
    tests, example_equivalence = [], None
    if seeds is not None and predictions:
        tests = compare_example_level(task, lora, full, common, predictions, n_resamples, bootstrap_seed)
        example_equivalence = discordance_test(task, lora, full, common, predictions, margin, alpha)
    preds = predictions or {}
    baseline = trivial_baseline(task, [preds.get(r) for r in runs["run_dir"]])   # every arm's: one per task
    learned = {}
    for side, g in (("lora", lora), ("full", full)):
        if len(g):
            ordered = g.dropna(subset=["seed"]).sort_values("seed")
            learned[side] = learned_test(task, side, _values(g), baseline, [preds.get(r) for r in ordered["run_dir"]],
                                         learn_margin, alpha, n_resamples, bootstrap_seed)
    return TaskComparison(
        task=task, primary_metric=TASKS[task].primary_metric, lora=summarize(lora["test_primary"]),
        full=summarize(full["test_primary"]), lora_seeds=_seeds(lora), full_seeds=_seeds(full),
        common_seeds=common, seeds=seeds, example_tests=tests, n_not_ok=n_not_ok, equivalence=equivalence,
        lora_values=_values(lora), full_values=_values(full), margin=margin, baseline=baseline, learned=learned,
        learn_margin=learn_margin, example_equivalence=example_equivalence, alpha=alpha, arm=arm,
        reference=reference, labels=dict(labels or {}),
    )


def compare_seed_level(lora: pd.DataFrame, full: pd.DataFrame, common: list[int], margin: float = 1.0,
                       alpha: float = 0.05) -> tuple[SeedComparison, EquivalenceResult]:
    """The t-test and the equivalence test (TOST) on the same values and design: paired on the common seeds
    when there are 2+, else Welch when each arm has 2+, else estimate only. (Whether they decide -- 3 seeds
    or more -- is TaskComparison.seed_level_reason's call.)"""
    if len(common) >= 2 and len(common) >= min(len(lora), len(full), MIN_SEEDS_FOR_SEED_TEST):
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


def discordance_test(task: str, lora: pd.DataFrame, full: pd.DataFrame, common: list[int], predictions: Predictions,
                     margin: float, alpha: float) -> DiscordanceEquivalence | None:
    """The exact example-level equivalence test (stats.discordance_equivalence) on the test examples every common
    seed's runs scored: an example is discordant when the two arms' predictions (accuracy: correctness; SQuAD:
    per-question F1) differ in any common seed. None without common seeds or predictions."""
    if not common:
        return None
    pairs = [(predictions.get(_run_dir(lora, s)), predictions.get(_run_dir(full, s))) for s in common]
    frames = [f for pair in pairs for f in pair]
    if any(f is None for f in frames):
        return None
    spec = TASKS[task]
    key, value = ("id", "f1") if spec.is_qa else ("idx", "prediction")
    columns = {key, value} | (set() if spec.is_qa else {"label"})
    shared = common_examples(frames, columns, key)
    if not shared:
        return None
    rows = aligned(frames, key, shared)
    differ = np.zeros(len(shared), dtype=bool)
    for a, b in zip(rows[0::2], rows[1::2], strict=True):
        differ |= np.abs(a[value].to_numpy(float) - b[value].to_numpy(float)) > 1e-12
    scale = 1.0
    if not spec.is_qa and spec.primary_metric == "f1":
        positives = int((rows[0]["label"].to_numpy(int) == 1).sum())
        scale = 2.0 * len(shared) / positives if positives else math.inf
    return discordance_equivalence(int(differ.sum()), len(shared), margin, alpha, scale)


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
    """Seed-mean correctness (accuracy) / F1 (MRPC, SQuAD) of the common seeds, else of all seeds."""
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
             "mean accuracy over seeds" if row and row["metric"] == "accuracy" else "mean F1 over seeds")
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
        if len(lora_frames) == 1 and len(full_frames) == 1:
            return _mcnemar_correct(lora_frames, full_frames)
        return _bootstrap_accuracy(lora_frames, full_frames, n_resamples, seed)
    return None


def _bootstrap_accuracy(lora_frames: list[pd.DataFrame], full_frames: list[pd.DataFrame], n_resamples: int,
                        seed: int) -> dict | None:
    """Several runs per arm: a paired bootstrap over examples of each example's correctness averaged over the arm's
    runs, LoRA minus full. Its mean is exactly the difference of the seed-mean accuracies (a majority vote over
    seeds is not: it favours the steadier arm with two seeds and the less steady one with three)."""
    frames = lora_frames + full_frames
    shared = common_examples(frames, {"idx", "label", "prediction"}, "idx")
    if not shared:
        return None
    diffs = 100.0 * (mean_correct(lora_frames, shared) - mean_correct(full_frames, shared))
    r = paired_bootstrap(diffs, n_resamples=n_resamples, seed=seed)
    return {"test": "paired bootstrap", "metric": "accuracy", "n_examples": r.n, "b": None, "c": None,
            "odds_ratio": math.nan, "mean_diff": r.mean_diff, "ci_low": r.ci_low, "ci_high": r.ci_high,
            "statistic": math.nan, "p": r.p, "effect_size": r.effect_size}


def _bootstrap_class_f1(lora_frames: list[pd.DataFrame], full_frames: list[pd.DataFrame], n_resamples: int,
                        seed: int) -> dict | None:
    """Paired bootstrap of F1 (positive class) recomputed per resample; each arm: mean F1 over its runs."""
    frames = lora_frames + full_frames
    shared = common_examples(frames, {"idx", "label", "prediction"}, "idx")
    if not shared:
        return None
    rows = aligned(frames, "idx", shared)
    labels = rows[0]["label"].to_numpy(int)
    preds = [g["prediction"].to_numpy(int) for g in rows]
    r = paired_bootstrap_f1(labels, preds[:len(lora_frames)], preds[len(lora_frames):], n_resamples=n_resamples,
                            seed=seed)
    return {"test": "paired bootstrap of F1", "metric": "f1", "n_examples": r.n, "b": None, "c": None,
            "odds_ratio": math.nan, "mean_diff": 100.0 * r.mean_diff, "ci_low": 100.0 * r.ci_low,
            "ci_high": 100.0 * r.ci_high, "statistic": math.nan, "p": r.p, "effect_size": r.effect_size}


def _mcnemar_correct(lora_frames: list[pd.DataFrame], full_frames: list[pd.DataFrame]) -> dict | None:
    """Majority-correct per example over each list of runs (one run: its own correctness), then McNemar."""
    frames = lora_frames + full_frames
    shared = common_examples(frames, {"idx", "label", "prediction"}, "idx")
    if not shared:
        return None
    a, f = mean_correct(lora_frames, shared) > 0.5, mean_correct(full_frames, shared) > 0.5   # one run each
    r = mcnemar_from_correct(a, f)
    diff = 100.0 * (r.b - r.c) / r.n  # accuracy difference on these examples, points
    return {"test": "McNemar exact" if r.exact else "McNemar chi2 (cc)", "metric": "accuracy", "n_examples": r.n,
            "b": r.b, "c": r.c, "odds_ratio": r.odds_ratio, "mean_diff": diff, "ci_low": math.nan, "ci_high": math.nan,
            "statistic": r.statistic, "p": r.p, "effect_size": r.odds_ratio}


def _bootstrap_f1(lora_frames: list[pd.DataFrame], full_frames: list[pd.DataFrame], n_resamples: int,
                  seed: int) -> dict | None:
    frames = lora_frames + full_frames
    shared = common_examples(frames, {"id", "f1"}, "id")
    if not shared:
        return None
    diffs = 100.0 * (mean_f1(lora_frames, shared) - mean_f1(full_frames, shared))  # 0-1 -> points
    r = paired_bootstrap(diffs, n_resamples=n_resamples, seed=seed)
    return {"test": "paired bootstrap", "metric": "f1", "n_examples": r.n, "b": None, "c": None, "odds_ratio": math.nan,
            "mean_diff": r.mean_diff, "ci_low": r.ci_low, "ci_high": r.ci_high, "statistic": math.nan,
            "p": r.p, "effect_size": r.effect_size}


def _values(runs: pd.DataFrame) -> list[float]:
    """The test primary metric per seed, in the order of _seeds."""
    return [float(v) for v in runs.dropna(subset=["seed"]).sort_values("seed")["test_primary"]]


def _seeds(runs: pd.DataFrame) -> list[int]:
    return sorted(int(s) for s in runs["seed"].dropna())


def _run_dir(runs: pd.DataFrame, seed: int) -> str:
    return str(runs.loc[runs["seed"] == seed, "run_dir"].iloc[0])


def _seeds_text(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")
