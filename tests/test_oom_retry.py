"""Out-of-memory retry (tunebench.runner): a run that runs out of memory retries with half the per-device batch
and twice the accumulation, keeping the effective batch and the requested config's id and folder, down to a
per-device batch of 1. Simulated on the CPU by a training (or evaluation) step that raises
torch.OutOfMemoryError while the per-device batch is above a limit."""

from __future__ import annotations

import gc
import json
import weakref
from pathlib import Path

import pytest
import torch

import tunebench.train as train
from run_helpers import KillAt
from tunebench.config import load_config, with_overrides
from tunebench.io import read_jsonl
from tunebench.results import run_dir
from tunebench.runner import (
    BatchSetting,
    BatchState,
    halve_eval_batch,
    halve_train_batch,
    run_one,
    starting_batch,
    tracker_run_id,
)
from tunebench.system import is_out_of_memory

TINY_RUN = [
    "model.name=tiny", "tracking.backend=none", "data.source=builtin",
    "data.builtin_train_size=96", "data.builtin_test_size=32", "data.validation_size=16",
    "training.max_steps=4", "training.eval_steps=2", "training.logging_steps=1",
    "training.eval_train_examples=0", "model.max_length=64",
]
OOM = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.10 GiB"


def tiny_cfg(tmp_path: Path, *extra: str):
    return load_config([], [*TINY_RUN, f"output_dir={tmp_path}", "experiment=t", *extra])


def oom_in_training_above(monkeypatch, limit: int, models: list | None = None) -> list[int]:
    """Every training step raises CUDA's out-of-memory error while the per-device batch is above `limit`;
    returns the per-device batch of every step that ran. `models` collects weak references to each attempt's
    model that ran out of memory."""
    original = train.SequentialEvalTrainer.training_step
    batches: list[int] = []

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.args.per_device_train_batch_size > limit:
            if models is not None:
                models.append(weakref.ref(self.model))
            raise torch.OutOfMemoryError(OOM)
        if models:                            # the first step of the retry: the failed attempt's model is gone
            gc.collect()
            assert all(ref() is None for ref in models), "the failed attempt's model is still alive"
        batches.append(self.args.per_device_train_batch_size)
        return original(self, model, inputs, num_items_in_batch)

    monkeypatch.setattr(train.SequentialEvalTrainer, "training_step", training_step)
    return batches


def test_oom_halves_the_batch_and_keeps_the_run(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path, "training.per_device_train_batch_size=8")
    models: list = []
    batches = oom_in_training_above(monkeypatch, 2, models)
    rec = run_one(cfg, preflight=False)
    assert rec["status"] == "ok", rec["reason"]
    rdir = run_dir(cfg)                                   # the requested config's id and folder
    assert rec["run_id"] == rdir.name and [p.name for p in (tmp_path / "t").iterdir()] == [rdir.name]
    saved = json.loads((rdir / "metrics.json").read_text())
    assert saved["batch"]["requested"] == {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
                                           "per_device_eval_batch_size": 32}
    assert saved["batch"]["used"] == {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 4,
                                      "per_device_eval_batch_size": 32}
    used = saved["batch"]["used"]
    assert used["per_device_train_batch_size"] * used["gradient_accumulation_steps"] == 8 * 1   # effective batch
    assert saved["batch"]["oom_retries"] == 2 == len(models)
    assert [(e["during"], e["batch"]["per_device_train_batch_size"]) for e in saved["batch"]["oom"]] == \
        [("training", 8), ("training", 4)]
    assert saved["batch"]["oom"][0]["reason"].startswith("out of memory: CUDA out of memory")
    assert saved["config"]["training"]["per_device_train_batch_size"] == 8          # the requested config
    assert "per_device_train_batch_size: 8" in (rdir / "config.yaml").read_text()
    # the retry started clean: 4 steps of 4 micro-batches of 2, each step logged once, no checkpoint left
    assert batches == [2] * 16 and rec["steps"] == 4
    assert [r["step"] for r in read_jsonl(rdir / "log.jsonl") if "loss" in r] == [1, 2, 3, 4]
    assert not (rdir / "checkpoints").exists() and not (rdir / "error.log").exists()

    # the same science: a run asked for batch 2 x accumulation 4 from the start gives the very same results
    monkeypatch.undo()
    direct = run_one(with_overrides(cfg, {"training.per_device_train_batch_size": 2,
                                          "training.gradient_accumulation_steps": 4}), preflight=False)
    assert (direct["test"], direct["validation"], direct["train_loss"]) == (rec["test"], rec["validation"],
                                                                            rec["train_loss"])
    assert direct["batch"]["oom_retries"] == 0 and direct["batch"]["used"] == direct["batch"]["requested"]


def test_oom_at_batch_one_fails_with_its_reason(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path, "training.per_device_train_batch_size=4", "method=full")
    oom_in_training_above(monkeypatch, 0)
    rec = run_one(cfg, preflight=False)
    assert rec["status"] == "failed" and rec["reason"] == f"out of memory: {OOM}"
    saved = json.loads((run_dir(cfg) / "metrics.json").read_text())
    assert saved["status"] == "failed" and saved["batch"]["oom_retries"] == 2
    assert saved["batch"]["used"]["per_device_train_batch_size"] == 1
    assert saved["batch"]["used"]["gradient_accumulation_steps"] == 4
    assert "OutOfMemoryError" in (run_dir(cfg) / "error.log").read_text()


