"""Deterministic algorithms: CUBLAS_WORKSPACE_CONFIG set before cuBLAS first runs, and torch's deterministic
settings switched on or off around a block."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch

CUBLAS_WORKSPACE = ":4096:8"                # CUBLAS_WORKSPACE_CONFIG for deterministic cuBLAS


def set_cublas_workspace() -> dict:
    """CUBLAS_WORKSPACE_CONFIG for deterministic cuBLAS (`:4096:8` unless one of the two valid values is set),
    and whether that happened before CUDA was initialised in this process (after, cuBLAS may already have
    read it: deterministic runs may then fail, and the record says why)."""
    before = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    initialized = torch.cuda.is_initialized()
    if before not in (":4096:8", ":16:8"):
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    rec: dict[str, Any] = {"cublas_workspace_config": os.environ["CUBLAS_WORKSPACE_CONFIG"], "was": before,
                           "set_before_cuda_init": before in (":4096:8", ":16:8") or not initialized}
    if not rec["set_before_cuda_init"]:
        rec["note"] = ("CUDA was initialised in this process before CUBLAS_WORKSPACE_CONFIG was set: runs with "
                       "training.deterministic=true may fail; set it before starting (benchmarks/gpu_check.sh does)")
    return rec


@contextlib.contextmanager
def deterministic_algorithms(on: bool) -> Iterator[None]:
    """torch's deterministic algorithms (and cuDNN's) on or off inside, as the Trainer's full_determinism sets
    them; the previous settings restored after."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(on)
    if on:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]
