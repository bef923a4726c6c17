"""The one training engine: the transformers Trainer, the same for both methods.

model + method -> train (validation every eval_steps, best checkpoint restored) -> evaluate on validation,
test (official dev) and a train subset (tunebench.evaluate) -> per-example predictions. The method is applied
as a transform in `build_model`; nothing else branches on it except the learning rate each method has. The
engine (model under the precision policy, training arguments, collator, callbacks, Trainer) is assembled in one
place, `build_engine`, which a run (`train_and_evaluate`), the benchmark's tunebench arm, the GPU check's
measurements and the overfitting sanity check all call: change it and every one of them follows.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
from datasets import Dataset
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_callback import PrinterCallback

from tunebench.checkpoints import CompleteCheckpointCallback, resume_checkpoint, step_of
from tunebench.config import Config
from tunebench.data.tasks import TaskSpec, get_task
from tunebench.errors import TunebenchError
from tunebench.evaluate import SequentialEvalMixin, evaluate_split, make_compute_metrics
from tunebench.fast_paths import trainer_class
from tunebench.features import Split, encode
from tunebench.io import append_jsonl
from tunebench.methods import apply_method, count_parameters
from tunebench.metrics.classification import majority_label
from tunebench.model import load_model, load_tokenizer, resolve_device
from tunebench.precision import (
    ComputeDtypeProbe,
    PrecisionPolicy,
    apply_policy,
    check_supported,
    measured_precision,
    optimizer_cls_and_kwargs,
    resolve_policy,
)


class TrainingDiverged(RuntimeError):
    """NaN/inf training loss: the run is recorded as failed with this reason."""


# ---------------------------------------------------------------- the Trainer


class SequentialEvalTrainer(SequentialEvalMixin, Trainer):
    """The Trainer with the overrides correctness needs:

    - evaluation (tunebench.evaluate.SequentialEvalMixin): sequential, over splits pre-sorted by length (not
      the shuffled order of transformers 5's LengthGroupedSampler), and the in-loop validation outputs kept,
      so that the final validation pass on the restored best checkpoint is not computed a second time
      (`restored_validation`);
    - the precision policy kept: re-applied after a checkpoint is loaded (resume) and after the best model is
      restored at the end.
    """

    precision_policy: PrecisionPolicy | None = None   # set by build_trainer

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Resume: PEFT's load_adapter upcasts bf16 adapters to fp32 (autocast_adapter_dtype); the policy is
        re-applied before the optimizer state is loaded (which takes its parameters' dtype)."""
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._reapply_policy()

    def _load_best_model(self):
        """The best checkpoint, restored at the end, in the policy's dtypes (see _load_from_checkpoint)."""
        super()._load_best_model()
        self._reapply_policy()

    def _reapply_policy(self) -> None:
        if self.precision_policy is not None:
            apply_policy(self.model, self.precision_policy)


# SequentialEvalTrainer with the speed patches (training.trainer_fast_paths=true, the default)
FastPathTrainer = trainer_class(SequentialEvalTrainer, fast_paths=True)


def prepare_splits(cfg: Config, task: TaskSpec, tokenizer) -> dict[str, Split]:
    from tunebench.data.sources import load_split_records, to_dataset_dict

    cached, records_by_split = load_split_records(cfg, task.name)
    raw = to_dataset_dict(task, records_by_split)
    splits = {}
    for name in ("train", "validation", "test"):
        records = raw[name].to_list()
        split = Split(records, encode(task, records, tokenizer, cfg.model.max_length, cfg.qa.doc_stride))
        splits[name] = split if name == "train" else split.sorted_by_length()
    if cached.carve is not None:
        splits["validation"].carve = cached.carve.as_dict()
    n = cfg.training.eval_train_examples
    if n:
        rng = np.random.default_rng(cfg.data.split_seed)
        pick = sorted(rng.choice(len(splits["train"].records), size=min(n, len(splits["train"].records)),
                                 replace=False).tolist())
        records = [splits["train"].records[i] for i in pick]
        splits["train_eval"] = Split(records, encode(task, records, tokenizer, cfg.model.max_length,
                                                     cfg.qa.doc_stride)).sorted_by_length()
    return splits


# ---------------------------------------------------------------- model


def build_model(cfg: Config, task: TaskSpec, tokenizer, device: str | None = None,
                policy: PrecisionPolicy | None = None) -> torch.nn.Module:
    """Seed, load, apply the method, then the precision policy (every trainable tensor in its trainable dtype:
    LoRA's adapters and head, or every weight for full fine-tuning). Seeding first makes the head and LoRA A
    reproducible. `policy` defaults to the config's on `device`; a CUDA policy can be built on a CPU (tests)."""
    device = device or resolve_device()
    policy = policy or resolve_policy(cfg, device)
    set_seed(cfg.training.seed)
    model = load_model(cfg, task, tokenizer, device, dtype=policy.frozen_dtype)
    set_seed(cfg.training.seed)
    return apply_policy(apply_method(model, cfg, task), policy)


# ---------------------------------------------------------------- callbacks


class JsonlLogCallback(TrainerCallback):
    """Per-step train/eval records with wall time since the start; forwards them to the tracker. A training
    record is logged at every checkpoint too (and at the last step, which is one), so that the logged losses
    of a run resumed from a checkpoint cover its steps before it exactly (whole_run_train_loss)."""

    def __init__(self, path: Path, tracker, t0: float):
        self.path, self.tracker, self.t0 = path, tracker, t0

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save:             # set by the Trainer's DefaultFlowCallback, which runs first
            control.should_log = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = {k: v for k, v in (logs or {}).items() if isinstance(v, (int, float))}
        if not logs:
            return
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(loss):
            raise TrainingDiverged(f"non-finite training loss ({loss}) at step {state.global_step}")
        row = {"step": state.global_step, "epoch": state.epoch, **logs, "time_s": time.perf_counter() - self.t0}
        append_jsonl(self.path, row)
        self.tracker.log({("train/" + k if not k.startswith("eval_") else "eval/" + k[5:]): v
                          for k, v in logs.items()}, step=state.global_step)


class PeakMemory:
    """Peak memory of this run: CUDA max allocated on GPU, sampled RSS on CPU (a per-run peak, unlike
    ru_maxrss which is the process's lifetime peak)."""

    def __init__(self, device: str, interval_s: float = 0.05):
        self.device, self.interval_s = device, interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, proc.memory_info().rss)
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc) -> None:
        if self.device == "cuda":
            self.peak_bytes = int(torch.cuda.max_memory_allocated())
        else:
            self._stop.set()
            self._thread.join()

    @property
    def kind(self) -> str:
        return "cuda_max_allocated" if self.device == "cuda" else "cpu_peak_rss"


