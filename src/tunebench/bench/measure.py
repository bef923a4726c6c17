"""The measuring side of `tunebench bench`: the four baselines, timed in one process, interleaved.

Every baseline trains a fresh copy of the same model (same seed) on the same examples -- a seeded subset of
steps x batch (x accumulation) train examples, one epoch -- so each processes the same non-pad tokens and
tokens/s ratios compare like with like. The timed window of a run is its whole epoch: from the Trainer's
`on_train_begin` (optimizer and dataloader built) to the end of the last optimizer step, collation included;
for the raw loop, from the first to the last step over batches built beforehand. No evaluation or
checkpointing happens inside the window (tunebench's in-loop evaluation is measured separately: eval share).

Noise: a warm-up round of every baseline on other examples is discarded, then `repeats` rounds run with the
order alternating (forward, reversed, ...) and each baseline's median is reported. Global torch settings a
baseline changes (deterministic algorithms, threads) are restored after it, so none leaks into the next.

A client of the engine: tunebench's path is the engine a run trains with, assembled by the same function
(train.build_engine, from the same config), and this module uses only public names of tunebench.train,
tunebench.evaluate and tunebench.system.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
)
from transformers.trainer_callback import PrinterCallback

from tunebench.bench.formulas import (
    BatchStats,
    RunTiming,
    accuracy_verdict,
    batch_stats,
    check_targets,
    paired_speedups,
    project_eval_share,
    speedups,
    summarize,
    tokens_identical,
)
from tunebench.config import Config, with_overrides
from tunebench.data.tasks import TaskSpec, get_task
from tunebench.evaluate import evaluate_split
from tunebench.features import Split, model_columns
from tunebench.flops import FlopParams, count_flop_params, peak_flops, train_flops_per_token
from tunebench.model import load_tokenizer, resolve_device
from tunebench.precision import dtype_name, resolve_policy
from tunebench.system import environment as system_environment
from tunebench.tracking import NullTracker
from tunebench.train import (
    CHECKPOINTING,
    DEFAULT_THREADS,
    Engine,
    JsonlLogCallback,
    PeakMemory,
    build_collator,
    build_engine,
    build_model,
    check_switches,
    policy_optimizer,
    prepare_splits,
    set_cpu_threads,
    torch_settings_kept,
    train_and_evaluate,
)

RUN_ORDER = ("original", "trainer", "tunebench", "raw")   # raw last: it reuses tunebench's batches
EVAL_SLICE = 256
Progress = Callable[[str], None]


# ---------------------------------------------------------------- data


@dataclass
class BenchData:
    task: TaskSpec
    tokenizer: Any
    timed: list[dict]          # features of the timed epoch (steps x batch x accumulation examples)
    warmup: list[dict]         # other train features, for the discarded warm-up round
    splits: dict[str, Split]   # the engine's splits (validation for tunebench's Trainer, test for accuracy)

    @property
    def eval_split(self) -> Split:
        """What tunebench's Trainer evaluates once training ends (after the timed window): a slice of
        validation for classification, so the benchmark does not spend its time there."""
        v = self.splits["validation"]
        return v if self.task.is_qa else Split(v.records[:EVAL_SLICE], v.features[:EVAL_SLICE])


def examples_per_step(cfg: Config) -> int:
    return cfg.training.per_device_train_batch_size * cfg.training.gradient_accumulation_steps


def load_bench_data(cfg: Config, steps: int, warmup_steps: int) -> BenchData:
    """The engine's splits (tunebench.train.prepare_splits) and a seeded pick of timed and warm-up examples."""
    task = get_task(cfg.task)
    tokenizer = load_tokenizer(cfg)
    splits = prepare_splits(with_overrides(cfg, {"training.eval_train_examples": 0}), task, tokenizer)
    train = splits["train"].features
    n_timed, n_warm = steps * examples_per_step(cfg), warmup_steps * examples_per_step(cfg)
    rng = np.random.default_rng(cfg.training.seed)
    order = rng.permutation(len(train)).tolist()
    while len(order) < n_timed + n_warm:         # a tiny train split: cycle through it again
        order += rng.permutation(len(train)).tolist()
    timed = [train[i] for i in order[:n_timed]]
    warmup = [train[i] for i in order[n_timed:n_timed + n_warm]]
    return BenchData(task, tokenizer, timed, warmup, splits)


