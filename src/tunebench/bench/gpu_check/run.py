"""The entry point, `run_gpu_check`: the arguments checked, the scratch folder made, the check run, the
scratch removed however it ends."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from tunebench.bench import child
from tunebench.bench.gpu_check.check import GpuCheck
from tunebench.bench.gpu_check.determinism import set_cublas_workspace
from tunebench.bench.gpu_check.log import _stderr
from tunebench.bench.gpu_check.modes import GPU, SMOKE, SYNTHETIC_TASK
from tunebench.bench.gpu_check.scratch import make_scratch, remove_scratch
from tunebench.config import Config
from tunebench.data.tasks import get_task
from tunebench.errors import TunebenchError


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """transformers' and torch's user warnings (deprecations, unused-kernel reasons) out of the console."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def run_gpu_check(out_dir: str | Path, base_cfg: Config, *, smoke: bool = False, model_dir: str | Path | None = None,
                  glue_dir: str | Path | None = None, overrides: dict[str, Any] | None = None,
                  budget_s: float | None = None, echo: Callable[[str], None] | None = _stderr) -> dict:
    """The whole check (the package docstring); returns the report also written to OUT_DIR/gpu_check.json.
    Without --smoke it needs a CUDA GPU (TunebenchError otherwise); --smoke runs on the CPU."""
    determinism = set_cublas_workspace()           # first: before anything initialises CUDA
    if not smoke and not torch.cuda.is_available():
        raise TunebenchError("--gpu-check needs a CUDA GPU and none is visible here (--smoke runs the same check on "
                             "the CPU in seconds)")
    for flag, path in (("--gpu-check-model", model_dir), ("--gpu-check-glue", glue_dir)):
        if path is not None and not Path(path).is_dir():
            raise TunebenchError(f"{flag} {path}: folder not found")
    if glue_dir is not None and not (Path(glue_dir) / get_task(SYNTHETIC_TASK).raw_dir).is_dir():
        raise TunebenchError(f"--gpu-check-glue {glue_dir}: no {get_task(SYNTHETIC_TASK).raw_dir}/ folder in it "
                             "(the GLUE layout: DIR/RTE/train.tsv)")
    if budget_s is not None and budget_s < 0:
        raise TunebenchError(f"--gpu-check-budget {budget_s}: must be at least 0 seconds")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = make_scratch()
    try:
        with child.ending_children_on_signals(), _quiet():
            check = GpuCheck(base_cfg, out, SMOKE if smoke else GPU, dict(overrides or {}),
                             Path(model_dir) if model_dir else None, Path(glue_dir) if glue_dir else None,
                             budget_s, "cpu" if smoke else "cuda", echo, work=work, determinism=determinism)
            return check.run()
    finally:
        remove_scratch(work)
