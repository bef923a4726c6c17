"""Throughput, memory and MFU benchmark -- the pure parts: token counting, a run's FLOPs over its batches,
result records and their summaries. No torch training, no clocks, no files (those are in
tunebench.bench.measure). The FLOPs convention itself and the peak-FLOPs table are tunebench.flops, which the
plan's estimates (tunebench.plan.cost) use too: one convention for planned and measured FLOPs, MFU and GPU-hours.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tunebench.config import steps_interval
from tunebench.flops import FlopParams, train_flops_per_token

BASELINES = ("original", "trainer", "raw", "tunebench")
BASELINE_HELP = {
    "original": "standard example recipe: every example padded to max_length, random batches (run_glue.py "
                "--pad_to_max_length)",
    "trainer": "best-practice Trainer: dynamic padding, length-grouped batches, Trainer defaults",
    "raw": "raw PyTorch loop (forward, backward, clip, optimizer step) over tunebench's pre-built batches",
    "tunebench": "tunebench's training path: build_training_args + build_trainer as train.py uses them",
}

# Throughput targets (tunebench / baseline, non-pad tokens per second), per task where they differ.
TARGETS: dict[str, dict[str, float]] = {
    "sst2": {"original": 10.0, "trainer": 1.0, "raw": 0.9},
    "rte": {"original": 3.0, "trainer": 1.0, "raw": 0.9},
}
DEFAULT_TARGETS = {"trainer": 1.0, "raw": 0.9}


# ---------------------------------------------------------------- tokens


@dataclass(frozen=True)
class BatchStats:
    """One training batch: samples, non-pad tokens (attention-mask ones) and padded length T."""

    samples: int
    non_pad_tokens: int
    padded_len: int

    @property
    def padded_tokens(self) -> int:
        return self.samples * self.padded_len


def count_non_pad_tokens(attention_mask: Any) -> int:
    """Number of ones in an attention mask (a tensor, an array or nested lists): padding excluded."""
    if hasattr(attention_mask, "sum") and not isinstance(attention_mask, list):
        return int(attention_mask.sum())
    return int(sum(sum(row) for row in attention_mask))


def batch_stats(attention_mask: Any) -> BatchStats:
    """Stats of a (B, T) attention mask."""
    if hasattr(attention_mask, "shape"):
        samples, padded_len = (int(n) for n in attention_mask.shape[:2])
    else:
        samples, padded_len = len(attention_mask), max((len(r) for r in attention_mask), default=0)
    return BatchStats(samples, count_non_pad_tokens(attention_mask), padded_len)


def mean_padded_len(batches: Sequence[BatchStats]) -> float:
    return statistics.fmean(b.padded_len for b in batches) if batches else 0.0


# ---------------------------------------------------------------- FLOPs


def train_flops(p: FlopParams, batches: Iterable[BatchStats]) -> float:
    """Model FLOPs of training steps over these batches: each non-pad token at its batch's padded length."""
    return sum(b.non_pad_tokens * train_flops_per_token(p, b.padded_len) for b in batches)


# ---------------------------------------------------------------- results


@dataclass
class RunTiming:
    """One measured training run of one baseline: the timed window covers every step of the run."""

    baseline: str
    method: str
    repeat: int
    elapsed_s: float
    batches: list[BatchStats]
    peak_mem_bytes: int = 0
    step_end_s: list[float] = field(default_factory=list)   # time of each step's end from the window start
    steps: int = 0                   # optimizer steps (batches / gradient accumulation); 0 = one per batch
    cpu_s: float = 0.0               # process CPU time over the window (all threads, sampler included)

    def __post_init__(self) -> None:
        self.steps = self.steps or len(self.batches)

    @property
    def non_pad_tokens(self) -> int:
        return sum(b.non_pad_tokens for b in self.batches)

    @property
    def samples(self) -> int:
        return sum(b.samples for b in self.batches)


@dataclass
class BaselineSummary:
    baseline: str
    method: str
    steps: int
    repeats: int
    samples: int
    non_pad_tokens: int
    padded_tokens: int
    mean_padded_len: float
    elapsed_s: float                 # median over repeats
    elapsed_all_s: list[float]
    tokens_per_s: float
    samples_per_s: float
    step_time_s: float
    peak_mem_bytes: int              # max over repeats
    model_flops: float
    flops_per_s: float
    mfu: float | None
    cpu_s: float = 0.0               # median process CPU time of the window
    tokens_per_cpu_s: float = 0.0    # steadier than wall time on a loaded host (other processes' load)

    @property
    def padding_share(self) -> float:
        return 1.0 - self.non_pad_tokens / self.padded_tokens if self.padded_tokens else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "padding_share": self.padding_share}