def n_batches(cfg: Config, features: list[dict]) -> int:
    """Micro-batches in one epoch over `features` (the training dataloader's length)."""
    return -(-len(features) // cfg.training.per_device_train_batch_size)


def pad_to_max_length(features: list[dict], pad_id: int, max_length: int) -> list[dict]:
    """What run_glue.py's --pad_to_max_length does at tokenization: right-pad every example to max_length."""
    out = []
    for f in features:
        n = max_length - len(f["input_ids"])
        out.append({**f, "input_ids": f["input_ids"] + [pad_id] * n, "attention_mask": f["attention_mask"] + [0] * n})
    return out


def to_dataset(features: list[dict]):
    return Split([], features).dataset()


# ---------------------------------------------------------------- instruments


def sync_device(device: str) -> None:
    """Wait for the GPU's queued work (a timer read before it would time only the launches); nothing on a CPU."""
    if device == "cuda":
        torch.cuda.synchronize()


class StepClock(TrainerCallback):
    """Time from on_train_begin to the end of each optimizer step (synchronized on the last one)."""

    def __init__(self, device: str, memory: RunMemory | None = None):
        self.device, self.memory = device, memory
        self.t0 = self.cpu0 = self.cpu_s = 0.0
        self.ends: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        sync_device(self.device)
        self.t0, self.cpu0 = time.perf_counter(), time.process_time()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            sync_device(self.device)
            self.cpu_s = time.process_time() - self.cpu0
            if self.memory is not None:
                self.memory.mark_window_end()
            # the Trainer evaluates and saves after the last step whatever eval_steps says: a timed run needs
            # neither (a 1.3B model's checkpoint with its optimizer state is about 16 GB)
            control.should_save = control.should_evaluate = False
        self.ends.append(time.perf_counter() - self.t0)


class RecordingCollator:
    """Wraps a collator; keeps each batch's stats (and, when asked, the batch itself for the raw loop)."""

    def __init__(self, collate: Callable, limit: int, keep: bool = False):
        self.collate, self.limit, self.keep = collate, limit, keep
        self.stats: list[BatchStats] = []
        self.batches: list[dict] = []

    def __call__(self, features: list[dict]) -> dict:
        batch = self.collate(features)
        if len(self.stats) >= self.limit:          # the end-of-training evaluation, after the timed window
            return batch
        self.stats.append(batch_stats(batch["attention_mask"]))
        if self.keep:
            self.batches.append({k: v for k, v in batch.items()})
        return batch


def _malloc_trim() -> None:
    """Give freed heap pages back to the OS so a run's RSS peak is its own (glibc only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class RunMemory:
    """One run's peak memory above what was in use before it: CUDA max_memory_allocated on a GPU, sampled
    RSS (train.PeakMemory) on a CPU. `mark_window_end` freezes the figure at the end of the timed window, so
    the end-of-training evaluation and checkpoint of tunebench's path are not counted."""

    def __init__(self, device: str):
        self.device = device
        self.base = torch.cuda.memory_allocated() if device == "cuda" else _rss()
        self.sampler = PeakMemory(device)
        self.window_peak_bytes: int | None = None

    def mark_window_end(self) -> None:
        now = torch.cuda.max_memory_allocated() if self.device == "cuda" else max(self.sampler.peak_bytes, _rss())
        self.window_peak_bytes = max(0, now - self.base)

    @property
    def peak_bytes(self) -> int:
        if self.window_peak_bytes is not None:
            return self.window_peak_bytes
        return max(0, self.sampler.peak_bytes - self.base)


@contextlib.contextmanager
def isolated_run(device: str) -> Iterator[RunMemory]:
    """Measure one run's memory (RunMemory) and restore the global torch settings it changes (the Trainer's
    full_determinism switches deterministic algorithms on for the whole process: train.torch_settings_kept)."""
    with torch_settings_kept():
        gc.collect()
        _malloc_trim()
        if device == "cuda":
            torch.cuda.empty_cache()
        mem = RunMemory(device)
        with mem.sampler:
            yield mem


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


# ---------------------------------------------------------------- the baselines


@dataclass
class RunOutput:
    timing: RunTiming
    trainer: Trainer
    batches: list[dict]          # collated batches (kept for tunebench, reused by the raw loop)


def _common_args(cfg: Config, device: str, out_dir: Path, steps: int) -> dict:
    """Hyper-parameters every Trainer baseline shares with tunebench's, so only the recipe differs (bf16
    autocast as the precision policy has it: every baseline trains under tunebench's policy)."""
    t = cfg.training
    return dict(
        output_dir=str(out_dir), max_steps=steps, per_device_train_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps, learning_rate=cfg.learning_rate,
        weight_decay=t.weight_decay, warmup_steps=t.warmup_ratio, lr_scheduler_type=t.lr_scheduler_type,
        max_grad_norm=t.max_grad_norm, seed=t.seed, bf16=resolve_policy(cfg, device).autocast, use_cpu=device == "cpu",
        save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
    )


def _timed_train(trainer: Trainer, clock: StepClock, rec: RecordingCollator, baseline: str, cfg: Config,
                 repeat: int) -> RunTiming:
    trainer.remove_callback(PrinterCallback)     # with tqdm off the Trainer prints log dicts; display only
    trainer.train()
    return RunTiming(baseline, cfg.method, repeat, clock.ends[-1], list(rec.stats), 0,
                     list(clock.ends), steps=len(clock.ends), cpu_s=clock.cpu_s)


def run_original(cfg: Config, data: BenchData, features: list[dict], out_dir: Path, device: str,
                 repeat: int, steps: int) -> RunOutput:
    """run_glue.py with --pad_to_max_length: padded at tokenization, default collator, random sampler."""
    padded = pad_to_max_length(features, data.tokenizer.pad_token_id, cfg.model.max_length)
    with isolated_run(device) as mem:
        model = build_model(cfg, data.task, data.tokenizer, device)
        args = TrainingArguments(**_common_args(cfg, device, out_dir, steps))
        rec, clock = RecordingCollator(default_data_collator, n_batches(cfg, features)), StepClock(device, mem)
        trainer = Trainer(model=model, args=args, data_collator=rec, train_dataset=to_dataset(padded),
                          processing_class=data.tokenizer, callbacks=[clock],
                          optimizer_cls_and_kwargs=policy_optimizer(resolve_policy(cfg, device), args))
        timing = _timed_train(trainer, clock, rec, "original", cfg, repeat)
    return RunOutput(replace(timing, peak_mem_bytes=mem.peak_bytes), trainer, [])


def run_trainer(cfg: Config, data: BenchData, features: list[dict], out_dir: Path, device: str,
                repeat: int, steps: int) -> RunOutput:
    """The best-practice Trainer: dynamic padding, length-grouped batches, every other setting default."""
    with isolated_run(device) as mem:
        model = build_model(cfg, data.task, data.tokenizer, device)
        args = TrainingArguments(**_common_args(cfg, device, out_dir, steps), train_sampling_strategy="group_by_length",
                                 length_column_name="length")
        rec = RecordingCollator(DataCollatorWithPadding(data.tokenizer), n_batches(cfg, features))
        clock = StepClock(device, mem)
        trainer = Trainer(model=model, args=args, data_collator=rec, train_dataset=to_dataset(features),
                          processing_class=data.tokenizer, callbacks=[clock],
                          optimizer_cls_and_kwargs=policy_optimizer(resolve_policy(cfg, device), args))
        timing = _timed_train(trainer, clock, rec, "trainer", cfg, repeat)
    return RunOutput(replace(timing, peak_mem_bytes=mem.peak_bytes), trainer, [])


def tunebench_config(cfg: Config, steps: int) -> Config:
    """tunebench's settings for a timed run: the configured ones, with in-loop evaluation past the last step."""
    return with_overrides(cfg, {"training.max_steps": steps, "training.eval_steps": steps + 1})


def build_tunebench_engine(cfg: Config, data: BenchData, features: list[dict], out_dir: Path, device: str,
                           extra: list[TrainerCallback], wrap_collator: Callable[[Callable], Callable] | None = None
                           ) -> Engine:
    """The engine train.train_and_evaluate runs, built by the same function (train.build_engine: model, args,
    collator, optimizer, callbacks, eval sampler) from `cfg` (tunebench_config's) under its precision policy,
    on `features`; the JSON-lines log callback first, as in a run, then `extra`."""
    callbacks: list[TrainerCallback] = [JsonlLogCallback(out_dir / "log.jsonl", NullTracker(), time.perf_counter())]
    return build_engine(cfg, data.task, data.tokenizer, to_dataset(features), data.eval_split, out_dir,
                        resolve_policy(cfg, device), device=device, callbacks=callbacks + extra,
                        wrap_collator=wrap_collator)


def run_tunebench(cfg: Config, data: BenchData, features: list[dict], out_dir: Path, device: str,
                  repeat: int, steps: int) -> RunOutput:
    tcfg = tunebench_config(cfg, steps)
    with isolated_run(device) as mem:
        clock = StepClock(device, mem)
        engine = build_tunebench_engine(tcfg, data, features, out_dir, device, [clock], wrap_collator=lambda c:
                                        RecordingCollator(c, n_batches(cfg, features), keep=True))
        rec = engine.collator
        timing = _timed_train(engine.trainer, clock, rec, "tunebench", cfg, repeat)
    return RunOutput(replace(timing, peak_mem_bytes=mem.peak_bytes), engine.trainer, rec.batches)


def run_raw(cfg: Config, data: BenchData, batches: list[dict], out_dir: Path, device: str,
            repeat: int, steps: int) -> RunOutput:
    """forward, backward, clip, optimizer and scheduler step: the same model, optimizer (built by the same
    Trainer code), precision and switches as tunebench, with no framework around them."""
    tcfg = tunebench_config(cfg, steps)
    ga = cfg.training.gradient_accumulation_steps
    with isolated_run(device) as mem:
        engine = build_tunebench_engine(tcfg, data, [], out_dir, device, [],   # batches built already: no collation
                                        wrap_collator=lambda _: default_data_collator)
        model, trainer = engine.model, engine.trainer
        trainer.create_optimizer_and_scheduler(num_training_steps=steps)
        fwd = prepare_raw_model(model, trainer.args)
        cpu0 = time.process_time()
        ends = raw_loop(fwd, trainer.optimizer, trainer.lr_scheduler, batches[:steps * ga], ga,
                        trainer.args, device)
        cpu_s = time.process_time() - cpu0
        mem.mark_window_end()
    stats = [batch_stats(b["attention_mask"]) for b in batches[:steps * ga]]
    timing = RunTiming("raw", cfg.method, repeat, ends[-1], stats, mem.peak_bytes, ends, steps=len(ends),
                       cpu_s=cpu_s)
    return RunOutput(timing, trainer, [])


def prepare_raw_model(model: torch.nn.Module, args: TrainingArguments) -> torch.nn.Module:
    """Apply the switches the Trainer applies in train(): Liger kernels, activation checkpointing, compile."""
    if args.use_liger_kernel:
        from transformers.integrations.liger import apply_liger_kernel

        apply_liger_kernel(model, args.liger_kernel_config)
    if getattr(args, CHECKPOINTING):
        enable = getattr(model, f"{CHECKPOINTING}_enable")
        enable(**{f"{CHECKPOINTING}_kwargs": getattr(args, f"{CHECKPOINTING}_kwargs")})
    model.train()
    return torch.compile(model) if args.torch_compile else model


def raw_loop(model, optimizer, scheduler, batches: list[dict], ga: int, args: TrainingArguments,
             device: str) -> list[float]:
    """The training loop with nothing else: returns each optimizer step's end time from the start."""
    params = [p for p in model.parameters() if p.requires_grad]
    autocast = torch.autocast(device, dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()
    ends = []
    sync_device(device)
    t0 = time.perf_counter()
    for start in range(0, len(batches), ga):
        for batch in batches[start:start + ga]:
            inputs = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with autocast:
                loss = model(**inputs).loss
            (loss / ga).backward()
        torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if start + ga >= len(batches):
            sync_device(device)
        ends.append(time.perf_counter() - t0)
    return ends


# ---------------------------------------------------------------- one method, all baselines


def flop_params_of(model: torch.nn.Module) -> FlopParams:
    cfg = model.config
    named = ((n, p.numel(), p.requires_grad) for n, p in model.named_parameters())
    return count_flop_params(named, cfg.num_hidden_layers, cfg.hidden_size)


def measure_method(cfg: Config, data: BenchData, baselines: list[str], steps: int, warmup_steps: int,
                   repeats: int, device: str, work: Path, progress: Progress) -> dict:
    """Warm-up round, then `repeats` interleaved rounds; the summary of each baseline and the ratios."""
    order = [b for b in RUN_ORDER if b in baselines]
    model = build_model(cfg, data.task, data.tokenizer, device)
    params = flop_params_of(model)
    # tunebench's thread choice (train.set_cpu_threads) holds for every baseline: they differ in recipe only
    threads = set_cpu_threads(cfg, sum(p.numel() for p in model.parameters()), device)
    del model
    runs: dict[str, list[RunTiming]] = {b: [] for b in order}
    if warmup_steps:
        progress(f"{cfg.method}: warm-up round ({warmup_steps} steps each)")
        _round(cfg, data, order, data.warmup, warmup_steps, device, work, -1, {})
    captured: dict[str, list[dict]] = {}
    for r in range(repeats):
        round_order = order if r % 2 == 0 else order[::-1]
        progress(f"{cfg.method}: round {r + 1}/{repeats} ({' -> '.join(round_order)})")
        for name, timing in _round(cfg, data, round_order, data.timed, steps, device, work, r, captured).items():
            runs[name].append(timing)
    peak = peak_flops(torch.cuda.get_device_name(0)) if device == "cuda" else None
    summaries = [summarize(runs[b], params, peak) for b in order]
    ratios = paired_speedups(runs)
    mean_len = summaries[-1].mean_padded_len if summaries else 0.0
    return {
        "cpu_threads": threads,
        "params": {"non_embedding_frozen": params.frozen, "non_embedding_trainable": params.trainable,
                   "n_layers": params.n_layers, "d_model": params.d_model},
        "flops_per_token": {s.baseline: train_flops_per_token(params, s.mean_padded_len) for s in summaries},
        "mean_padded_len": mean_len,
        "baselines": {s.baseline: s.as_dict() for s in summaries},
        "step_end_s": {b: runs[b][0].step_end_s for b in order},
        "speedups": ratios,                                        # paired per round, median
        "speedups_of_medians": speedups(summaries),                # median tokens/s over median tokens/s
        "speedups_cpu_time": speedups(summaries, key="tokens_per_cpu_s"),
        "targets": check_targets(cfg.task, ratios),
        "same_tokens": tokens_identical(summaries),
    }


def _round(cfg: Config, data: BenchData, order: list[str], features: list[dict], steps: int, device: str,
           work: Path, repeat: int, captured: dict[str, list[dict]]) -> dict[str, RunTiming]:
    """One run of each baseline in `order`; tunebench's batches are kept for the raw loop (per feature set)."""
    key = "timed" if features is data.timed else "warmup"
    out = {}
    for name in order:
        run_dir = work / f"{cfg.method}-{name}-{repeat}"
        if name == "raw":
            batches = captured.get(key) or build_grouped_batches(cfg, data, features, steps)
            res = run_raw(cfg, data, batches, run_dir, device, repeat, steps)
        else:
            runner = {"original": run_original, "trainer": run_trainer, "tunebench": run_tunebench}[name]
            res = runner(cfg, data, features, run_dir, device, repeat, steps)
            if name == "tunebench":
                captured.setdefault(key, res.batches)
        out[name] = res.timing
        del res
    return out


def build_grouped_batches(cfg: Config, data: BenchData, features: list[dict], steps: int) -> list[dict]:
    """tunebench's batches without running it (raw without tunebench): length-grouped, dynamically padded."""
    from transformers.trainer_pt_utils import get_length_grouped_indices

    bs = cfg.training.per_device_train_batch_size
    lengths = [f["length"] for f in features]
    gen = torch.Generator().manual_seed(cfg.training.seed)
    order = get_length_grouped_indices(lengths, bs, generator=gen) if cfg.training.group_by_length \
        else torch.randperm(len(features), generator=gen).tolist()
    collate = build_collator(cfg, data.tokenizer)               # the engine's collator
    cols = model_columns(features)
    batches = []
    for i in range(0, len(order), bs):
        batch = collate([{k: v for k, v in cols[j].items() if k != "length"} for j in order[i:i + bs]])
        batches.append(dict(batch))
    return batches[: steps * cfg.training.gradient_accumulation_steps]


# ---------------------------------------------------------------- padding, accuracy, eval share


def padding_invariance(cfg: Config, data: BenchData, device: str, n: int = 16) -> dict:
    """Logits of the same examples, dynamically padded vs right-padded to max_length (the classifier reads
    the last non-pad token; causal attention never lets a real token see a right pad)."""
    if data.task.is_qa:
        return {"checked": False, "reason": "classification only"}
    model = build_model(cfg, data.task, data.tokenizer, device).eval()
    feats = [{k: v for k, v in f.items() if k in ("input_ids", "attention_mask")}
             for f in data.splits["test"].features[-n:]]          # the shortest: the most padding
    dynamic = DataCollatorWithPadding(data.tokenizer)(feats)
    padded = default_data_collator(pad_to_max_length(feats, data.tokenizer.pad_token_id, cfg.model.max_length))
    with torch.no_grad(), resolve_policy(cfg, device).autocast_context(device):   # as the runs compute
        a = model(**{k: v.to(device) for k, v in dynamic.items()}).logits.float()
        b = model(**{k: v.to(device) for k, v in padded.items()}).logits.float()
    diff = float((a - b).abs().max())
    return {"checked": True, "examples": len(feats), "max_abs_logit_diff": diff,
            "same_predictions": bool((a.argmax(-1) == b.argmax(-1)).all()),
            "padded_len": int(padded["input_ids"].shape[1]), "dynamic_len": int(dynamic["input_ids"].shape[1])}


def measure_accuracy(cfg: Config, data: BenchData, device: str, work: Path, progress: Progress,
                     seeds: Sequence[int] = ()) -> dict:
    """original vs tunebench trained for the configured epochs on the whole (sub-sampled) train split with
    each seed, each final model scored on the test split (the official dev) its own way (original: padded,
    tunebench: dynamic). The verdict compares the means over seeds: one seed's gap is mostly batch order.

    SQuAD v2: each model's null threshold is chosen on the validation split (scored the same way) and applied
    to test, as tunebench.train.train_and_evaluate does; choosing it on test would tune on the test answers.
    Each run records it as `null_threshold`; `eval_s` times the test evaluation only."""
    features = data.splits["train"].features
    steps = _epoch_steps(cfg, len(features))
    test = data.splits["test"]
    qa = data.task.is_qa

    def padded(split: Split) -> Split:
        return Split(split.records, pad_to_max_length(split.features, data.tokenizer.pad_token_id,
                                                      cfg.model.max_length))

    scored = {"tunebench": {"test": test}, "original": {"test": padded(test)}}
    if qa:
        scored["tunebench"]["validation"] = data.splits["validation"]
        scored["original"]["validation"] = padded(data.splits["validation"])
    metric = "f1" if qa else data.task.primary_metric
    seeds = list(seeds) or [cfg.training.seed]
    runs: dict[str, list[dict]] = {"original": [], "tunebench": []}
    for seed in seeds:
        scfg = with_overrides(cfg, {"training.seed": seed})
        for name, runner in (("original", run_original), ("tunebench", run_tunebench)):
            progress(f"{cfg.method}: accuracy run, {name}, seed {seed} ({steps} steps)")
            feats = _epochs_of(scfg, features, steps)
            res = runner(scfg, data, feats, work / f"acc-{cfg.method}-{name}-{seed}", device, 0, steps)
            threshold = None
            if qa:   # chosen on validation, never on test
                _, _, threshold = evaluate_split(res.trainer, data.task, scored[name]["validation"], scfg)
            t0 = time.perf_counter()
            metrics, _, _ = evaluate_split(res.trainer, data.task, scored[name]["test"], scfg, threshold)
            run = {"seed": seed, "test": metrics, "train_s": res.timing.elapsed_s,
                   "eval_s": time.perf_counter() - t0,
                   "tokens_per_s": res.timing.non_pad_tokens / res.timing.elapsed_s}
            runs[name].append({**run, "null_threshold": threshold} if qa else run)
            del res
            shutil.rmtree(work / f"acc-{cfg.method}-{name}-{seed}", ignore_errors=True)   # its checkpoint
    return {"train_examples": len(features), "epochs": cfg.training.num_train_epochs, "steps": steps,
            "test_examples": len(test.records), "metric": metric, "seeds": seeds, "runs": runs,
            **accuracy_verdict({k: [r["test"][metric] for r in v] for k, v in runs.items()},
                               scale=data.task.points_scale)}


def _epoch_steps(cfg: Config, n_examples: int) -> int:
    per_epoch = max(1, n_examples // examples_per_step(cfg))
    return max(1, round(per_epoch * cfg.training.num_train_epochs))


def _epochs_of(cfg: Config, features: list[dict], steps: int) -> list[dict]:
    """The train features repeated in seeded shuffles until they fill `steps` steps (one timed 'epoch')."""
    n = steps * examples_per_step(cfg)
    rng = np.random.default_rng(cfg.training.seed)
    order: list[int] = []
    while len(order) < n:
        order += rng.permutation(len(features)).tolist()
    return [features[i] for i in order[:n]]


def measure_eval_share(cfg: Config, data: BenchData, steps: int, step_time_s: float | None, work: Path) -> dict:
    """A short run of tunebench's engine itself (train_and_evaluate) with evaluation every steps/2 steps, and
    the share evaluation would take in a whole run with the configured epochs and eval_steps."""
    ecfg = with_overrides(cfg, {"training.max_steps": steps, "training.eval_steps": max(1, steps // 2),
                                "tracking.backend": "none"})
    res = train_and_evaluate(ecfg, work / f"eval-share-{cfg.method}", NullTracker(), resume=False)
    f, sizes = res.fields, {k: len(v.features) for k, v in data.splits.items()}
    # the final validation pass is the restored checkpoint's in-loop pass (timing.validation_reused): no
    # examples, though eval_s keeps its scoring (SQuAD post-processing; well under a second here)
    final_n = sizes["test"] + min(cfg.training.eval_train_examples, sizes["train"])
    ran_validation = 0 if f["timing"].get("validation_reused") else sizes["validation"]
    evaluated = math.ceil(steps / ecfg.training.eval_steps) * sizes["validation"] + ran_validation + final_n
    out = {"steps": f["steps"], "eval_steps": ecfg.training.eval_steps, "timing": f["timing"],
           "evaluated_examples": evaluated, "eval_examples_per_s": evaluated / max(f["timing"]["eval_s"], 1e-9),
           "tokens_per_s": f["tokens"]["tokens_per_s"]}
    if step_time_s:
        out["projected_full_run"] = {"eval_steps": cfg.training.eval_steps, **project_eval_share(
            train_examples=sizes["train"], examples_per_step=examples_per_step(cfg),
            epochs=cfg.training.num_train_epochs, eval_steps=cfg.training.eval_steps, step_time_s=step_time_s,
            eval_s_per_example=1 / out["eval_examples_per_s"], validation_examples=sizes["validation"],
            final_eval_examples=final_n, max_steps=cfg.training.max_steps)}
    return out


def compare_threads(cfg: Config, data: BenchData, steps: int, device: str, work: Path, chosen: int | None) -> dict:
    """tunebench's path at torch's default intra-op threads vs the count tunebench chose (interleaved)."""
    if device != "cpu" or chosen is None:
        return {}
    out = {"default_threads": DEFAULT_THREADS, "chosen_threads": chosen}
    for label, n in (("chosen", chosen), ("default", DEFAULT_THREADS), ("chosen_again", chosen)):
        torch.set_num_threads(n)
        res = run_tunebench(cfg, data, data.timed, work / f"threads-{cfg.method}-{label}", device, 0, steps)
        out[f"tokens_per_s_{label}"] = res.timing.non_pad_tokens / res.timing.elapsed_s
    torch.set_num_threads(chosen)
    out["speedup"] = min(out["tokens_per_s_chosen"], out["tokens_per_s_chosen_again"]) / out["tokens_per_s_default"]
    return out


# ---------------------------------------------------------------- the whole benchmark


def environment(device: str) -> dict:
    """A run's environment (tunebench.system.environment: machine, python, platform, git revision, package
    versions) with the benchmark's device keys: `device` is the device kind, `device_name` the machine's."""
    env = system_environment()
    return {**env, "device": device, "device_name": env["device"], "cpu_count": os.cpu_count(),
            "torch": torch.__version__}


def switches(cfg: Config, device: str) -> dict:
    """The speed settings of tunebench's path, as they take effect on this device."""
    t = cfg.training
    policy = resolve_policy(cfg, device)
    return {"precision": policy.name, "dtype": dtype_name(policy.trainable_dtype), "bf16_autocast": policy.autocast,
            "attn_implementation": cfg.model.attn_implementation, "optim": t.optim,
            "gradient_checkpointing": t.gradient_checkpointing, "torch_compile": t.torch_compile,
            "liger_kernels": t.liger_kernels, "pad_to_multiple_of": t.pad_to_multiple_of,
            "group_by_length": t.group_by_length, "deterministic": t.deterministic,
            "per_device_train_batch_size": t.per_device_train_batch_size,
            "gradient_accumulation_steps": t.gradient_accumulation_steps, "max_length": cfg.model.max_length}


def run_bench(cfg: Config, methods: list[str], baselines: list[str], steps: int, repeats: int = 3,
              warmup_steps: int = 5, accuracy: bool = False, eval_share_steps: int = 0, threads: bool = False,
              progress: Progress = lambda s: None, accuracy_seeds: Sequence[int] = ()) -> dict:
    device = resolve_device()
    check_switches(cfg, device)
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    data = load_bench_data(cfg, steps, warmup_steps)
    report: dict[str, Any] = {
        "schema": 1, "task": cfg.task, "model": cfg.model.name, "steps": steps, "repeats": repeats,
        "warmup_steps": warmup_steps, "timed_examples": len(data.timed), "env": environment(device),
        "switches": switches(cfg, device), "baselines_run": [b for b in RUN_ORDER if b in baselines],
        "methods": {},
    }
    with tempfile.TemporaryDirectory(prefix="tunebench-bench-") as tmp:
        work = Path(tmp)
        report["padding_invariance"] = padding_invariance(cfg, data, device)
        for method in methods:
            mcfg = with_overrides(cfg, {"method": method})
            entry = measure_method(mcfg, data, baselines, steps, warmup_steps, repeats, device, work, progress)
            if threads:
                progress(f"{method}: thread comparison")
                entry["threads"] = compare_threads(mcfg, data, steps, device, work, entry["cpu_threads"])
            if eval_share_steps:
                progress(f"{method}: eval-share run ({eval_share_steps} steps)")
                step_time = entry["baselines"].get("tunebench", {}).get("step_time_s")
                entry["eval_share"] = measure_eval_share(mcfg, data, eval_share_steps, step_time, work)
            if accuracy:
                entry["accuracy"] = measure_accuracy(mcfg, data, device, work, progress, accuracy_seeds)
            report["methods"][method] = entry
    report["wall_s"] = time.perf_counter() - t0
    report["load_avg"] = {"start": list(load_start), "end": list(os.getloadavg())}
    return report
