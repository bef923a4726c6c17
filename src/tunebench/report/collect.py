"""Read run folders (docs/results.md) into tidy pandas tables. The only reading side of the report.

`collect_runs` gives one row per run folder -- ok, failed, running or unreadable -- so nothing is lost
silently; the analysis averages only rows with status "ok".
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from tunebench.arms import arm_label, run_arm
from tunebench.config import METHODS
from tunebench.data.tasks import TASKS
from tunebench.findings import findings_text
from tunebench.io import read_log_records
from tunebench.results import (
    METRICS_FILE,
    SELECTION_FILE,
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_OK,
    STATUS_RUNNING,
    digest,
    find_runs,
    read_metrics,
    setting_id,
)

STATUS_UNREADABLE = "unreadable"
KNOWN_STATUSES = (STATUS_OK, STATUS_FAILED, STATUS_RUNNING, STATUS_INTERRUPTED)
LOG_FILE = "log.jsonl"
TEST_PREDICTIONS = Path("predictions") / "test.jsonl"
# A folder with one of these but no metrics.json is a run that died before writing its result.
_RUN_MARKERS = ("config.yaml", LOG_FILE)

ID_COLUMNS = ["task", "method", "arm", "seed", "learning_rate", "lora_r", "experiment", "run_id", "status", "reason",
              "primary_metric", "setting_id", "run_dir"]
EFFICIENCY_COLUMNS = ["params_trainable", "params_total", "params_trainable_share", "peak_memory_bytes",
                      "memory_kind", "wall_s", "train_s", "eval_s", "eval_share", "train_tokens",
                      "tokens_per_s", "time_to_best_validation_s", "best_validation_step",
                      "best_validation_value", "steps", "epochs", "train_loss", "device", "cpu", "git_revision"]


# ---------------------------------------------------------------- discovery


def find_run_folders(results_dir: str | Path, exclude: str | Path | None = None) -> list[Path]:
    """Run folders below results_dir: those with metrics.json, plus leaf folders that hold a run's
    config.yaml or log.jsonl but no metrics.json (listed as unreadable). Folders under `exclude` are skipped.
    """
    root = Path(results_dir)
    skip = Path(exclude).resolve() if exclude else None
    found = [p for p in find_runs(root) if not _is_under(p, skip)]
    found_set = set(found)
    for marker in _RUN_MARKERS:
        for f in root.rglob(marker):
            d = f.parent
            if d in found_set or _is_under(d, skip) or (d / METRICS_FILE).exists():
                continue
            if any(_is_under(r, d) or _is_under(d, r) for r in found_set):
                continue  # inside a run (checkpoints/) or above one (an experiment folder)
            found_set.add(d)
    return sorted(found_set)


def _is_under(path: Path, parent: Path | None) -> bool:
    if parent is None:
        return False
    try:
        path.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- runs table


def collect_runs(results_dir: str | Path, exclude: str | Path | None = None) -> pd.DataFrame:
    """The tidy table: one row per run folder with config keys, metrics and efficiency figures."""
    root = Path(results_dir)
    rows = [read_run_row(d, root) for d in find_run_folders(root, exclude)]
    return order_columns(pd.DataFrame(rows, columns=None if rows else ID_COLUMNS))


def read_run_row(run_dir: Path, results_dir: Path) -> dict[str, Any]:
    """One row of the tidy table; problems become status "unreadable" with a reason, never an exception."""
    rel = run_dir.relative_to(results_dir).as_posix()
    metrics = read_metrics(run_dir)
    fallback = {"run_dir": rel, "run_id": run_dir.name, "experiment": _guess_experiment(run_dir, results_dir),
                "status": STATUS_UNREADABLE}
    if metrics is None:
        why = "metrics.json is not valid JSON" if (run_dir / METRICS_FILE).exists() else "no metrics.json"
        return fallback | {"reason": why}
    if not isinstance(metrics, dict):
        return fallback | {"reason": "metrics.json is not a JSON object"}
    row = flatten_metrics(metrics) | {"run_dir": rel}
    row["experiment"] = row.get("experiment") or fallback["experiment"]
    row["run_id"] = row.get("run_id") or fallback["run_id"]
    problem = check_row(row)
    if problem:
        row["status"], row["reason"] = STATUS_UNREADABLE, problem
    return row


def _guess_experiment(run_dir: Path, results_dir: Path) -> str | None:
    return run_dir.parent.name if run_dir.parent != results_dir else None


def check_row(row: dict[str, Any]) -> str | None:
    """Why an ok-looking row cannot be used, or None. Failed/running rows keep their own reason."""
    if row.get("task") not in TASKS or row.get("method") not in METHODS:
        return f"metrics.json has no known task/method (task={row.get('task')!r}, method={row.get('method')!r})"
    if row.get("status") not in KNOWN_STATUSES:
        return f"unknown status {row.get('status')!r}"
    if row["status"] == STATUS_OK:
        key = f"test_{row['primary_metric']}"
        if not _is_number(row.get(key)):
            return f"status ok but metrics.json has no test.{row['primary_metric']}"
    return None


def flatten_metrics(m: dict[str, Any]) -> dict[str, Any]:
    """metrics.json -> flat row (test_*, validation_*, train_eval_* and efficiency columns)."""
    task = m.get("task")
    spec = TASKS.get(task) if isinstance(task, str) else None
    row: dict[str, Any] = {k: m.get(k) for k in ("task", "method", "seed", "learning_rate", "lora_r",
                                                  "experiment", "run_id", "status", "reason")}
    row["arm"] = run_arm(m) if m.get("method") is not None else None   # the plan's arm name, else the method
    cfg = m.get("config") if isinstance(m.get("config"), dict) else {}
    named = cfg.get("arm") and m.get("method") in METHODS
    row["arm_label"] = arm_label(str(m["method"]), cfg.get("lora") if isinstance(cfg.get("lora"), dict) else None) \
        if named else None                                                # "DoRA r=16": how the report names it
    row["reference"] = cfg.get("reference") if named else None           # the plan's reference arm
    row["primary_metric"] = m.get("primary_metric") or (spec.primary_metric if spec else None)
    row["setting_id"] = compute_setting_id(m)
    for split in ("test", "validation", "train_eval"):
        for name, value in (m.get(split) or {}).items():
            if _is_number(value):
                row[f"{split}_{name}"] = float(value)
    row.update(_efficiency_fields(m))
    label = (m.get("data") or {}).get("train_majority_label")
    row["train_majority_label"] = int(label) if _is_number(label) else None
    row["findings"] = findings_text(m.get("findings"))     # an ok run that collapsed (tunebench.findings)
    qa = m.get("qa")
    threshold = qa.get("null_threshold") if isinstance(qa, dict) else None
    row["qa_null_threshold"] = float(threshold) if _is_number(threshold) else None  # SQuAD v2, chosen on validation
    return row


def _efficiency_fields(m: dict[str, Any]) -> dict[str, Any]:
    params, timing = m.get("params") or {}, m.get("timing") or {}
    memory, tokens = m.get("memory") or {}, m.get("tokens") or {}
    best, env = m.get("best_validation") or {}, m.get("env") or {}
    return {
        "params_trainable": params.get("trainable"), "params_total": params.get("total"),
        "params_trainable_share": params.get("trainable_share"),
        "peak_memory_bytes": memory.get("peak_bytes"), "memory_kind": memory.get("kind"),
        "wall_s": timing.get("wall_s"), "train_s": timing.get("train_s"), "eval_s": timing.get("eval_s"),
        "eval_share": timing.get("eval_share"),
        "train_tokens": tokens.get("train_non_pad"), "tokens_per_s": tokens.get("tokens_per_s"),
        "time_to_best_validation_s": best.get("time_s"), "best_validation_step": best.get("step"),
        "best_validation_value": best.get("value"),
        "steps": m.get("steps"), "epochs": m.get("epochs"), "train_loss": m.get("train_loss"),
        "device": env.get("device"), "cpu": env.get("cpu"), "git_revision": env.get("git_revision"),
    }


def compute_setting_id(m: dict[str, Any]) -> str:
    """Runs with equal ids are seeds of one setting: results.setting_id of the resolved config when present
    (its effective config without the seed); otherwise a digest of (method, learning_rate, lora_r). Read
    from the saved config, not the run id, so results written under an earlier run-id scheme group alike.
    """
    cfg = m.get("config")
    if isinstance(cfg, dict) and cfg:
        return setting_id(cfg, str(m.get("method")))
    return digest({"method": m.get("method"), "learning_rate": m.get("learning_rate"), "lora_r": m.get("lora_r")})


def order_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Fixed column order: ids, then metrics by split (sorted), then efficiency, then anything else."""
    for col in ID_COLUMNS:
        if col not in df.columns:
            df[col] = None
    metric_cols = sorted(c for c in df.columns if c.startswith(("test_", "validation_", "train_eval_")))
    eff = [c for c in EFFICIENCY_COLUMNS if c in df.columns]
    rest = [c for c in df.columns if c not in ID_COLUMNS + metric_cols + eff and c != "config"]
    df = df[ID_COLUMNS + metric_cols + eff + rest].copy()
    for col in ("seed", "lora_r", "params_trainable", "params_total", "steps", "best_validation_step",
                "train_tokens"):
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    for col in ("learning_rate", "params_trainable_share", "peak_memory_bytes", "wall_s", "train_s", "eval_s",
                "eval_share", "tokens_per_s", "time_to_best_validation_s", "best_validation_value", "epochs",
                "train_loss", "qa_null_threshold"):
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["arm"] = df["arm"].where(df["arm"].notna(), df["method"])      # a table written before arms: the method
    return df.sort_values(["task", "method", "arm", "setting_id", "seed", "run_dir"], na_position="last",
                          ignore_index=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


# ---------------------------------------------------------------- logs, predictions, selections


def read_log(run_dir: str | Path) -> list[dict]:
    """log.jsonl records; a torn or bad line (a run killed mid-write) is skipped, not fatal."""
    return [rec for rec in read_log_records(Path(run_dir) / LOG_FILE) if _is_number(rec.get("step"))]


def collect_curves(runs: pd.DataFrame, results_dir: str | Path) -> pd.DataFrame:
    """Long table of loss curves: run_dir, step, loss (training) and eval_loss (validation) per log record."""
    root = Path(results_dir)
    frames = []
    for rel in runs["run_dir"]:
        recs = read_log(root / rel)
        if recs:
            df = pd.DataFrame(recs)
            keep = [c for c in ("step", "loss", "eval_loss") if c in df.columns]
            frames.append(df[keep].assign(run_dir=rel))
    if not frames:
        return pd.DataFrame(columns=["run_dir", "step", "loss", "eval_loss"])
    out = pd.concat(frames, ignore_index=True)
    for col in ("loss", "eval_loss"):
        if col not in out.columns:
            out[col] = float("nan")
    return out[["run_dir", "step", "loss", "eval_loss"]]


def read_test_predictions(run_dir: str | Path) -> pd.DataFrame | None:
    """predictions/test.jsonl as a DataFrame (None when absent or unreadable)."""
    path = Path(run_dir) / TEST_PREDICTIONS
    if not path.is_file():
        return None
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return pd.DataFrame(rows) if rows else None


def read_selections(results_dir: str | Path, exclude: str | Path | None = None) -> dict[str, dict[str, dict]]:
    """Merge every selection.json below results_dir into {task: {method: entry}}; entry["source"] names the
    file. Sorted paths, later files win on conflicts (the plan engine writes one per experiment).
    """
    return merge_selections(read_selection_files(results_dir, exclude))


def read_selection_files(results_dir: str | Path, exclude: str | Path | None = None) -> dict[str, dict]:
    """Every readable selection.json below results_dir (skipping `exclude`): {path relative to results_dir: its
    content}, in sorted path order."""
    skip = Path(exclude).resolve() if exclude else None
    files: dict[str, dict] = {}
    for path in sorted(Path(results_dir).rglob(SELECTION_FILE)):
        if _is_under(path, skip):
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(data, dict):
            files[path.relative_to(results_dir).as_posix()] = data
    return files


def merge_selections(files: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """{task: {method: entry}} from read_selection_files' files, later (sorted) paths winning on conflicts;
    entry["source"] names the file."""
    merged: dict[str, dict[str, dict]] = {}
    for rel in sorted(files):
        for task, methods in files[rel].items():
            for method, entry in (methods or {}).items() if isinstance(methods, dict) else ():
                if isinstance(entry, dict):
                    merged.setdefault(task, {})[method] = entry | {"source": rel}
    return merged


def read_configs(runs: pd.DataFrame, results_dir: str | Path) -> dict[str, dict]:
    """run_dir -> resolved config from metrics.json (to match selection.json overrides)."""
    out = {}
    for rel in runs["run_dir"]:
        m = read_metrics(Path(results_dir) / rel)
        if isinstance(m, dict) and isinstance(m.get("config"), dict):
            out[rel] = m["config"]
    return out


def read_run_configs(runs: pd.DataFrame, results_dir: str | Path) -> tuple[dict[str, dict], dict[str, str]]:
    """run_dir -> resolved config (metrics.json "config"), and run_dir -> the precision the run resolved on its
    device (metrics.json precision.name: training.precision "auto" is bf16-mixed on a GPU, 32-true on a CPU), for
    every run folder that records them."""
    configs, precisions = {}, {}
    for rel in runs["run_dir"]:
        m = read_metrics(Path(results_dir) / rel)
        if not isinstance(m, dict):
            continue
        if isinstance(m.get("config"), dict) and m["config"]:
            configs[rel] = m["config"]
        precision = m.get("precision")
        if isinstance(precision, dict) and isinstance(precision.get("name"), str):
            precisions[rel] = precision["name"]
    return configs, precisions
