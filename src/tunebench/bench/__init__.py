"""`tunebench bench`: throughput, memory and MFU of tunebench's training against the standard recipes, and the
prepared GPU check. A client of the engine (tunebench.train, tunebench.evaluate): it imports their public
names only and sits above them, never the other way round.

- `tunebench.bench.formulas`: the pure parts (FLOPs convention, token counting, peak-FLOPs table, summaries),
  re-exported here; importing this package loads no torch.
- `tunebench.bench.measure`: the timed baselines (`run_bench`).
- `tunebench.bench.gpu_check`: `tunebench bench --gpu-check OUT_DIR`.
"""

from tunebench.bench.formulas import (
    BASELINE_HELP,
    BASELINES,
    DEFAULT_TARGETS,
    EMBEDDING_MARKERS,
    INACTIVE_MARKERS,
    PEAK_BF16_FLOPS,
    TARGETS,
    BaselineSummary,
    BatchStats,
    FlopParams,
    RunTiming,
    accuracy_verdict,
    attention_flops_per_token,
    batch_stats,
    check_targets,
    count_flop_params,
    count_non_pad_tokens,
    format_bytes,
    mean_padded_len,
    paired_speedups,
    peak_flops,
    project_eval_share,
    speedups,
    summarize,
    tokens_identical,
    train_flops,
    train_flops_per_token,
)

__all__ = [
    "BASELINES", "BASELINE_HELP", "DEFAULT_TARGETS", "EMBEDDING_MARKERS", "INACTIVE_MARKERS", "PEAK_BF16_FLOPS",
    "TARGETS", "BaselineSummary", "BatchStats", "FlopParams", "RunTiming", "accuracy_verdict",
    "attention_flops_per_token", "batch_stats", "check_targets", "count_flop_params", "count_non_pad_tokens",
    "format_bytes", "mean_padded_len", "paired_speedups", "peak_flops", "project_eval_share", "speedups",
    "summarize", "tokens_identical", "train_flops", "train_flops_per_token",
]
