"""Runs stopped by SIGINT (Ctrl-C) or SIGTERM (what a scheduler sends before it kills): training ends at the end of
the step, with a complete checkpoint of it, metrics.json says `interrupted`, the command exits 130 or 143, and
the next run resumes from that checkpoint to the results of an uninterrupted run. A plan stops with its run."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from types import SimpleNamespace

import pytest
from transformers import Trainer, TrainerControl, TrainerState

import tunebench.train as train
from plan_fake_runner import _unit, fake_run
from plan_helpers import SMALL_TWO_STAGE, json_files, write_plan
from test_engine import TINY_RUN, tiny_cfg
from tunebench.checkpoints import MARKER, checkpoint_problem, resume_checkpoint
from tunebench.cli import main
from tunebench.config import with_overrides
from tunebench.io import atomic_write_json, read_jsonl
from tunebench.plan.__main__ import main as plan_main
from tunebench.plan.expand import expand_sweep
from tunebench.plan.spec import load_plan
from tunebench.results import read_metrics, run_dir, run_id
from tunebench.runner import RunInterrupted, interrupted_reason, run_one
from tunebench.train import STOP_SIGNALS, StopOnSignal, TrainingInterrupted

COMMON = ["training.max_steps=8", "training.eval_steps=4", "training.save_total_limit=3"]


class SignalAt:
    """Send `signum` to this process at the end of optimizer step `step` (from JsonlLogCallback.on_step_end, which
    the Trainer calls before tunebench's StopOnSignal): monkeypatch.setattr(Cls, "on_step_end", SignalAt(...)(...))."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum

    def __call__(self, original):
        def on_step_end(cb, args, state, control, **kw):
            if state.global_step == self.step:
                os.kill(os.getpid(), self.signum)
            return original(cb, args, state, control, **kw)
        return on_step_end


def handlers() -> dict:
    return {s: signal.getsignal(s) for s in STOP_SIGNALS}


def losses(cfg) -> list[float]:
    return [r["loss"] for r in read_jsonl(run_dir(cfg) / "log.jsonl") if "loss" in r]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: its record and its per-step losses."""
    cfg = tiny_cfg(tmp_path_factory.mktemp("reference"), *COMMON)
    rec = run_one(cfg, preflight=False)
    assert rec["status"] == "ok", rec["reason"]
    return rec, losses(cfg)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_run_at_the_step_with_a_checkpoint_and_the_rerun_resumes_to_the_same_results(
        tmp_path, monkeypatch, capsys, reference, signum, code):
    cfg = tiny_cfg(tmp_path, *COMMON)
    argv = ["run", "--skip-preflight", *TINY_RUN, *COMMON, f"output_dir={tmp_path}", "experiment=t"]
    before = handlers()
    original = train.JsonlLogCallback.on_step_end
    monkeypatch.setattr(train.JsonlLogCallback, "on_step_end", SignalAt(6, signum)(original))
    assert main(argv) == code
    name = signal.Signals(signum).name
    reason = f"interrupted by {name} at step 6; resume with the same command"
    assert f"tunebench: error: run {run_id(cfg)} {reason}\n" in capsys.readouterr().err
    assert handlers() == before                               # put back once training stopped
    saved = read_metrics(run_dir(cfg))
    assert saved["status"] == "interrupted" and saved["reason"] == reason
    assert saved["interrupted"] == {"signal": name, "step": 6, "checkpoint_step": 6}
    assert saved["batch"]["used"] == saved["batch"]["requested"]
    ckpt = run_dir(cfg) / "checkpoints" / "checkpoint-6"
    assert json.loads((ckpt / MARKER).read_text())["step"] == 6 and checkpoint_problem(ckpt) is None
    assert resume_checkpoint(run_dir(cfg) / "checkpoints") == str(ckpt)
    assert [r["step"] for r in read_jsonl(run_dir(cfg) / "log.jsonl") if "loss" in r][-1] == 6  # logged at it

    monkeypatch.setattr(train.JsonlLogCallback, "on_step_end", original)
    assert main(argv) == 0
    resumed, (full, full_losses) = read_metrics(run_dir(cfg)), reference
    assert resumed["status"] == "ok" and resumed["steps"] == 8
    assert resumed["test"] == full["test"] and resumed["validation"] == full["validation"]
    assert resumed["best_validation"]["step"] == full["best_validation"]["step"]
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], rel=1e-9)
    assert losses(cfg) == full_losses
    assert "interrupted" not in resumed and not (run_dir(cfg) / "checkpoints").exists()


def test_a_second_ctrl_c_during_the_save_stops_at_once_and_corrupts_nothing(tmp_path, monkeypatch, reference):
    """The first Ctrl-C asks for the step's checkpoint; a second one while it is written stops at once (the
    previous handler's KeyboardInterrupt): the run is still recorded interrupted, the half-written checkpoint
    is moved aside by the next run, which resumes from the last complete one to the same results."""
    cfg = tiny_cfg(tmp_path, *COMMON)
    before = handlers()
    original = train.JsonlLogCallback.on_step_end
    monkeypatch.setattr(train.JsonlLogCallback, "on_step_end", SignalAt(6, signal.SIGINT)(original))
    save = Trainer._save_optimizer_and_scheduler

    def ctrl_c_again(self, output_dir):          # the weights written, not the optimizer
        if self.state.global_step == 6:
            os.kill(os.getpid(), signal.SIGINT)
        return save(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", ctrl_c_again)
    with pytest.raises(RunInterrupted) as stopped:
        run_one(cfg, preflight=False)
    assert stopped.value.exit_code == 130 and handlers() == before
    saved = read_metrics(run_dir(cfg))
    assert saved["status"] == "interrupted"
    assert saved["interrupted"] == {"signal": "SIGINT", "step": 6, "checkpoint_step": 4}
    assert saved["reason"] == ("interrupted by SIGINT at step 6 (stopped at once by a second signal; a resume "
                               "starts from step 4); resume with the same command")
    cut = run_dir(cfg) / "checkpoints" / "checkpoint-6"
    assert "optimizer.pt" in checkpoint_problem(cut) and not (cut / MARKER).exists()
    json_files(run_dir(cfg))                      # every JSON file parses

    monkeypatch.setattr(train.JsonlLogCallback, "on_step_end", original)
    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", save)
    resumed, (full, full_losses) = run_one(cfg, preflight=False), reference
    assert resumed["status"] == "ok"
    assert resumed["test"] == full["test"] and resumed["validation"] == full["validation"]
    assert losses(cfg) == full_losses


def _step_end(cb: StopOnSignal, *, evaluate: bool = False) -> TrainerControl:
    control = TrainerControl(should_evaluate=evaluate)
    cb.on_step_end(None, TrainerState(global_step=7), control)
    return control


def test_the_checkpoint_is_skipped_when_the_last_one_took_longer_than_the_budget():
    cb = StopOnSignal(budget_s=2.0)
    assert not _step_end(cb).should_save                     # no signal: nothing changes
    cb.signum = signal.SIGTERM
    control = _step_end(cb)                                    # no checkpoint timed yet: one is written
    assert control.should_save and control.should_log and control.should_training_stop
    cb.save_s, cb.checkpoint_s = 1.0, 30.0                     # a save 1 s, after a validation pass of 29 s
    assert _step_end(cb).should_save
    with pytest.raises(TrainingInterrupted) as stopped:       # at an evaluation step: validation + save
        _step_end(cb, evaluate=True)
    assert (stopped.value.step, stopped.value.save_s) == (7, 30.0)
    cb.save_s = 45.0
    with pytest.raises(TrainingInterrupted):
        _step_end(cb)
    e = TrainingInterrupted(signal.SIGTERM, 37, save_s=45.0)
    assert interrupted_reason(e, 30) == ("interrupted by SIGTERM at step 37 (a checkpoint takes 45 s to write; a "
                                         "resume starts from step 30); resume with the same command")
    assert interrupted_reason(e, None).endswith("a resume starts from scratch); resume with the same command")


def test_the_first_signal_puts_the_handlers_back_and_a_second_one_acts_at_once():
    before = handlers()
    cb = StopOnSignal()
    with cb.catching():
        assert handlers() == {s: cb._handle for s in STOP_SIGNALS}
        os.kill(os.getpid(), signal.SIGINT)
        assert cb.signum == signal.SIGINT and handlers() == before
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert handlers() == before


def test_handlers_are_left_alone_off_the_main_thread_and_in_a_ray_worker(monkeypatch):
    before = handlers()
    seen = []

    def in_a_thread():
        with StopOnSignal().catching():
            seen.append(handlers())

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert seen == [before]

    def fake_ray(mode: int):
        context = SimpleNamespace(worker=SimpleNamespace(mode=mode))
        return SimpleNamespace(WORKER_MODE=1, is_initialized=lambda: True, get_runtime_context=lambda: context)

    monkeypatch.setitem(sys.modules, "ray", fake_ray(1))       # a Ray worker: Ray's handlers stay
    with StopOnSignal().catching():
        assert handlers() == before
    monkeypatch.setitem(sys.modules, "ray", fake_ray(0))       # the driver of a Ray plan: like any process
    cb = StopOnSignal()
    with cb.catching():
        assert handlers() == {s: cb._handle for s in STOP_SIGNALS}
    assert handlers() == before


# ---------------------------------------------------------------- plans and the report


def interrupting_run(cfg, *, resume=True, preflight=True):
    """plan_fake_runner.fake_run, except for the run named by $FAKE_INTERRUPT: stopped after 4 of its steps as
    the runner stops a run on SIGTERM (its checkpoint written, metrics.json interrupted, RunInterrupted)."""
    if run_id(cfg) != os.environ.get("FAKE_INTERRUPT"):
        return fake_run(cfg, resume=resume, preflight=preflight)
    rdir = run_dir(cfg)
    state = int(_unit(run_id(cfg)) * 1e6)
    for step in range(4):                    # fake_run's state after 4 steps
        state = (state * 31 + step) % 1_000_003
    atomic_write_json(rdir / "checkpoints" / "state.json", {"step": 4, "state": state})
    record = {"run_id": run_id(cfg), "status": "interrupted",
              "reason": "interrupted by SIGTERM at step 4; resume with the same command",
              "interrupted": {"signal": "SIGTERM", "step": 4, "checkpoint_step": 4}}
    atomic_write_json(rdir / "metrics.json", record)
    raise RunInterrupted(record, signal.SIGTERM)


def test_an_interrupted_run_stops_the_plan_shows_as_interrupted_and_is_resumed(tmp_path, monkeypatch, capsys):
    plan = load_plan(write_plan(tmp_path, SMALL_TWO_STAGE.format(out=tmp_path / "results")))
    runs = expand_sweep(plan)
    stopped = runs[2]
    monkeypatch.setenv("FAKE_INTERRUPT", stopped.run_id)
    argv = ["run", str(plan.path), "--stage", "sweep", "--runner", "test_interrupt:interrupting_run"]
    assert plan_main(argv) == 143
    err = capsys.readouterr().err
    reason = "interrupted by SIGTERM at step 4; resume with the same command"
    assert err == f"tunebench: error: run {stopped.run_id} {reason}\n"                  # one line
    assert [read_metrics(r.run_dir) is not None for r in runs] == [True] * 3 + [False] * 5   # the plan stopped
    assert plan_main(["status", str(plan.path)]) == 0
    assert "sweep: 8 runs: 2 done, 0 failed, 1 interrupted, 5 pending" in capsys.readouterr().out

    monkeypatch.delenv("FAKE_INTERRUPT")
    assert plan_main(argv) == 0
    assert f"start  {stopped.run_id} (resume)" in capsys.readouterr().out
    assert (stopped.run_dir / "resumed.txt").read_text() == "4\n"
    uninterrupted = fake_run(with_overrides(stopped.cfg, {"output_dir": str(tmp_path / "reference")}))
    assert read_metrics(stopped.run_dir)["state"] == uninterrupted["state"]
    assert all(read_metrics(r.run_dir)["status"] == "ok" for r in runs)


def test_the_report_lists_an_interrupted_run_among_the_runs_not_ok(tmp_path):
    from fake_results import write_fake_run
    from tunebench.report.collect import collect_runs
    from tunebench.report.tables import build_failed_table

    reason = "interrupted by SIGTERM at step 6; resume with the same command"
    write_fake_run(tmp_path, "rte", "lora", 1, test=0.6, validation=0.6)
    write_fake_run(tmp_path, "rte", "full", 1, status="interrupted", reason=reason)
    runs = collect_runs(tmp_path)
    assert sorted(runs["status"]) == ["interrupted", "ok"]
    failed = build_failed_table(runs)
    assert list(failed["status"]) == ["interrupted"] and list(failed["reason"]) == [reason]
