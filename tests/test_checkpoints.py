"""Resuming only from a complete checkpoint: the marker written last, the files the Trainer needs, and an
incomplete checkpoint (a save cut short by a full disk) moved aside instead of failing every later attempt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers.trainer_utils import get_last_checkpoint, sort_checkpoints

from tunebench.checkpoints import MARKER, checkpoint_problem, resume_checkpoint, write_marker
from tunebench.config import load_config
from tunebench.results import run_dir
from tunebench.runner import run_one

TINY_RUN = [
    "model.name=tiny", "tracking.backend=none", "data.source=builtin",
    "data.builtin_train_size=96", "data.builtin_test_size=32", "data.validation_size=16",
    "training.max_steps=4", "training.eval_steps=2", "training.logging_steps=1",
    "training.per_device_train_batch_size=8", "training.eval_train_examples=0", "model.max_length=64",
]
FULL = {"config.json": "{}", "model.safetensors": "w", "optimizer.pt": "o", "scheduler.pt": "s",
        "rng_state.pth": "r", "trainer_state.json": '{"global_step": 2}', "training_args.bin": "a"}


def tiny_cfg(tmp_path: Path, *extra: str):
    return load_config([], [*TINY_RUN, f"output_dir={tmp_path}", "experiment=t", *extra])


def make_checkpoint(ckpt_dir: Path, step: int, files: dict[str, str] = FULL, marker: bool = True) -> Path:
    folder = ckpt_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    if marker:
        write_marker(folder, step)
    return folder


def without(*names: str, **extra: str) -> dict[str, str]:
    return {**{k: v for k, v in FULL.items() if k not in names}, **extra}


# ---------------------------------------------------------------- what a complete checkpoint is


def test_a_checkpoint_is_complete_with_every_file_the_trainer_resumes_from(tmp_path):
    assert checkpoint_problem(make_checkpoint(tmp_path, 1)) is None
    assert checkpoint_problem(make_checkpoint(tmp_path, 2, marker=False)) is None      # written before markers
    lora = without("model.safetensors", "config.json", **{"adapter_model.safetensors": "w",
                                                           "adapter_config.json": "{}"})
    assert checkpoint_problem(make_checkpoint(tmp_path, 3, lora)) is None
    sharded = without("model.safetensors", **{"model.safetensors.index.json": json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}),
        "model-00001-of-00002.safetensors": "w", "model-00002-of-00002.safetensors": "w"})
    assert checkpoint_problem(make_checkpoint(tmp_path, 4, sharded)) is None
    assert checkpoint_problem(make_checkpoint(tmp_path, 5, without(**{"rng_state_0.pth": "r"}))) is None


@pytest.mark.parametrize(("files", "problem"), [
    ({"config.json": "{}"}, "missing model weights (model.safetensors or adapter_model.safetensors), "
                            "optimizer.pt, scheduler.pt, rng_state.pth, trainer_state.json"),
    (without("optimizer.pt"), "missing optimizer.pt"),       # the Trainer would resume with a fresh optimizer
    (without("scheduler.pt"), "missing scheduler.pt"),
    (without("rng_state.pth"), "missing rng_state.pth"),
    (without("trainer_state.json"), "missing trainer_state.json"),
    (without(**{"trainer_state.json": '{"global_st'}), "missing trainer_state.json"),      # torn
    (without("model.safetensors", **{"adapter_model.safetensors": "w"}), "missing adapter_config.json"),
    (without("model.safetensors", **{"model.safetensors.index.json": json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}),
        "model-00001-of-00002.safetensors": "w"}), "missing model-00002-of-00002.safetensors"),
])
def test_an_incomplete_checkpoint_says_what_it_lacks(tmp_path, files, problem):
    assert checkpoint_problem(make_checkpoint(tmp_path, 2, files, marker=False)) == problem


def test_a_file_changed_after_the_marker_makes_it_incomplete(tmp_path):
    folder = make_checkpoint(tmp_path, 2)
    (folder / "optimizer.pt").write_text("")                   # truncated since
    assert checkpoint_problem(folder) == "changed since it was written: optimizer.pt"
    (folder / MARKER).write_text("{")
    assert checkpoint_problem(folder) == f"unreadable {MARKER}"


def test_resume_takes_the_newest_complete_checkpoint_and_moves_newer_incomplete_ones_aside(tmp_path, capsys):
    ckpt = tmp_path / "checkpoints"
    assert resume_checkpoint(ckpt) is None                     # no folder at all
    make_checkpoint(ckpt, 2, {"config.json": "{}"}, marker=False)   # older and incomplete: not looked at
    make_checkpoint(ckpt, 9)
    make_checkpoint(ckpt, 10, without("optimizer.pt"))
    make_checkpoint(ckpt, 12, {"config.json": "{}"}, marker=False)
    assert resume_checkpoint(ckpt) == str(ckpt / "checkpoint-9")   # by step, not by name: 9 < 10 < 12
    names = sorted(p.name for p in ckpt.iterdir())
    assert names[:2] == ["checkpoint-2", "checkpoint-9"]
    assert [n.rsplit("-", 1)[0] for n in names[2:]] == ["incomplete-checkpoint-10", "incomplete-checkpoint-12"]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("tunebench: warning: ") for line in err)
    assert "checkpoint-12: an incomplete checkpoint (missing model weights" in err[0]   # newest first
    assert "moved aside to incomplete-checkpoint-12-" in err[0] and "(missing optimizer.pt)" in err[1]
    assert all(line.endswith(", resuming from checkpoint-9") for line in err)
    # the Trainer neither resumes from nor rotates (save_total_limit) a folder moved aside
    assert get_last_checkpoint(str(ckpt)) == str(ckpt / "checkpoint-9")
    assert sorted(Path(p).name for p in sort_checkpoints(str(ckpt))) == ["checkpoint-2", "checkpoint-9"]
    assert resume_checkpoint(ckpt) == str(ckpt / "checkpoint-9") and not capsys.readouterr().err


# ---------------------------------------------------------------- the engine


@pytest.fixture
def loaded_from(monkeypatch):
    """The checkpoints the Trainer loads to resume (and what the checkpoints folder held then)."""
    from tunebench.train import SequentialEvalTrainer

    seen = []
    original = SequentialEvalTrainer._load_from_checkpoint

    def spy(self, resume_from_checkpoint, model=None):
        folder = Path(resume_from_checkpoint)
        seen.append((folder.name, sorted(p.name for p in folder.parent.iterdir())))
        return original(self, resume_from_checkpoint, model)

    monkeypatch.setattr(SequentialEvalTrainer, "_load_from_checkpoint", spy)
    return seen


def test_a_save_cut_short_by_a_full_disk_is_moved_aside_and_the_run_resumes_from_the_last_complete_one(
        tmp_path, monkeypatch, loaded_from, capsys, one_thread):
    from transformers import Trainer

    common = ["method=full", "training.save_total_limit=3"]
    reference = run_one(tiny_cfg(tmp_path / "a", *common), preflight=False)
    cfg = tiny_cfg(tmp_path / "b", *common)
    original = Trainer._save_optimizer_and_scheduler

    def disk_full_at_step_4(self, output_dir):
        if self.state.global_step == 4:
            raise OSError(28, "No space left on device")
        return original(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", disk_full_at_step_4)
    failed = run_one(cfg, preflight=False)
    assert failed["status"] == "failed" and failed["reason"] == "OSError: [Errno 28] No space left on device"
    ckpt = run_dir(cfg) / "checkpoints"
    assert sorted(p.name for p in (ckpt / "checkpoint-4").iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "training_args.bin"]
    marker = json.loads((ckpt / "checkpoint-2" / MARKER).read_text())     # written last, once the save returned
    assert marker["step"] == 2 and {"model.safetensors", "optimizer.pt", "trainer_state.json"} <= set(marker["files"])
    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", original)
    capsys.readouterr()

    resumed = run_one(cfg, preflight=False)
    assert resumed["status"] == "ok", resumed["reason"]
    [(name, folders)] = loaded_from
    assert name == "checkpoint-2" and "checkpoint-4" not in folders
    assert [f.rsplit("-", 1)[0] for f in folders if f.startswith("incomplete-")] == ["incomplete-checkpoint-4"]
    assert "checkpoint-4: an incomplete checkpoint (missing optimizer.pt, scheduler.pt, rng_state.pth, " \
           "trainer_state.json); moved aside" in capsys.readouterr().err
    assert resumed["test"] == reference["test"] and resumed["validation"] == reference["validation"]
    assert not ckpt.exists()                                   # gone with the checkpoints once the run is ok


def test_with_only_an_incomplete_checkpoint_the_run_starts_from_scratch(tmp_path, loaded_from, capsys,
                                                                         one_thread):
    cfg = tiny_cfg(tmp_path, "method=lora", "training.max_steps=2")
    (run_dir(cfg) / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (run_dir(cfg) / "checkpoints" / "checkpoint-2" / "config.json").write_text("{}")
    rec = run_one(cfg, preflight=False)
    assert rec["status"] == "ok", rec["reason"]
    assert loaded_from == [] and rec["steps"] == 2
    err = capsys.readouterr().err
    assert "checkpoint-2: an incomplete checkpoint (missing model weights" in err
    assert "no complete checkpoint: training from scratch" in err
