"""One timed training run through the engine's Trainer (`measure_training`), and estimates of a run's
duration from one already measured (`estimate_s`)."""

from __future__ import annotations

import time
from pathlib import Path

from transformers import TrainerCallback

from tunebench.bench.formulas import BatchStats, train_flops
from tunebench.bench.gpu_check.build import build_on_device
from tunebench.bench.gpu_check.log import device_name
from tunebench.bench.gpu_check.sdpa import sdpa_from_profile
from tunebench.bench.gpu_check.synthetic import special_ids_floor, synthetic_features
from tunebench.bench.measure import sync_device
from tunebench.config import Config, with_overrides
from tunebench.data.tasks import TaskSpec
from tunebench.flops import peak_flops
from tunebench.system import exception_line


class WindowClock(TrainerCallback):
    """Times the optimizer steps after `warmup` (the clock synchronized with the device at both ends of the
    window), freezes the run's peak memory at the end of the window, and profiles the one step after it when
    asked (outside the window, so the profiler costs the timing nothing)."""

    def __init__(self, device: str, memory, warmup: int, timed: int, profile: bool):
        self.device, self.memory, self.warmup, self.timed, self.profile = device, memory, warmup, timed, profile
        self.t0 = self.window_start = self.window_end = self.first_step_s = 0.0
        self.profiler = None
        self.profile_keys: list[str] = []
        self.profile_error: str | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        sync_device(self.device)
        self.t0 = self.window_start = time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        if self.profile and state.global_step == self.warmup + self.timed:
            try:
                from torch.profiler import ProfilerActivity, profile

                acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device == "cuda" else [])
                self.profiler = profile(activities=acts)
                self.profiler.start()
            except Exception as e:  # noqa: BLE001 -- a profiler that cannot start costs only its finding
                self.profiler, self.profile_error = None, exception_line(e)

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        if step == 1 or step in (self.warmup, self.warmup + self.timed) or self.profiler is not None:
            sync_device(self.device)
        now = time.perf_counter()
        if step == 1:
            self.first_step_s = now - self.t0
        if step == self.warmup:
            self.window_start = now
        if step == self.warmup + self.timed:
            self.window_end = now
            self.memory.mark_window_end()
        elif self.profiler is not None and step > self.warmup + self.timed:
            try:
                self.profiler.stop()
                self.profile_keys = sorted({e.key for e in self.profiler.key_averages()})
            except Exception as e:  # noqa: BLE001
                self.profile_error = exception_line(e)
            self.profiler = None
        # The Trainer saves a checkpoint after the last step (a 1.3B model with its optimizer state: 16 GB of
        # disk and tens of seconds); a measurement needs neither that nor an evaluation.
        control.should_save = control.should_evaluate = False
        return control


def measure_training(cfg: Config, task: TaskSpec, tokenizer, device: str, *, batch: int, warmup: int, timed: int,
                     workdir: Path, profile: bool = False, seed: int = 0) -> dict:
    """Train a freshly built model through the engine's Trainer on synthetic full-length examples for
    warmup + timed steps (+1 profiled step) and measure the timed ones. Raises what training raises (an
    out-of-memory error included); global torch settings the Trainer changes are restored."""
    from tunebench.bench.measure import flop_params_of, isolated_run
    from tunebench.features import Split
    from tunebench.precision import ComputeDtypeProbe, measured_precision, resolve_policy
    from tunebench.train import build_engine, set_cpu_threads

    length = cfg.model.max_length
    steps = warmup + timed + (1 if profile else 0)
    tcfg = with_overrides(cfg, {"training.per_device_train_batch_size": batch, "training.max_steps": steps,
                                "training.eval_steps": steps + 1, "training.gradient_accumulation_steps": 1})
    policy = resolve_policy(tcfg, device)
    t_call = time.perf_counter()
    with isolated_run(device) as mem:
        t0 = time.perf_counter()
        model = build_on_device(tcfg, task, tokenizer, device, policy)
        build_s = time.perf_counter() - t0
        set_cpu_threads(tcfg, sum(p.numel() for p in model.parameters()), device)
        params = flop_params_of(model)
        feats = synthetic_features(batch * steps, length, model.config.vocab_size, special_ids_floor(tokenizer),
                                   task.num_labels, seed)
        clock = WindowClock(device, mem, warmup, timed, profile)
        eval_split = Split([{"label": f["labels"]} for f in feats[:2]], feats[:2])
        # the engine a run builds (train.build_engine), around the model built above on the device
        trainer = build_engine(tcfg, task, tokenizer, Split([], feats).dataset(), eval_split, workdir, policy,
                               device=device, callbacks=[clock], model=model).trainer
        probe = ComputeDtypeProbe(model)
        try:
            trainer.train()
        finally:
            probe.remove()
        precision = measured_precision(policy, trainer.model, trainer.optimizer, probe.dtype)
        del trainer, model
    window_s = clock.window_end - clock.window_start
    batches = [BatchStats(batch, batch * length, length)] * timed
    flops = train_flops(params, batches)
    peak = peak_flops(device_name(device)) if device == "cuda" else None
    t = tcfg.training
    out = {
        "method": tcfg.method, "batch": batch, "seq_len": length, "warmup_steps": warmup, "timed_steps": timed,
        "window_s": window_s, "step_time_s": window_s / timed, "first_step_s": clock.first_step_s,
        "tokens_per_s": timed * batch * length / window_s, "samples_per_s": timed * batch / window_s,
        "peak_memory_bytes": mem.peak_bytes, "memory_before_bytes": int(mem.base),
        "model_flops_per_step": flops / timed, "flops_per_s": flops / window_s,
        "mfu": flops / window_s / peak if peak else None,
        "params": {"non_embedding_frozen": params.frozen, "non_embedding_trainable": params.trainable},
        "precision": precision, "build_s": build_s, "wall_s": time.perf_counter() - t_call,
        "switches": {"deterministic": t.deterministic, "gradient_checkpointing": t.gradient_checkpointing,
                     "torch_compile": t.torch_compile, "optim": t.optim,
                     "attn_implementation": tcfg.model.attn_implementation},
    }
    if profile:
        out["profile"] = ({"error": clock.profile_error} if clock.profile_error
                          else sdpa_from_profile(clock.profile_keys))
    return out


def steps_time(m: dict) -> float:
    """Seconds of training steps in a measurement (all of them, warm-up included, at the timed rate)."""
    return (m["warmup_steps"] + m["timed_steps"]) * m["step_time_s"]


def estimate_s(ref: dict, batch: int, steps: int, factor: float = 1.0) -> float:
    """A measurement at `batch` for `steps` steps, from a reference one: its fixed cost (build, Trainer, first
    step) plus the steps at the reference step time scaled by batch, with a 30% margin."""
    fixed = max(0.0, ref["wall_s"] - steps_time(ref))
    return fixed + 1.3 * factor * steps * ref["step_time_s"] * batch / ref["batch"]
