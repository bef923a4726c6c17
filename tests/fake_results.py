"""Synthetic run folders that follow docs/results.md, for tests of anything that reads results.

    from fake_results import write_fake_run, classification_predictions
    write_fake_run(tmp_path, "sst2", "lora", 1, test=0.91, validation=0.90,
                   predictions=classification_predictions([1, 0, 1], [True, True, False]))

`test` / `validation` / `train_eval` take either a number (the task's primary metric) or a full dict of
metrics. Everything else has plausible defaults (LoRA: 0.9% trainable, 380 MB peak; full: 100%, 1 GB).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunebench.data.tasks import TASKS

DEFAULT_LR = {"lora": 2e-4, "full": 5e-5}
DEFAULT_TOTAL_PARAMS = 1_000_000
DEFAULT_SHARE = {"lora": 0.009, "full": 1.0}
DEFAULT_PEAK_BYTES = {"lora": 380_000_000, "full": 1_000_000_000}


def write_fake_run(
    root: str | Path,
    task: str,
    method: str,
    seed: int,
    *,
    test: float | dict | None = None,
    validation: float | dict | None = None,
    train_eval: float | dict | None = None,
    status: str = "ok",
    reason: str | None = None,
    experiment: str = "demo",
    learning_rate: float | None = None,
    lora_r: int | None = 16,
    predictions: Sequence[dict] | None = None,
    log: Sequence[dict] | None = None,
    config: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write <root>/<experiment>/<run_id>/ with metrics.json, log.jsonl and (optionally) predictions;
    returns the run folder. `log=None` writes a default decreasing loss curve; `log=[]` writes no log."""
    spec = TASKS[task]
    lr = learning_rate if learning_rate is not None else DEFAULT_LR[method]
    r = lora_r if method == "lora" else None
    cfg = config if config is not None else fake_config(task, method, seed, lr, r, experiment)
    digest = hashlib.sha1(json.dumps([lr, r, cfg], sort_keys=True, default=str).encode()).hexdigest()[:8]
    run_id = f"{task}-{method}-s{seed}-{digest}"
    folder = Path(root) / experiment / run_id
    (folder / "predictions").mkdir(parents=True, exist_ok=True)
    metrics = fake_metrics(task, method, seed, run_id=run_id, experiment=experiment, learning_rate=lr, lora_r=r,
                           status=status, reason=reason, config=cfg,
                           test=_as_metrics(spec.primary_metric, test),
                           validation=_as_metrics(spec.primary_metric, validation),
                           train_eval=_as_metrics(spec.primary_metric, train_eval))
    metrics.update(extra or {})
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    rows = default_log(seed, method) if log is None else list(log)
    if rows:
        _write_jsonl(folder / "log.jsonl", rows)
    if predictions is not None:
        _write_jsonl(folder / "predictions" / "test.jsonl", predictions)
    return folder


def fake_metrics(task: str, method: str, seed: int, *, run_id: str, experiment: str, learning_rate: float,
                 lora_r: int | None, status: str, reason: str | None, config: dict, test: dict,
                 validation: dict, train_eval: dict) -> dict[str, Any]:
    """A metrics.json body (schema 1). Failed runs carry no test metrics."""
    ok = status == "ok"
    share = DEFAULT_SHARE[method]
    return {
        "schema": 1, "run_id": run_id, "experiment": experiment, "status": status,
        "reason": reason if reason is not None or status != "failed" else "RuntimeError: boom",
        "task": task, "method": method, "seed": seed, "learning_rate": learning_rate, "lora_r": lora_r,
        "primary_metric": TASKS[task].primary_metric,
        "test": test if ok else {}, "validation": validation if ok else {},
        "best_validation": {"step": 300, "value": next(iter(validation.values()), None), "time_s": 40.0 + seed},
        "train_eval": train_eval if ok else {}, "train_loss": 0.2 + 0.01 * seed, "steps": 750, "epochs": 3.0,
        "params": {"trainable": int(DEFAULT_TOTAL_PARAMS * share), "total": DEFAULT_TOTAL_PARAMS,
                   "trainable_share": share},
        "timing": {"wall_s": 80.0 if method == "lora" else 120.0, "train_s": 70.0, "eval_s": 8.0, "eval_share": 0.1},
        "memory": {"peak_bytes": DEFAULT_PEAK_BYTES[method], "kind": "cpu_peak_rss"},
        "tokens": {"train_non_pad": 1_000_000, "tokens_per_s": 17_000.0 if method == "lora" else 9_000.0},
        "env": {"device": "cpu", "python": "3.11", "git_revision": "abc123", "packages": {}},
        "config": config,
    }


