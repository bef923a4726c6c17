"""The one self-describing result per run: where it lives, its id, and how to read it.

Layout: <output_dir>/<experiment>/<run_id>/
  config.yaml            resolved config
  metrics.json           status (ok | failed | running), reason, final test metrics, best validation, timings,
                         memory, parameter counts, tokens, environment (schema: docs/results.md)
  log.jsonl              per-step train/eval records
  predictions/{validation,test}.jsonl   per-example predictions
  adapter/               PEFT adapter with the task head (LoRA); model/ for full fine-tuning when asked
  checkpoints/           Trainer checkpoints for --resume
  .lock                  held (flock) by the process running the run (docs/results.md)
  wandb/                 offline W&B run files (`wandb sync` uploads them)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tunebench.config import Config
from tunebench.errors import TunebenchError

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_RUNNING = "running"
METRICS_FILE = "metrics.json"
ANALYSIS_FILE = "analysis.json"   # written by `tunebench analyze`

# Keys that say where results go or how they are tracked, not what is computed: left out of the run id.
_ID_EXCLUDED = ("experiment", "output_dir", "tracking")


def config_digest(cfg: Config) -> str:
    tree = cfg.model_dump()
    for key in _ID_EXCLUDED:
        tree.pop(key, None)
    tree["data"].pop("dir", None)
    canon = json.dumps(tree, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(canon.encode()).hexdigest()[:8]


def run_id(cfg: Config) -> str:
    """Stable id derived from the resolved config: same config, same id, on every machine."""
    return f"{cfg.task}-{cfg.method}-s{cfg.training.seed}-{config_digest(cfg)}"


def run_dir(cfg: Config) -> Path:
    return Path(cfg.output_dir) / cfg.experiment / run_id(cfg)


def read_metrics(path: str | Path) -> dict | None:
    """metrics.json of a run folder, or None when absent or unreadable (a run that never wrote one)."""
    f = Path(path) / METRICS_FILE
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def find_runs(results_dir: str | Path) -> list[Path]:
    """Every run folder below results_dir (any depth), sorted."""
    return sorted(p.parent for p in Path(results_dir).rglob(METRICS_FILE))


def find_ok_runs(path: str | Path) -> tuple[list[Path], list[Path]]:
    """(ok run folders, other run folders) below path, or path itself when it is a run folder."""
    path = Path(path)
    if not path.exists():
        raise TunebenchError(f"{path}: no such folder")
    ok, other = [], []
    for run in find_runs(path):
        metrics = read_metrics(run) or {}
        (ok if metrics.get("status") == STATUS_OK else other).append(run)
    return ok, other


def load_analysis_pairs(results_dir: str | Path) -> list[tuple[dict, dict]]:
    """(metrics.json, analysis.json) of every ok run below results_dir that has been analysed."""
    pairs = []
    for run in find_ok_runs(results_dir)[0]:
        f = run / ANALYSIS_FILE
        if f.is_file():
            pairs.append((read_metrics(run), json.loads(f.read_text(encoding="utf-8"))))
    return pairs
