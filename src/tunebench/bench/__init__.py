"""`tunebench bench`: throughput, memory and MFU of tunebench's training against the standard recipes, and the
prepared GPU check. A client of the engine (tunebench.train, tunebench.evaluate): it imports their public
names only and sits above them, never the other way round.

- `tunebench.bench.formulas`: the pure parts (token counting, FLOPs over batches, summaries), re-exported
  here; importing this package loads no torch. The FLOPs convention and the peak-FLOPs table are
  `tunebench.flops` (shared with the plan's estimates); `PEAK_BF16_FLOPS` is re-exported here, as documented.
- `tunebench.bench.measure`: the timed baselines (`run_bench`).
- `tunebench.bench.gpu_check`: `tunebench bench --gpu-check OUT_DIR`.
"""

from tunebench.bench.formulas import (
    BASELINE_HELP,
    BASELINES,
    DEFAULT_TARGETS,
    TARGETS,
    BaselineSummary,
    BatchStats,
    RunTiming,
    accuracy_verdict,
    batch_stats,
    check_targets,
    count_non_pad_tokens,
    format_bytes,
    mean_padded_len,
    paired_speedups,
    project_eval_share,
    speedups,
    summarize,
    tokens_identical,
    train_flops,
)
from tunebench.flops import PEAK_BF16_FLOPS  # docs/bench.md names it bench.PEAK_BF16_FLOPS

__all__ = [
    "BASELINES", "BASELINE_HELP", "DEFAULT_TARGETS", "PEAK_BF16_FLOPS", "TARGETS", "BaselineSummary", "BatchStats",
    "RunTiming", "accuracy_verdict", "batch_stats", "check_targets", "count_non_pad_tokens", "format_bytes",
    "mean_padded_len", "paired_speedups", "project_eval_share", "speedups", "summarize", "tokens_identical",
    "train_flops",
]