def test_oom_in_evaluation_halves_the_eval_batch(tmp_path, monkeypatch):
    """Validation runs out of memory: the evaluation batch is halved, the training batch is left as asked."""
    cfg = tiny_cfg(tmp_path, "training.per_device_train_batch_size=4", "training.per_device_eval_batch_size=16")
    original = train.SequentialEvalTrainer.prediction_step

    def prediction_step(self, model, inputs, *args, **kwargs):
        if self.args.per_device_eval_batch_size > 8:
            raise torch.OutOfMemoryError(OOM)
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(train.SequentialEvalTrainer, "prediction_step", prediction_step)
    rec = run_one(cfg, preflight=False)
    assert rec["status"] == "ok", rec["reason"]
    assert rec["batch"]["used"] == {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 1,
                                    "per_device_eval_batch_size": 8}
    assert [e["during"] for e in rec["batch"]["oom"]] == ["evaluation"]


def test_an_interrupted_retry_resumes_with_the_batch_it_used(tmp_path, monkeypatch):
    """Killed after an out-of-memory retry: the next process resumes from the checkpoint with the batch that
    wrote it, not the requested one, and the record keeps the retries."""
    common = ["training.per_device_train_batch_size=4", "training.max_steps=6", "training.eval_steps=2",
              "training.save_total_limit=3"]
    cfg = tiny_cfg(tmp_path, *common)
    oom_in_training_above(monkeypatch, 2)
    monkeypatch.setattr(train.JsonlLogCallback, "on_log", KillAt(3)(train.JsonlLogCallback.on_log))
    with pytest.raises(KeyboardInterrupt):
        run_one(cfg, preflight=False)
    running = json.loads((run_dir(cfg) / "metrics.json").read_text())
    assert running["status"] == "running" and running["batch"]["used"]["per_device_train_batch_size"] == 2
    assert (run_dir(cfg) / "checkpoints" / "checkpoint-2").is_dir()
    monkeypatch.undo()
    batches = oom_in_training_above(monkeypatch, 2)   # a requested-size batch would run out of memory again
    rec = run_one(cfg, resume=True, preflight=False)
    assert rec["status"] == "ok", rec["reason"]
    assert rec["batch"]["used"]["gradient_accumulation_steps"] == 2 and rec["batch"]["oom_retries"] == 1
    assert set(batches) == {2} and rec["steps"] == 6
    assert [r["step"] for r in read_jsonl(run_dir(cfg) / "log.jsonl") if "loss" in r] == [1, 2, 3, 4, 5, 6]


def test_each_attempt_is_its_own_wandb_run(tmp_path, monkeypatch):
    """Offline W&B: the attempt that ran out of memory under the run id (finished as failed), the retry under
    `<run_id>-retry1` with the whole training log; no id is reused."""
    from tunebench.tracking import read_finished_wandb_file

    cfg = tiny_cfg(tmp_path, "training.per_device_train_batch_size=4", "tracking.backend=wandb")
    oom_in_training_above(monkeypatch, 2)
    rec = run_one(cfg, preflight=False)
    assert rec["status"] == "ok", rec["reason"]
    folders = [p.name for p in run_dir(cfg).glob("wandb/offline-run-*")]      # offline-run-<time>-<id>
    assert sorted(f.split("-", 3)[-1] for f in folders) == [rec["run_id"], f"{rec['run_id']}-retry1"]
    retry = next(run_dir(cfg).glob("wandb/offline-run-*-retry1/run-*.wandb"))
    records = read_finished_wandb_file(retry)
    losses = [r["train/loss"] for kind, r in records if kind == "history" and "train/loss" in r]
    assert losses == pytest.approx([r["loss"] for r in read_jsonl(run_dir(cfg) / "log.jsonl") if "loss" in r])
    summary = {k: v for kind, r in records if kind == "summary" for k, v in r.items()}
    assert summary["batch/used/per_device_train_batch_size"] == 2 and summary["batch/oom_retries"] == 1


# ---------------------------------------------------------------- the pure parts


def test_halving_keeps_the_effective_batch():
    b = BatchSetting(12, 1, 32)
    steps = []
    while b is not None:
        steps.append((b.per_device_train_batch_size, b.gradient_accumulation_steps))
        b = halve_train_batch(b)
    assert steps == [(12, 1), (6, 2), (3, 4), (1, 12)]     # an odd batch goes to its largest divisor
    assert halve_train_batch(BatchSetting(5, 2, 8)) == BatchSetting(1, 10, 8)
    assert halve_eval_batch(BatchSetting(4, 1, 3)) == BatchSetting(4, 1, 1)
    assert halve_eval_batch(BatchSetting(4, 1, 1)) is None


def test_what_counts_as_out_of_memory():
    assert is_out_of_memory(torch.OutOfMemoryError("anything"))
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB"))
    try:
        try:
            raise torch.OutOfMemoryError(OOM)
        except torch.OutOfMemoryError as inner:
            raise RuntimeError("callback failed") from inner
    except RuntimeError as outer:
        assert is_out_of_memory(outer)
    assert not is_out_of_memory(ValueError("shape mismatch"))
    assert tracker_run_id("sst2-lora-s42-abc", 0) == "sst2-lora-s42-abc"
    assert tracker_run_id("sst2-lora-s42-abc", 2) == "sst2-lora-s42-abc-retry2"


def test_starting_batch_reads_only_a_matching_record(tmp_path):
    cfg = tiny_cfg(tmp_path, "training.per_device_train_batch_size=8")
    requested = BatchSetting.of(cfg)
    used = BatchSetting(2, 4, 32)
    previous = {"batch": BatchState(requested, used, ({"during": "training"},) * 2).record()}
    assert starting_batch(cfg, previous).used == used and starting_batch(cfg, previous).oom_retries == 2
    assert starting_batch(cfg, None).used == requested
    assert starting_batch(cfg, {"batch": {"requested": {"x": 1}}}).used == requested       # foreign record
    other = with_overrides(cfg, {"training.per_device_train_batch_size": 4})
    assert starting_batch(other, previous).used == BatchSetting.of(other)                  # another request
