"""The batch search: where the memory estimate says to start and stop (`memory_batch_plan`), the memory a
measurement may use, and the largest per-device batch that fits, measured (`search_batch`)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from tunebench.config import Config
from tunebench.system import exception_line, free_memory, is_out_of_memory


def memory_batch_plan(cfg: Config, vocab: int, policy, usable_bytes: int, start: int, cap: int) -> dict:
    """The largest power-of-two multiple of `start` (the study's batch, known to fit) up to `cap` whose peak,
    as tunebench.plan.memory estimates it for this config, leaves RESERVE_BYTES of `usable_bytes` free: where
    the batch search starts and stops. `limited_by` says whether the cap or the estimate set it."""
    from tunebench.plan.cost import tiny_size
    from tunebench.plan.memory import RESERVE_BYTES, estimate_memory

    size = tiny_size(cfg.model, vocab)
    t = cfg.training
    peaks: dict[str, int] = {}
    largest, limited_by, b = start, "cap", start
    while b * 2 <= cap:
        b *= 2
        peak = estimate_memory(size, cfg.method, cfg.lora, cfg.task, policy, t.optim, b,
                               cfg.model.max_length).peak(t.gradient_checkpointing)
        peaks[str(b)] = peak
        if peak + RESERVE_BYTES > usable_bytes:
            limited_by = "memory estimate"
            break
        largest = b
    return {"usable_bytes": int(usable_bytes), "reserve_bytes": RESERVE_BYTES, "estimated_peak_bytes": peaks,
            "largest": largest, "limited_by": limited_by, "cap": cap}


def usable_memory_bytes(device: str) -> int:
    """What a measurement may use: the device's free memory plus what this process's allocator holds unused
    (CUDA), or the available RAM (CPU)."""
    if device == "cuda":
        free, _total = torch.cuda.mem_get_info()
        return int(free + torch.cuda.memory_reserved() - torch.cuda.memory_allocated())
    import psutil

    return int(psutil.virtual_memory().available)


def search_batch(measure: Callable[[int], dict], start: int, cap: int, fits: Callable[[int], bool],
                 device: str = "cpu", first: int | None = None, cap_reason: str = "cap") -> dict:
    """The largest per-device batch that fits, measured: from `first` (default 2 x start) doubling up to `cap`
    until a measurement runs out of memory or the next size would not fit the time budget (`fits(batch)`);
    when the first size tried runs out of memory, halving down to 2 x start instead. `start` is known to fit;
    `cap_reason` names what set the cap (`stopped_by` when the search reaches it). Each attempt is a fresh
    model and Trainer; memory is freed after an out-of-memory error before the next step."""
    tried: list[dict] = []
    largest, at_largest, stopped = start, None, cap_reason
    b = first or start * 2
    going_down = False
    while start < b <= cap:
        if not fits(b):
            tried.append({"batch": b, "status": "skipped", "reason": "time budget"})
            stopped = "time budget"
            break
        result, error = None, None
        try:
            result = measure(b)
        except Exception as e:  # noqa: BLE001 -- out of memory ends the search; anything else is recorded too
            error = (exception_line(e)[:300], is_out_of_memory(e))   # not the exception: its traceback holds the model
        free_memory()             # after the except block, so the failed run's tensors can go
        if error is not None:
            tried.append({"batch": b, "status": "oom" if error[1] else "error", "reason": error[0]})
            stopped = "out of memory" if error[1] else "error"
            if error[1] and not tried[:-1] and b // 2 > start:
                going_down = True     # the first size tried is too large: the largest that fits is below it
            if going_down and error[1] and b // 2 > start:
                b //= 2
                continue
            break
        tried.append({"status": "ok", **result})
        largest, at_largest = b, result
        if going_down:
            break
        b *= 2
    return {"start": start, "cap": cap, "first": first or start * 2, "largest_fitting": largest,
            "stopped_by": stopped, "tried": tried, "at_largest": at_largest}