@contextlib.contextmanager
def torch_settings_kept():
    """The process-wide settings a Trainer (or a run) changes, put back when the block ends: deterministic
    algorithms (the Trainer's full_determinism switches them on for the whole process, with cuDNN's flags and
    two environment variables) and torch's intra-op threads (set_cpu_threads). For callers that build engines
    inside a longer process: the benchmark's runs, the overfitting probe."""
    import os

    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.get_num_threads(), torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    env = {k: os.environ.get(k) for k in ("CUDA_LAUNCH_BLOCKING", "CUBLAS_WORKSPACE_CONFIG")}
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.set_num_threads(saved[2])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[3], saved[4]
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---------------------------------------------------------------- stopping on SIGINT / SIGTERM

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)   # Ctrl-C; what schedulers (Slurm, Kubernetes) send before a kill
STOP_SAVE_BUDGET_S = 10.0    # the longest a checkpoint written on the way out may take (as the last one took)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by SIGINT or SIGTERM (StopOnSignal) at `step`; `save_s` says how long a checkpoint took
    when the one of this step was not written for taking longer than STOP_SAVE_BUDGET_S."""

    def __init__(self, signum: int, step: int, save_s: float | None = None, forced: bool = False):
        super().__init__(f"{signal_name(signum)} at step {step}")
        self.signum, self.step, self.save_s, self.forced = signum, step, save_s, forced


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def can_handle_signals() -> bool:
    """Handlers can be set in the main thread only; a Ray worker's signals are Ray's, left alone."""
    if threading.current_thread() is not threading.main_thread():
        return False
    ray = sys.modules.get("ray")
    try:
        return not (ray is not None and ray.is_initialized()
                    and ray.get_runtime_context().worker.mode == ray.WORKER_MODE)
    except Exception:  # noqa: BLE001 -- a Ray without that API: taken for no worker
        return True


class StopOnSignal(TrainerCallback):
    """SIGINT or SIGTERM during training (`catching`): training stops at the end of the current optimizer step,
    after a checkpoint of that step written by the Trainer's own save (as a regular one: CompleteCheckpointCallback,
    listed before this callback, marks it complete), then TrainingInterrupted is raised from on_save. The
    checkpoint is written when it can be within STOP_SAVE_BUDGET_S, as long as the last one of this process took
    (with the validation pass before it at an evaluation step; or when none was timed yet); otherwise the
    exception comes at once and the run resumes from its last checkpoint. The first signal puts the previous
    handlers back, so a second one does what it did before (Ctrl-C: KeyboardInterrupt at once; SIGTERM by
    default: the process ends)."""

    def __init__(self, budget_s: float = STOP_SAVE_BUDGET_S):
        self.budget_s = budget_s
        self.signum: int | None = None
        self.save_s: float | None = None          # the last checkpoint: its save
        self.checkpoint_s: float | None = None    # the last checkpoint: from its step's end (validation included)
        self._step_end = self._eval_end = 0.0
        self._previous: dict[int, Any] = {}

    @contextlib.contextmanager
    def catching(self):
        """The handlers, installed for the block's time (in the main thread only, and not in a Ray worker)."""
        if not can_handle_signals():
            yield self
            return
        self._previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
        for s in STOP_SIGNALS:
            signal.signal(s, self._handle)
        try:
            yield self
        finally:
            self._restore()

    def _handle(self, signum: int, frame) -> None:
        self.signum = signum
        self._restore()
        with contextlib.suppress(OSError, RuntimeError, ValueError):     # a closed or busy stderr
            print(f"tunebench: {signal_name(signum)}: stopping at the end of this training step (Ctrl-C again: at "
                  "once)", file=sys.stderr, flush=True)

    def _restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def on_step_end(self, args, state, control, **kwargs):
        self._step_end = time.monotonic()
        if self.signum is None:
            return
        cost = self.checkpoint_s if control.should_evaluate else self.save_s
        if cost is not None and cost > self.budget_s:
            raise TrainingInterrupted(self.signum, state.global_step, save_s=cost)
        control.should_save = control.should_log = control.should_training_stop = True

    def on_evaluate(self, args, state, control, **kwargs):
        self._eval_end = time.monotonic()

    def on_save(self, args, state, control, **kwargs):
        now = time.monotonic()
        self.checkpoint_s = now - self._step_end
        self.save_s = now - max(self._step_end, self._eval_end)
        if self.signum is not None:
            raise TrainingInterrupted(self.signum, state.global_step)


