"""The one self-describing result per run: where it lives, its id, and how to read it.

Run identity lives here alone: `effective_config` (the keys a run's method actually reads) is what run ids
(`run_id`), a plan's checks on its grid (tunebench.plan.spec) and the report's grouping of seeds into
settings (`setting_id`) are all derived from.

Layout: <output_dir>/<experiment>/<run_id>/
  config.yaml            resolved config
  metrics.json           status (ok | failed | running | interrupted), reason, final test metrics, best
                         validation, timings, memory, parameter counts, tokens, environment (docs/results.md)
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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunebench.config import Config, pop_dotted
from tunebench.errors import TunebenchError

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_RUNNING = "running"
STATUS_INTERRUPTED = "interrupted"    # stopped by SIGINT or SIGTERM; resumed like a stale running
METRICS_FILE = "metrics.json"
ANALYSIS_FILE = "analysis.json"   # written by `tunebench analyze`
SELECTION_FILE = "selection.json"  # written by the plan engine beside a plan's final runs

# ---------------------------------------------------------------- run identity

# Keys that say where results go, how they are tracked or what a plan calls them, not what is computed.
NOT_COMPUTED = ("experiment", "arm", "reference", "output_dir", "tracking", "data.dir")
# Keys a method never reads: full fine-tuning has no adapters and its own learning rate
# (training.full_finetune_learning_rate); LoRA reads training.learning_rate.
IGNORED_BY_METHOD = {
    "full": ("lora", "training.learning_rate"),
    "lora": ("training.full_finetune_learning_rate",),
}


def ignored_keys(method: str | None = None) -> tuple[str, ...]:
    """Dotted keys (sections included) outside what a `method` run computes (None: outside any run's)."""
    return NOT_COMPUTED + IGNORED_BY_METHOD.get(method, ())


def is_ignored(key: str, method: str | None = None) -> bool:
    """Whether `key` (or the section holding it) is outside what a `method` run computes."""
    return any(key == k or key.startswith(k + ".") for k in ignored_keys(method))


def effective_config(cfg: Config | Mapping[str, Any], method: str | None = None) -> dict:
    """The config as a plain tree without the keys the run's method never reads: what the run computes.
    `cfg` is a Config or a resolved config as saved (metrics.json); `method` defaults to its own."""
    tree = cfg.model_dump() if isinstance(cfg, Config) else json.loads(json.dumps(cfg, default=str))
    for key in ignored_keys(str(method or tree.get("method"))):
        pop_dotted(tree, key)
    return tree


def digest(tree: Mapping[str, Any]) -> str:
    """8 hex digits of SHA-1 over the tree as canonical JSON: the same on every machine."""
    canon = json.dumps(tree, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(canon.encode()).hexdigest()[:8]


def config_digest(cfg: Config) -> str:
    return digest(effective_config(cfg))


def run_id(cfg: Config) -> str:
    """Stable id derived from the effective config: same computation, same id, on every machine."""
    return f"{cfg.task}-{cfg.method}-s{cfg.training.seed}-{config_digest(cfg)}"


def setting_id(cfg: Config | Mapping[str, Any], method: str | None = None) -> str:
    """The effective config's digest without the seed: runs with equal ids are seeds of one setting."""
    tree = effective_config(cfg, method)
    pop_dotted(tree, "training.seed")
    return digest(tree)


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