def fake_config(task: str, method: str, seed: int, lr: float, lora_r: int | None, experiment: str) -> dict:
    """The slice of a resolved config the report looks at (the real one has every field)."""
    training = {"seed": seed, "learning_rate": lr if method == "lora" else 2e-4,
                "full_finetune_learning_rate": lr if method == "full" else 5e-5}
    return {"experiment": experiment, "output_dir": "results", "task": task, "method": method,
            "lora": {"r": lora_r or 16}, "training": training, "tracking": {"backend": "none"}}


def default_log(seed: int, method: str, steps: int = 5) -> list[dict]:
    """Training loss every 10 steps and a validation record every 20: decreasing, seed-dependent."""
    offset = 0.01 * seed + (0.05 if method == "full" else 0.0)
    rows: list[dict] = []
    for i in range(1, steps + 1):
        step = 10 * i
        rows.append({"step": step, "epoch": step / 100, "loss": 0.7 / i + offset, "learning_rate": 1e-4,
                     "time_s": float(i)})
        if i % 2 == 0:
            rows.append({"step": step, "epoch": step / 100, "eval_loss": 0.6 / i + offset, "eval_accuracy": 0.8,
                         "time_s": float(i) + 0.5})
    return rows


def classification_predictions(labels: Sequence[int], correct: Sequence[bool]) -> list[dict]:
    """predictions/test.jsonl rows: idx i, label, and a prediction that is right where correct[i]."""
    return [{"idx": i, "label": int(y), "prediction": int(y) if ok else 1 - int(y)}
            for i, (y, ok) in enumerate(zip(labels, correct, strict=True))]


def squad_predictions(f1: Sequence[float], ids: Sequence[str] | None = None) -> list[dict]:
    """predictions/test.jsonl rows for SQuAD v2 with the given per-question F1 (0-1)."""
    ids = ids or [f"q{i:05d}" for i in range(len(f1))]
    return [{"id": q, "prediction": "x" if v > 0 else "", "null_score_diff": 0.0, "has_answer": True,
             "exact": float(v == 1.0), "f1": float(v)} for q, v in zip(ids, f1, strict=True)]


def write_selection(root: str | Path, experiment: str, selection: dict) -> Path:
    """The plan engine's <root>/<experiment>/selection.json: {task: {method: {"learning_rate": x, ...}}}."""
    path = Path(root) / experiment / "selection.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(selection), encoding="utf-8")
    return path


def write_broken_run(root: str | Path, experiment: str = "demo", name: str = "broken-run",
                     metrics_text: str | None = "{not json") -> Path:
    """A run folder whose metrics.json is not valid JSON (or, with metrics_text=None, that never wrote one
    but has a log)."""
    folder = Path(root) / experiment / name
    folder.mkdir(parents=True, exist_ok=True)
    if metrics_text is None:
        _write_jsonl(folder / "log.jsonl", default_log(0, "lora"))
    else:
        (folder / "metrics.json").write_text(metrics_text, encoding="utf-8")
    return folder


def _as_metrics(primary: str, value: float | dict | None) -> dict:
    if value is None:
        return {}
    return dict(value) if isinstance(value, dict) else {primary: float(value)}


def _write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def squad_metrics(has_ans_f1: float, no_ans_f1: float, has_ans_total: int, no_ans_total: int) -> dict:
    """A SQuAD v2 `test` dict as the official script writes it (0-100): overall = the question-weighted mean
    of the parts; exact = F1 (no partial credit); a part's keys are absent when it has no question."""
    total = has_ans_total + no_ans_total
    f1 = (has_ans_f1 * has_ans_total + no_ans_f1 * no_ans_total) / total
    out: dict[str, float | int] = {"exact": f1, "f1": f1, "total": total}
    if has_ans_total:
        out |= {"HasAns_exact": has_ans_f1, "HasAns_f1": has_ans_f1, "HasAns_total": has_ans_total}
    if no_ans_total:
        out |= {"NoAns_exact": no_ans_f1, "NoAns_f1": no_ans_f1, "NoAns_total": no_ans_total}
    return out