# ---------------------------------------------------------------- training arguments

SMALL_MODEL_PARAMS = 20_000_000
DEFAULT_THREADS = torch.get_num_threads()   # torch's default intra-op threads, read before any run changed them


def set_cpu_threads(cfg: Config, n_params: int, device: str) -> int | None:
    """On CPU, intra-op threads: the configured number, else 1 for small models (splitting a 64-wide matmul
    across cores costs more in synchronization than it saves), else torch's default (all cores)."""
    if device != "cpu":
        return None
    threads = cfg.training.cpu_threads or (1 if n_params < SMALL_MODEL_PARAMS else DEFAULT_THREADS)
    torch.set_num_threads(threads)
    return threads


def check_switches(cfg: Config, device: str, policy: PrecisionPolicy | None = None) -> None:
    """The precision policy and each speed switch are accepted only where their package and device exist (one
    clear line otherwise). `policy`: the run's (default: the config's on `device`)."""
    import importlib.util

    t = cfg.training
    check_supported(policy or resolve_policy(cfg, device), device, t.optim)
    if t.liger_kernels and importlib.util.find_spec("liger_kernel") is None:
        raise TunebenchError("training.liger_kernels=true needs the liger-kernel package (pip install liger-kernel)")
    if t.liger_kernels and device != "cuda":
        raise TunebenchError("training.liger_kernels=true needs a CUDA GPU (Liger kernels are Triton kernels)")
    if t.optim == "adamw_8bit" and importlib.util.find_spec("bitsandbytes") is None:
        raise TunebenchError("training.optim=adamw_8bit needs the bitsandbytes package (pip install bitsandbytes)")
    if t.optim == "adamw_8bit" and device != "cuda":
        raise TunebenchError("training.optim=adamw_8bit needs a CUDA GPU")
    if t.torch_compile and device == "cuda" and importlib.util.find_spec("triton") is None:
        raise TunebenchError("training.torch_compile=true needs the triton package on a GPU (TorchInductor's kernels)")
    if t.torch_compile and device == "cpu" and not _has_cxx():
        raise TunebenchError("training.torch_compile=true on CPU needs a C++ compiler (g++ or clang++; or set CXX)")


