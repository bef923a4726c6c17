"""One builder of the training engine: a run (train.train_and_evaluate), the benchmark's tunebench arm
(bench.measure.run_tunebench), the GPU check's measurements (bench.gpu_check.training.measure_training) and the
overfitting probe (sanity.overfit_batch) all get their engine from train.build_engine, and from one config they
get the same engine: the same model weights, training arguments, Trainer class, collator, optimizer and scheduler.

A spy stands in for the builder: it calls the real one, keeps what it was given and what it built, and (for the
three callers that would go on to train) stops the caller there, so nothing trains."""

from __future__ import annotations

import inspect
import re

import pytest
import torch

import tunebench.bench.gpu_check as gpu_check
import tunebench.bench.measure as measure
import tunebench.train as train
from tunebench import sanity
from tunebench.config import load_config
from tunebench.data.tasks import get_task
from tunebench.tracking import NullTracker

STEPS, BATCH = 2, 4
TINY = ["model.name=tiny", "tracking.backend=none", "data.builtin_train_size=96", "data.builtin_test_size=32",
        "data.validation_size=16", "model.max_length=64", "training.eval_train_examples=8",
        "training.per_device_eval_batch_size=16",
        # the settings the benchmark (tunebench_config) and the GPU check (measure_training) give a timed run of
        # STEPS steps at BATCH examples: a run of this config is built from the very same config
        f"training.max_steps={STEPS}", f"training.eval_steps={STEPS + 1}",
        f"training.per_device_train_batch_size={BATCH}", "training.gradient_accumulation_steps=1"]


class Built(Exception):
    """Raised by the spy once the engine is built: the caller stops before training."""


class Spy:
    def __init__(self, real, stop: bool):
        self.real, self.stop = real, stop
        self.calls: list[tuple[dict, train.Engine]] = []

    def __call__(self, *args, **kwargs) -> train.Engine:
        bound = inspect.signature(self.real).bind(*args, **kwargs)
        bound.apply_defaults()
        engine = self.real(*args, **kwargs)
        self.calls.append((dict(bound.arguments), engine))
        if self.stop:
            raise Built
        return engine


def spy_on_builder(monkeypatch, stop: bool) -> Spy:
    """The builder replaced by a spy in train (where the run, the GPU check and the sanity checks take it from)
    and in bench.measure (which imports it by name: the same function, checked first)."""
    assert measure.build_engine is train.build_engine
    spy = Spy(train.build_engine, stop)
    monkeypatch.setattr(train, "build_engine", spy)
    monkeypatch.setattr(measure, "build_engine", spy)
    return spy


@pytest.fixture
def cfg(tmp_path):
    return load_config([], [*TINY, f"output_dir={tmp_path}"])


def _args(engine: train.Engine) -> dict:
    """The training arguments, less where each caller writes (its own folder)."""
    return {k: v for k, v in engine.args.to_dict().items() if k not in ("output_dir", "logging_dir")}


def _collator(engine: train.Engine):
    """The engine's collator under the benchmark's recording wrapper (bench.measure.RecordingCollator)."""
    return getattr(engine.collator, "collate", engine.collator)


def _optimization(engine: train.Engine) -> tuple:
    """The optimizer and scheduler the Trainer creates for STEPS steps: classes, settings, groups and rates."""
    trainer = engine.trainer
    trainer.create_optimizer_and_scheduler(num_training_steps=STEPS)
    opt, sched = trainer.optimizer, trainer.lr_scheduler
    groups = [({k: v for k, v in g.items() if k != "params"}, [p.shape for p in g["params"]])
              for g in opt.param_groups]
    rates = []
    for _ in range(STEPS):
        rates.append(sched.get_last_lr())
        opt.step()      # no gradients yet: moves nothing, lets the scheduler step
        sched.step()
    return type(opt), opt.defaults, groups, type(sched), rates


