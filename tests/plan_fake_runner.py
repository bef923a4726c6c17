"""Stand-ins for tunebench.runner.run_one in the plan tests: deterministic, checkpointing, optionally slow.

`fake_run` follows the runner's contract: config.yaml and metrics.json (running) first, a checkpoint after
every step (atomically), resume from it when asked, metrics.json ok/failed at the end (docs/results.md fields),
and the checkpoints removed once ok. Its results depend on the config only -- and on a state carried step to
step through the checkpoint, so a resume that loses or repeats a step gives different numbers.
Environment: FAKE_STEP_S (seconds per step, default 0), FAKE_STEPS (default 10).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time

from tunebench.config import Config, dump_yaml
from tunebench.data.tasks import get_task
from tunebench.io import atomic_write_json, atomic_write_text
from tunebench.results import METRICS_FILE, STATUS_FAILED, STATUS_OK, STATUS_RUNNING, run_dir, run_id

FAIL_AT_LR = 0.5  # learning rates at or above this "diverge": status failed


def _unit(*parts: object) -> float:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def fake_value(cfg: Config) -> float:
    """A validation value in [0.5, 0.9): depends on the setting much more than on the seed."""
    setting = _unit(cfg.task, cfg.method, cfg.learning_rate, cfg.lora.r)
    return round(0.5 + 0.35 * setting + 0.02 * _unit(cfg.training.seed), 6)


def fake_run(cfg: Config, *, resume: bool = True, preflight: bool = True) -> dict:
    rdir = run_dir(cfg)
    rdir.mkdir(parents=True, exist_ok=True)
    base = {"schema": 1, "run_id": run_id(cfg), "experiment": cfg.experiment, "task": cfg.task,
            "method": cfg.method, "seed": cfg.training.seed, "learning_rate": cfg.learning_rate,
            "lora_r": cfg.lora.r if cfg.method == "lora" else None,
            "primary_metric": get_task(cfg.task).primary_metric}
    atomic_write_text(rdir / "config.yaml", dump_yaml(cfg))
    atomic_write_json(rdir / METRICS_FILE, {**base, "status": STATUS_RUNNING, "reason": None})
    ckpt = rdir / "checkpoints" / "state.json"
    step, state = 0, int(_unit(run_id(cfg)) * 1e6)
    if resume and ckpt.exists():
        saved = json.loads(ckpt.read_text())
        step, state = saved["step"], saved["state"]
        with open(rdir / "resumed.txt", "a") as f:
            f.write(f"{step}\n")
    steps = int(os.environ.get("FAKE_STEPS", "10"))
    while step < steps:
        time.sleep(float(os.environ.get("FAKE_STEP_S", "0")))
        state = (state * 31 + step) % 1_000_003
        step += 1
        atomic_write_json(ckpt, {"step": step, "state": state})
    if cfg.learning_rate >= FAIL_AT_LR:
        record = {**base, "status": STATUS_FAILED, "reason": "nan loss at step 3"}
    else:
        value = fake_value(cfg)
        record = {**base, "status": STATUS_OK, "reason": None,
                  "validation": {"accuracy": value}, "test": {"accuracy": round(1.4 - value, 6)},
                  "best_validation": {"step": steps, "value": value, "time_s": 0.0},
                  "steps": steps, "state": state, "config": cfg.model_dump()}
    atomic_write_json(rdir / METRICS_FILE, record)
    if record["status"] == STATUS_OK:
        shutil.rmtree(rdir / "checkpoints", ignore_errors=True)
    return record


def raising_run(cfg: Config, *, resume: bool = True, preflight: bool = True) -> dict:
    """A runner bug: raises instead of recording a failure."""
    raise RuntimeError("boom\nsecond line")