def _has_cxx() -> bool:
    """TorchInductor compiles C++ on a CPU (CXX, else g++ or clang++)."""
    import os
    import shutil

    return any(shutil.which(c) for c in (os.environ.get("CXX"), "g++", "clang++") if c)


# transformers 5.23 renamed TrainingArguments.gradient_checkpointing (and the model's *_enable) to
# activation_checkpointing, keeping the old name as a deprecated alias; 5.17-5.22 know only the old name.
CHECKPOINTING = ("activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
                 else "gradient_checkpointing")


def build_training_args(cfg: Config, task: TaskSpec, output_dir: Path, device: str,
                        policy: PrecisionPolicy | None = None) -> TrainingArguments:
    """The Trainer's arguments for this config and task. `policy`: the run's precision policy (default: the
    config's on `device`); it decides bf16 autocast."""
    t = cfg.training
    bf16 = (policy or resolve_policy(cfg, device)).autocast      # bf16-mixed: autocast over fp32 weights
    primary = "f1" if task.is_qa else task.primary_metric
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        eval_do_concat_batches=False,          # per-batch predictions, joined once (tunebench.evaluate)
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,           # a float in [0, 1) is a ratio of total steps (transformers 5)
        lr_scheduler_type=t.lr_scheduler_type,
        max_grad_norm=t.max_grad_norm,
        eval_strategy="steps",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.eval_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model=f"eval_{primary}",
        greater_is_better=True,
        label_names=["start_positions", "end_positions"] if task.is_qa else ["labels"],
        logging_steps=t.logging_steps,
        logging_nan_inf_filter=False,          # a NaN loss must fail the run, not be hidden
        seed=t.seed,
        data_seed=t.seed,
        full_determinism=t.deterministic,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        length_column_name="length",
        include_num_input_tokens_seen="non_padding",
        bf16=bf16,
        optim=t.optim,
        **{CHECKPOINTING: t.gradient_checkpointing,
           f"{CHECKPOINTING}_kwargs": {"use_reentrant": False} if t.gradient_checkpointing else None},
        torch_compile=t.torch_compile,
        use_liger_kernel=t.liger_kernels,
        report_to="none",                      # tracking is ours (tunebench.tracking), one run per training run
        disable_tqdm=True,
        use_cpu=device == "cpu",
        dataloader_pin_memory=device == "cuda",
        save_only_model=False,
    )


# ---------------------------------------------------------------- the engine


def policy_optimizer(policy: PrecisionPolicy, args: TrainingArguments) -> tuple[type, dict] | None:
    """The optimizer class and arguments the precision policy asks for, at the training arguments' learning
    rate, betas, epsilon and weight decay (bf16-true: a compensating AdamW); None = the Trainer's own choice
    from `args.optim`. For the Trainer's `optimizer_cls_and_kwargs`."""
    return optimizer_cls_and_kwargs(policy, args.learning_rate, (args.adam_beta1, args.adam_beta2),
                                    args.adam_epsilon, args.weight_decay)


