"""The torch.compile measurement in a child process: its command line, the parent's side (`run_child`) and the
child's (`child_main`)."""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from tunebench.bench import child
from tunebench.bench.gpu_check.training import measure_training
from tunebench.config import validate_config
from tunebench.data.tasks import get_task
from tunebench.io import atomic_write_json
from tunebench.system import exception_line, is_out_of_memory


def child_argv() -> list[str]:
    """The compile child: asks to die with its parent before anything heavy is imported, then child_main."""
    boot = ("import sys; from tunebench.bench.child import die_with_parent; die_with_parent(); "
            "from tunebench.bench.gpu_check.compile_child import child_main; sys.exit(child_main(sys.argv[1]))")
    return [sys.executable, "-c", boot]


def run_child(spec: dict, timeout_s: float, work: Path, name: str, argv: list[str] | None = None) -> dict:
    """measure_training in a fresh Python process (child_argv; `argv` replaces it in tests), killed with its whole
    process group (TorchInductor's compile workers too) when it outlasts `timeout_s`, and ended with the check
    (tunebench.bench.child)."""
    import tunebench

    src = str(Path(tunebench.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    return child.run_child(argv or child_argv(), spec, timeout_s, work, name, env)


def child_main(spec_path: str) -> int:
    """The child's side of run_child: one measure_training from the spec, the result written atomically."""
    t_start = time.perf_counter()
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    result: dict[str, Any]
    try:
        from tunebench.model import load_tokenizer
        from tunebench.train import check_switches

        cfg = validate_config(spec["config"], source="gpu-check child")
        device = spec["device"]
        check_switches(cfg, device)
        task = get_task(cfg.task)
        started = time.perf_counter()
        m = measure_training(cfg, task, load_tokenizer(cfg), device, batch=spec["batch"], warmup=spec["warmup"],
                             timed=spec["timed"], workdir=Path(spec["workdir"]), profile=spec.get("profile", False))
        result = {"status": "ok", "startup_s": started - t_start, **m}
    except Exception as e:  # noqa: BLE001 -- the parent records the reason
        traceback.print_exc()
        result = {"status": "oom" if is_out_of_memory(e) else "failed", "reason": exception_line(e)[:300]}
    atomic_write_json(spec["result"], result)
    return 0