def test_the_run_the_benchmark_and_the_gpu_check_build_one_engine_from_one_config(cfg, tmp_path, monkeypatch):
    spy = spy_on_builder(monkeypatch, stop=True)
    assert measure.tunebench_config(cfg, STEPS) == cfg        # the benchmark times this very config
    with pytest.raises(Built):
        train.train_and_evaluate(cfg, tmp_path / "run", NullTracker(), resume=False)
    data = measure.load_bench_data(cfg, STEPS, 1)
    with pytest.raises(Built):
        measure.run_tunebench(cfg, data, data.timed, tmp_path / "bench", "cpu", 0, STEPS)
    with pytest.raises(Built):
        gpu_check.measure_training(cfg, data.task, data.tokenizer, "cpu", batch=BATCH, warmup=1, timed=STEPS - 1,
                                   workdir=tmp_path / "gpu")
    assert len(spy.calls) == 3
    (run, run_engine), (bench, bench_engine), (gpu, gpu_engine) = spy.calls
    engines = [run_engine, bench_engine, gpu_engine]

    # the same function, given the same config, task and precision policy
    assert run["cfg"] == bench["cfg"] == gpu["cfg"] == cfg
    assert run["task"] == bench["task"] == gpu["task"] == get_task(cfg.task)
    assert run["policy"] == bench["policy"] == gpu["policy"]
    assert all(e.policy is call["policy"] and e.trainer.precision_policy is call["policy"]
               for (call, _), e in zip(spy.calls, engines, strict=True))

    # ... builds the same engine: model, arguments, Trainer, collator, optimizer and scheduler
    weights = [{n: p.detach() for n, p in e.model.named_parameters() if p.requires_grad} for e in engines]
    assert weights[0] and weights[0].keys() == weights[1].keys() == weights[2].keys()
    assert all(torch.equal(w[n], weights[0][n]) for w in weights[1:] for n in weights[0])
    assert _args(run_engine) == _args(bench_engine) == _args(gpu_engine)
    assert run_engine.args.learning_rate == cfg.learning_rate and run_engine.args.max_steps == STEPS
    assert type(run_engine.trainer) is type(bench_engine.trainer) is type(gpu_engine.trainer)
    assert all(e.trainer.model is e.model and e.trainer.args is e.args and e.trainer.data_collator is e.collator
               for e in engines)
    collators = [_collator(e) for e in engines]
    assert len({type(c) for c in collators}) == 1
    assert len({(c.pad_to_multiple_of, c.padding, c.tokenizer.pad_token_id) for c in collators}) == 1
    assert isinstance(bench_engine.collator, measure.RecordingCollator)     # the benchmark only records batches
    optimization = [_optimization(e) for e in engines]
    assert optimization[0] == optimization[1] == optimization[2]
    # the log callback of a run is the benchmark's first callback too (tunebench's path is timed with it)
    for e in (run_engine, bench_engine):
        assert any(isinstance(c, train.JsonlLogCallback) for c in e.trainer.callback_handler.callbacks)


def test_a_run_resolves_its_precision_policy_once_and_hands_it_down(cfg, tmp_path, monkeypatch):
    spy = spy_on_builder(monkeypatch, stop=True)
    resolved = []
    real = train.resolve_policy
    monkeypatch.setattr(train, "resolve_policy", lambda *a: resolved.append(a) or real(*a))
    with pytest.raises(Built):
        train.train_and_evaluate(cfg, tmp_path / "run", NullTracker(), resume=False)
    assert len(resolved) == 1
    (call, engine), = spy.calls
    assert engine.policy is call["policy"] and engine.trainer.precision_policy is call["policy"]
    assert call["task"] == get_task(cfg.task) and call["model"] is None     # the builder built the model itself


def test_the_overfitting_probe_trains_through_the_engine(cfg, monkeypatch):
    spy = spy_on_builder(monkeypatch, stop=False)
    task = get_task("sst2")
    result = sanity.check_overfitting(cfg, task)
    assert result.passed, result
    steps, shown = re.search(r"after (\d+) steps at lr (\S+)$", result.figure).groups()
    lr = next(cfg.learning_rate * m for m in (10.0, 3.0, 1.0) if f"{cfg.learning_rate * m:g}" == shown)
    call, engine = spy.calls[-1]                                 # the rate that reached the target
    assert call["cfg"] == sanity.overfit_config(cfg, lr, 32, 300) and call["model"] is engine.model
    args = engine.args
    assert (args.learning_rate, args.lr_scheduler_type, args.warmup_steps, args.per_device_train_batch_size,
            args.gradient_accumulation_steps, args.max_steps) == (lr, "constant", 0.0, 32, 1, 300)
    # the rest is the run's: optimizer, weight decay, clipping, precision, Trainer class
    run = train.build_training_args(cfg, task, args.output_dir, "cpu")
    assert (args.optim, args.weight_decay, args.max_grad_norm, args.bf16) == (
        run.optim, run.weight_decay, run.max_grad_norm, run.bf16)
    assert isinstance(engine.trainer, train.FastPathTrainer) == cfg.training.trainer_fast_paths
    assert engine.trainer.state.global_step == int(steps)          # stopped at the step that reached it