def build_trainer(cfg: Config, task: TaskSpec, model: torch.nn.Module, args: TrainingArguments, collator,
                  train_dataset: Dataset, eval_split: Split, callbacks: list[TrainerCallback],
                  policy: PrecisionPolicy) -> SequentialEvalTrainer:
    """The Trainer of every tunebench run (and of the benchmark's tunebench path): the optimizer the precision
    policy asks for (bf16-true: AdamW with Kahan summation or stochastic rounding; otherwise training.optim),
    validation on `eval_split` for model selection, early stopping when configured, no stdout log dicts, and
    the speed patches when training.trainer_fast_paths is on."""
    callbacks = list(callbacks)
    if cfg.training.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(cfg.training.early_stopping_patience))
    optimizer = policy_optimizer(policy, args)
    trainer_cls = trainer_class(SequentialEvalTrainer, fast_paths=cfg.training.trainer_fast_paths)
    trainer = trainer_cls(
        model=model, args=args, data_collator=collator, train_dataset=train_dataset,
        eval_dataset=eval_split.dataset(), compute_metrics=make_compute_metrics(task, eval_split, cfg),
        callbacks=callbacks, optimizer_cls_and_kwargs=optimizer,
    )
    trainer.precision_policy = policy
    trainer.remove_callback(PrinterCallback)                 # our JSON-lines log replaces stdout dicts
    return trainer


def build_collator(cfg: Config, tokenizer) -> DataCollatorWithPadding:
    """The engine's collator: dynamic padding (to the longest example of the batch, rounded up to
    training.pad_to_multiple_of)."""
    return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=cfg.training.pad_to_multiple_of)


@dataclass
class Engine:
    """The training engine of one run, assembled and ready to train (what `build_engine` returns).

    `trainer` holds the other pieces (its model, args and collator are these objects); they are kept here too
    so that a caller reads them without reaching into the Trainer. Nothing has trained yet: the optimizer and
    the scheduler are created by the Trainer when training starts (`trainer.create_optimizer_and_scheduler`
    creates them without training, as the benchmark's raw loop does)."""

    trainer: SequentialEvalTrainer      # build_trainer's: FastPathTrainer when training.trainer_fast_paths is on
    model: torch.nn.Module              # the task model, method applied, in the policy's dtypes (trainer.model)
    args: TrainingArguments             # build_training_args' (trainer.args)
    collator: Callable                  # build_collator's, through `wrap_collator` when given (trainer.data_collator)
    policy: PrecisionPolicy             # the run's precision policy, the object passed in
    device: str                         # "cuda" | "cpu"


def build_engine(cfg: Config, task: TaskSpec, tokenizer, train_dataset: Dataset, eval_split: Split,
                 output_dir: Path, policy: PrecisionPolicy, *, device: str | None = None,
                 callbacks: Sequence[TrainerCallback] = (), model: torch.nn.Module | None = None,
                 wrap_collator: Callable[[Callable], Callable] | None = None) -> Engine:
    """The one assembly of tunebench's training engine, from the resolved config, the task, the data and the
    run's precision policy (built once by the caller: `resolve_policy(cfg, device)`). Every path that trains
    tunebench's way calls it: a run (`train_and_evaluate`), the benchmark's tunebench arm and raw loop
    (`bench.measure`), the GPU check's measurements (`bench.gpu_check.training.measure_training`) and the overfitting
    sanity check (`sanity.overfit_batch`), so none of them can drift from what a run trains with.

    In order:
    1. the model: `build_model(cfg, task, tokenizer, device, policy)` (seed, load, method, precision policy),
       unless `model` is given: one the caller built already -- by `build_model` (the GPU check builds it inside
       a `torch.device` context, and needs its vocabulary before the data), or by the method transform on a
       checkpoint loaded once (the sanity checks);
    2. the training arguments: `build_training_args(cfg, task, output_dir, device, policy)` (checkpoints go
       under `output_dir`);
    3. the collator: `build_collator(cfg, tokenizer)`, passed through `wrap_collator` when given (the
       benchmark records every batch);
    4. the Trainer: `build_trainer` on `train_dataset`, validating on `eval_split`, with `callbacks` in this
       order (early stopping appended when configured) and the optimizer the policy asks for.

    `device` defaults to `resolve_device()`. Process-wide settings (CPU threads: `set_cpu_threads`) stay the
    caller's; the Trainer itself seeds the RNGs (and, with training.deterministic, switches deterministic
    algorithms on) when it is created, as it always does."""
    device = device or resolve_device()
    if model is None:
        model = build_model(cfg, task, tokenizer, device, policy)
    args = build_training_args(cfg, task, output_dir, device, policy)
    collator = build_collator(cfg, tokenizer)
    if wrap_collator is not None:
        collator = wrap_collator(collator)
    trainer = build_trainer(cfg, task, model, args, collator, train_dataset, eval_split, list(callbacks), policy)
    return Engine(trainer, model, args, collator, policy, device)