def summarize(runs: Sequence[RunTiming], params: FlopParams, peak: float | None) -> BaselineSummary:
    """Median-elapsed summary of the repeats of one baseline (all repeats process the same examples)."""
    if not runs:
        raise ValueError("no runs to summarize")
    elapsed = [r.elapsed_s for r in runs]
    median = statistics.median(elapsed)
    cpu = statistics.median(r.cpu_s for r in runs)
    first = runs[0]
    flops = train_flops(params, first.batches)
    flops_per_s = flops / median if median > 0 else 0.0
    return BaselineSummary(
        baseline=first.baseline, method=first.method, steps=first.steps, repeats=len(runs),
        samples=first.samples, non_pad_tokens=first.non_pad_tokens,
        padded_tokens=sum(b.padded_tokens for b in first.batches),
        mean_padded_len=mean_padded_len(first.batches), elapsed_s=median, elapsed_all_s=elapsed,
        tokens_per_s=first.non_pad_tokens / median if median > 0 else 0.0,
        samples_per_s=first.samples / median if median > 0 else 0.0,
        step_time_s=median / first.steps if first.steps else 0.0,
        peak_mem_bytes=max(r.peak_mem_bytes for r in runs),
        model_flops=flops, flops_per_s=flops_per_s,
        mfu=flops_per_s / peak if peak else None,
        cpu_s=cpu, tokens_per_cpu_s=first.non_pad_tokens / cpu if cpu > 0 else 0.0,
    )


def speedups(summaries: Sequence[BaselineSummary], subject: str = "tunebench",
             key: str = "tokens_per_s") -> dict[str, float]:
    """subject's tokens/s (or another rate, `key`) over each other baseline's (same method); empty when the
    subject was not run."""
    by_name = {s.baseline: getattr(s, key) for s in summaries}
    if subject not in by_name:
        return {}
    mine = by_name[subject]
    return {name: mine / rate for name, rate in by_name.items() if name != subject and rate > 0}


def paired_speedups(runs: dict[str, Sequence[RunTiming]], subject: str = "tunebench") -> dict[str, float]:
    """Median over rounds of (baseline time / subject time) within the same round: the rounds interleave the
    baselines, so a load change between rounds cancels out (every baseline processes the same tokens)."""
    if subject not in runs:
        return {}
    mine = {r.repeat: r.elapsed_s for r in runs[subject]}
    out = {}
    for name, rs in runs.items():
        ratios = [r.elapsed_s / mine[r.repeat] for r in rs if name != subject and mine.get(r.repeat)]
        if ratios:
            out[name] = statistics.median(ratios)
    return out


def check_targets(task: str, ratios: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Each available ratio against its throughput target: {baseline: {ratio, target, met}}."""
    targets = TARGETS.get(task, DEFAULT_TARGETS)
    return {name: {"ratio": ratios[name], "target": t, "met": ratios[name] >= t}
            for name, t in targets.items() if name in ratios}


def tokens_identical(summaries: Sequence[BaselineSummary]) -> bool:
    """Every baseline processed the same non-pad tokens and samples (the apples-to-apples condition)."""
    return len({(s.non_pad_tokens, s.samples) for s in summaries}) <= 1


def project_eval_share(*, train_examples: int, examples_per_step: int, epochs: float, eval_steps: float,
                       step_time_s: float, eval_s_per_example: float, validation_examples: int,
                       final_eval_examples: int, max_steps: int = -1) -> dict[str, float]:
    """Evaluation's share of a whole run: validation every eval_steps steps (and at the end), then the final
    evaluation (`final_eval_examples`: test and the train subset; the final validation metrics reuse the best
    checkpoint's in-loop pass, as in a run that is not resumed), from a measured step time and evaluation
    speed. eval_steps may be a fraction of the run (training.eval_steps); max_steps > 0 replaces the epochs,
    as in training."""
    steps = max_steps if max_steps > 0 else math.ceil(math.ceil(train_examples / examples_per_step) * epochs)
    interval = steps_interval(eval_steps, steps)
    evals = math.ceil(steps / interval)
    train_s = steps * step_time_s
    eval_s = eval_s_per_example * (evals * validation_examples + final_eval_examples)
    return {"steps": steps, "eval_interval": interval, "evaluations": evals, "train_s": train_s, "eval_s": eval_s,
            "eval_share": eval_s / (eval_s + train_s) if eval_s + train_s else 0.0}


def accuracy_verdict(scores: dict[str, list[float]], scale: float = 100.0, margin_points: float = 1.0,
                     alpha: float = 0.05) -> dict[str, Any]:
    """Test scores of `original` and `tunebench`, one per seed in the same seed order (`scale` turns them into
    points: 100 for fractions, 1 for SQuAD's 0-100 F1): means and sample standard deviations in points, the
    difference of the means and per seed, and the paired equivalence test (TOST) of the difference against
    +-margin_points (the target: equal test accuracy +-1 point). One seed: the test cannot be run."""
    from tunebench.report.stats import equivalence_test

    pts = {k: [scale * v for v in vals] for k, vals in scores.items()}
    mean = {k: statistics.fmean(v) for k, v in pts.items()}
    sd = {k: statistics.stdev(v) if len(v) > 1 else None for k, v in pts.items()}
    diff = mean["tunebench"] - mean["original"]
    tost = equivalence_test(pts["tunebench"], pts["original"], margin_points, alpha, paired=True)
    return {"mean_points": mean, "sd_points": sd, "difference_points": diff,
            "per_seed_difference_points": [t - o for o, t in zip(pts["original"], pts["tunebench"], strict=True)],
            "margin_points": margin_points, "mean_within_margin": abs(diff) <= margin_points,
            "equivalence": tost.as_dict()}


def format_bytes(n: int | float | None) -> str:
    if not n:
        return "n/a"
    return f"{n / 2**20:.1f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"