@dataclass
class EngineResult:
    fields: dict[str, Any] = field(default_factory=dict)
    predictions: dict[str, list[dict]] = field(default_factory=dict)


def train_and_evaluate(cfg: Config, run_dir: Path, tracker, resume: bool = True) -> EngineResult:
    """One run: its task and precision policy resolved once, the engine built (build_engine), trained (resumed
    from the newest complete checkpoint when `resume`), then evaluated on validation, test and a train subset."""
    task = get_task(cfg.task)
    device = resolve_device()
    policy = resolve_policy(cfg, device)          # the run's one policy: every piece below is handed this one
    check_switches(cfg, device, policy)
    t_wall = time.perf_counter()
    tokenizer = load_tokenizer(cfg)
    splits = prepare_splits(cfg, task, tokenizer)

    ckpt_dir = run_dir / "checkpoints"
    stop = StopOnSignal()        # after CompleteCheckpointCallback: its on_save marks the checkpoint first
    engine = build_engine(cfg, task, tokenizer, splits["train"].dataset(), splits["validation"], ckpt_dir, policy,
                          device=device, callbacks=[JsonlLogCallback(run_dir / "log.jsonl", tracker, t_wall),
                                                    CompleteCheckpointCallback(), stop])
    trainer, model, args = engine.trainer, engine.model, engine.args
    params = count_parameters(model)
    threads = set_cpu_threads(cfg, params["total"], device)
    last = resume_checkpoint(ckpt_dir) if resume else None     # the newest complete one (tunebench.checkpoints)
    resumed_from = step_of(last) or 0
    _trim_log(run_dir / "log.jsonl", resumed_from)

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()      # checkpoint writes; our log.jsonl is the progress record
    probe = ComputeDtypeProbe(model)
    with PeakMemory(device) as mem:
        t_train = time.perf_counter()
        try:
            with stop.catching():
                out = trainer.train(resume_from_checkpoint=last)
        except KeyboardInterrupt as e:    # a second Ctrl-C stopped it at once (a save cut short is moved aside)
            if stop.signum is None or isinstance(e, TrainingInterrupted):
                raise
            raise TrainingInterrupted(stop.signum, trainer.state.global_step, forced=True) from e
        finally:
            probe.remove()
        if stop.signum is not None:       # after the last step (the best checkpoint was being restored)
            raise TrainingInterrupted(stop.signum, trainer.state.global_step)
        train_s = time.perf_counter() - t_train
        t_eval = time.perf_counter()
        restored = trainer.restored_validation()     # the in-loop pass of these weights: not predicted twice
        val_metrics, val_rows, threshold = evaluate_split(trainer, task, splits["validation"], cfg,
                                                          outputs=restored)
        test_metrics, test_rows, _ = evaluate_split(trainer, task, splits["test"], cfg, threshold)
        train_eval = {}
        if "train_eval" in splits:
            train_eval, _, _ = evaluate_split(trainer, task, splits["train_eval"], cfg, threshold)
        final_eval_s = time.perf_counter() - t_eval

    state = trainer.state
    in_loop_eval_s = sum(h.get("eval_runtime", 0.0) for h in state.log_history)
    best_step, best_value, best_time = _best_validation(run_dir / "log.jsonl", args.metric_for_best_model,
                                                        state.best_metric)
    wall_s = time.perf_counter() - t_wall
    eval_s = in_loop_eval_s + final_eval_s
    tokens = int(state.num_input_tokens_seen or 0)
    fields = {
        "test": test_metrics,
        "validation": val_metrics,
        "best_validation": {"step": best_step, "value": best_value, "time_s": best_time},
        "train_eval": train_eval,
        "train_loss": whole_run_train_loss(state.log_history, state.global_step, resumed_from,
                                           float(out.training_loss)),
        "steps": state.global_step,
        "epochs": float(state.epoch or 0.0),
        "params": params,
        "timing": {"wall_s": wall_s, "train_s": train_s - in_loop_eval_s, "eval_s": eval_s,
                   "eval_share": eval_s / wall_s if wall_s else 0.0,
                   "validation_reused": restored is not None},
        "memory": {"peak_bytes": mem.peak_bytes, "kind": mem.kind},
        "tokens": {"train_non_pad": tokens,
                   "tokens_per_s": tokens / max(train_s - in_loop_eval_s, 1e-9)},
        "device": device,
        "cpu_threads": threads,
        "precision": measured_precision(policy, trainer.model, trainer.optimizer, probe.dtype),
        "data": {"validation_carve": splits["validation"].carve,
                 "train_majority_label": None if task.is_qa else majority_label(r["label"]
                                                                               for r in splits["train"].records)},
    }
    if task.is_qa:
        fields["qa"] = {"null_threshold": threshold}
    _save_model(trainer, cfg, run_dir, tokenizer)
    return EngineResult(fields, {"validation": val_rows, "test": test_rows})


def whole_run_train_loss(log_history: list[dict], steps: int, resumed_from: int, trainer_loss: float) -> float:
    """metrics.json's train_loss: the mean training loss over every step of the run, resumed or not.

    The Trainer's training_loss covers the steps of its own train() call only: after a resume, those after the
    checkpoint. The steps up to the checkpoint are in the log history the Trainer restored from it: each logged
    `loss` is the mean over the steps since the previous record, and one is logged at every checkpoint
    (JsonlLogCallback), so weighted by those steps they add up to the checkpoint exactly. (A checkpoint written
    without that record: the steps after its last record count at the mean of the logged ones.)"""
    if resumed_from <= 0 or steps <= 0:
        return trainer_loss
    total, logged = 0.0, 0
    for step, loss in sorted((h["step"], h["loss"]) for h in log_history if "loss" in h and h["step"] <= resumed_from):
        total += loss * (step - logged)
        logged = step
    if logged < resumed_from:
        total += (total / logged if logged else trainer_loss) * (resumed_from - logged)
    return (total + trainer_loss * (steps - resumed_from)) / steps


def _trim_log(path: Path, keep_until_step: int) -> None:
    """Drop log records past the checkpoint we resume from (they will be logged again); all on a fresh start."""
    from tunebench.io import atomic_write_jsonl

    if not path.exists():
        return
    if keep_until_step == 0:
        path.unlink()
        return
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a torn last line from a killed process
    atomic_write_jsonl(path, [r for r in rows if r.get("step", 0) <= keep_until_step])


def _best_validation(log_path: Path, metric_key: str, best_metric: float | None) -> tuple[int | None, float | None,
                                                                                          float | None]:
    from tunebench.io import read_jsonl

    rows = [r for r in read_jsonl(log_path) if metric_key in r] if log_path.exists() else []
    if not rows:
        return None, best_metric, None
    best = max(rows, key=lambda r: (r[metric_key], -r["step"]))  # earliest step among ties
    return best["step"], best[metric_key], best["time_s"]


def _save_model(trainer: Trainer, cfg: Config, run_dir: Path, tokenizer) -> None:
    """LoRA: the adapter with the task head (modules_to_save). Full: the whole model, only when asked."""
    from tunebench.model import quiet_transformers

    folder = "adapter" if cfg.method == "lora" else "model" if cfg.training.save_full_model else None
    if folder:
        with quiet_transformers():
            trainer.model.save_pretrained(str(run_dir / folder))
            tokenizer.save_pretrained(str(run_dir / folder))
