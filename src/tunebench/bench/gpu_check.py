"""`tunebench bench --gpu-check OUT_DIR`: one prepared check of tunebench's GPU path, for a CUDA machine with no
network, that ends within about 5 minutes on one H100/H200-class GPU (short enough to leave room for a second
try). It writes `gpu_check.json` and `gpu_check.log` into OUT_DIR (atomically, rewritten after every part, so a
killed check still leaves what it measured) and, after the real runs, their report's `report.html`
and `summary.md`: nothing else. Its scratch (Trainer folders, the real runs, their data) lives outside OUT_DIR
from the start, in a temporary folder (`tunebench-gpu-check-<pid>-*` under TMPDIR) removed when the check ends,
fails or is stopped by a signal; one left by a check killed with SIGKILL is removed by the next check. The
torch.compile child ends with the check however it ends (tunebench.bench.child).

Parts, in the order they run (so that what matters most is measured first):

- `sdpa`: which scaled-dot-product-attention backends run here (each alone under `sdpa_kernel`, causal and
  with a padding mask) and which one SDPA picks, with deterministic algorithms off and on.
- `sanity`: per method, the gradient-flow and overfit-one-batch checks (`tunebench.sanity`) on 32
  random-token examples.
- `throughput`: per method, the study's batch (4 x 512) through the engine's Trainer: step time, tokens/s,
  peak memory, MFU, the dtypes it trained with, and the SDPA ops and kernels of one profiled step.
- `real_run`: a real checkpoint (`--gpu-check-model`) trained through `tunebench.runner.run_one` on RTE
  (`--gpu-check-glue`, else the builtin task), both methods, then `tunebench report` on those runs.
- `batch_search`: per method, the largest power-of-two per-device batch that fits: it starts from and stops
  at the largest one that `tunebench.plan.memory`'s estimate says fits the memory free on the device (up to a
  cap), and halves after an out-of-memory error; the estimate's peak is recorded beside the measured one.
- `variants`: per method at the study's batch, `training.deterministic` flipped and
  `training.gradient_checkpointing` on.
- `torch_compile`: `training.torch_compile=true` in a child process, killed when its budget runs out; LoRA
  first (the cheaper compilation), then full fine-tuning while time is left.

The model of parts 1-3 and 5-7 is the study's architecture (Sheared-LLaMA-1.3B's shapes, from
`plan.cost.KNOWN_MODELS`) at random initialization, built by the engine's own path: `model.name=tiny` with
`model.tiny.*` set to those shapes, and `train.build_model` (on CUDA inside a `torch.device` context, so the
1.3B weights are initialized on the GPU instead of the CPU, where one build took 17 s on 2 cores). Examples are
synthetic: random token ids (special ids excluded), full length, no padding, random labels; the task head is
RTE's (2 labels). Precision: `bf16-mixed` (fp32 weights and optimizer state, bf16 autocast).

Timing: each measurement builds a fresh model and engine (`train.build_engine`, the function a run's engine
is built by, in-loop evaluation moved past the last step) and times only the steps after `warmup`
of them: the clock is synchronized at the end of the last warm-up step and of the last timed step. Tokens/s
counts every token (there is no padding); MFU follows `tunebench.bench.formulas` (PaLM: 6N + 12LdT per token for full
fine-tuning, 4N_frozen + 6N_trainable + 12LdT for LoRA, over the dense bf16 peak of `PEAK_BF16_FLOPS`);
peak memory is CUDA `max_memory_allocated` above what was allocated before the model was built, up to the
end of the timed window (model, gradients, optimizer state and activations).

Time budget: a total (default 255 s for the GPU check) and a share per part, the shares adding up to the
total (scaled down with it when `--gpu-check-budget` gives less); a part gets the smaller of its share and what
is left of the total, and the last one (torch_compile) all that is left. Before each measurement its duration
is estimated from what was already measured, and a measurement that would not fit is skipped and recorded as
skipped (with the reason): the check always ends with a complete JSON. `--smoke` runs the same code on the CPU
in seconds with a tiny shape.

Determinism: `training.deterministic=true` (the study's default) switches on deterministic algorithms, which
on CUDA need CUBLAS_WORKSPACE_CONFIG set before cuBLAS first runs (torch reads it once: transformers setting
it when a Trainer starts is too late once anything ran a matmul). The check sets it to `:4096:8` first thing
(benchmarks/gpu_check.sh exports it before Python starts) and records in `env.determinism` whether it was set
before CUDA was initialised; the sanity checks run under deterministic algorithms too when the config asks
for them, as the Trainer's runs do.

Overfitting a random-init model on random tokens and random labels: 32 distinct random sequences give 32
distinct final hidden states, so memorizing the labels is a question of moving the head (LoRA: the head and
the adapters; full fine-tuning: every weight) far enough, and AdamW's first steps move every trained weight by
about lr. Measured on the CPU at the study's width (hidden 2048, 16 heads, MLP 5504, vocab 32000; 2 and 8
layers, 32 x 4-8 tokens, fp32): LoRA at lr 1e-3 reached loss < 0.05 with 100% accuracy in 2-3 steps, full
fine-tuning at 1e-4 (and at 1e-3) in 2. The GPU check uses LoRA 1e-3 and full fine-tuning 1e-4 with a cap of
40 steps, and tries 3e-4 / 3e-5 when the first rate misses (a 24-layer model may overshoot at the first);
the smoke shape (hidden 64) needs 1e-2 / 3e-3 (6-7 steps). These rates probe the model; they are not the
study's learning rates. The probe trains through the engine a run builds (`sanity.overfit_batch`:
`train.build_engine` at a constant rate, with the run's optimizer and gradient clipping); the study-width
figures above were measured with the hand-written loop it replaced, the smoke shape's again through the engine
(6 steps each).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from tunebench.bench import child
from tunebench.bench.formulas import BatchStats, format_bytes, train_flops
from tunebench.bench.measure import sync_device
from tunebench.config import (
    METHODS,
    Config,
    ModelConfig,
    TinyModelConfig,
    get_dotted,
    validate_config,
    with_overrides,
)
from tunebench.data.tasks import TaskSpec, get_task
from tunebench.errors import TunebenchError
from tunebench.flops import peak_flops
from tunebench.io import atomic_write_json, atomic_write_text
from tunebench.system import exception_line, free_memory, is_out_of_memory, pid_alive

JSON_FILE = "gpu_check.json"
LOG_FILE = "gpu_check.log"
REPORT_FILES = ("report.html", "summary.md")   # copied from the real runs' report into OUT_DIR
SCRATCH_PREFIX = "tunebench-gpu-check-"     # + the check's pid: its scratch folder under TMPDIR
MARKER = ".gpu_check"                       # marks a scratch folder this check created (and may therefore clear)
CUBLAS_WORKSPACE = ":4096:8"                # CUBLAS_WORKSPACE_CONFIG for deterministic cuBLAS
SYNTHETIC_TASK = "rte"                      # the study's task with the longest examples; 2 labels
STUDY_MODEL = ModelConfig().name            # princeton-nlp/Sheared-LLaMA-1.3B
PARTS = ("sdpa", "sanity", "throughput", "task_lengths", "real_run", "batch_search", "variants", "torch_compile")

# The study's throughput and memory targets, evaluated on the measured figures (never asserted).
TARGETS = {
    "full_mfu": {"what": "full fine-tuning MFU at the study's batch", "op": ">=", "threshold": 0.45},
    "lora_tokens_per_s_over_full": {"what": "LoRA tokens/s / full fine-tuning tokens/s", "op": ">=", "threshold": 1.3},
    "lora_peak_memory_over_full": {"what": "LoRA peak memory / full fine-tuning peak memory", "op": "<=",
                                   "threshold": 0.5},
}


def study_shape() -> dict[str, int]:
    """The study model's shapes as `model.tiny.*` keys (from plan.cost.KNOWN_MODELS, the one place they live)."""
    from tunebench.plan.cost import KNOWN_MODELS

    known = KNOWN_MODELS[STUDY_MODEL]
    return {k: known[k] for k in TinyModelConfig.model_fields if k in known}


@dataclass(frozen=True)
class Mode:
    """The sizes, step counts and time budgets of one kind of check (the GPU check or the CPU smoke run)."""

    name: str                                   # "gpu" | "smoke"
    tiny: dict[str, Any]                        # model.tiny.* of the synthetic model
    max_length: int | None                      # None: the config's model.max_length (the study's 512)
    precision: str                              # training.precision of every part
    sanity_examples: int
    sanity_len: int                             # tokens per overfitting example
    overfit_steps: int                          # the cap on overfitting steps (per learning rate)
    overfit_lrs: dict[str, tuple[float, ...]]   # tried in order until one reaches the loss target
    loss_target: float
    warmup_steps: int                           # untimed steps before the study-batch measurement
    timed_steps: int
    search_warmup: int                          # the same for each batch of the search and each variant
    search_timed: int
    batch_cap: int
    run_steps: int                              # the real run's training.max_steps
    run_eval_steps: int
    run_overrides: dict[str, Any]               # more settings of the real run (smoke: small builtin splits)
    total_budget_s: float
    part_budget_s: dict[str, float]             # adding up to at most total_budget_s; the last part gets the rest
    min_start_s: dict[str, float]               # a part does not start with less than this left
    compile_in_child: bool                      # False (smoke): the child runs without torch.compile
    compile_methods: tuple[str, ...]            # in this order, while the budget lasts (the cheaper first)
    sdpa_iters: int


GPU = Mode(
    name="gpu", tiny=study_shape(), max_length=None, precision="bf16-mixed",
    sanity_examples=32, sanity_len=128, overfit_steps=40,
    overfit_lrs={"lora": (1e-3, 3e-4), "full": (1e-4, 3e-5)}, loss_target=0.05,
    warmup_steps=5, timed_steps=20, search_warmup=2, search_timed=4, batch_cap=64,
    run_steps=200, run_eval_steps=50, run_overrides={},
    total_budget_s=255.0,
    part_budget_s={"sdpa": 10, "sanity": 35, "throughput": 30, "task_lengths": 25, "real_run": 60,
                   "batch_search": 30, "variants": 25, "torch_compile": 40},
    min_start_s={"sdpa": 2, "sanity": 10, "throughput": 10, "task_lengths": 8, "real_run": 20, "batch_search": 10,
                 "variants": 8, "torch_compile": 30},
    compile_in_child=True, compile_methods=("lora", "full"), sdpa_iters=10,
)

SMOKE = Mode(
    name="smoke", tiny={"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                        "intermediate_size": 128, "vocab_size": None},
    max_length=32, precision="32-true",
    sanity_examples=32, sanity_len=16, overfit_steps=60,
    overfit_lrs={"lora": (1e-2, 3e-3), "full": (3e-3, 1e-3)}, loss_target=0.05,
    warmup_steps=1, timed_steps=3, search_warmup=1, search_timed=2, batch_cap=8,
    run_steps=10, run_eval_steps=5,
    run_overrides={"model.max_length": 64, "data.builtin_train_size": 120, "data.builtin_test_size": 40,
                   "data.validation_size": 24, "training.eval_train_examples": 16},
    total_budget_s=360.0,
    part_budget_s={"sdpa": 20, "sanity": 60, "throughput": 40, "task_lengths": 30, "real_run": 90,
                   "batch_search": 20, "variants": 40, "torch_compile": 60},
    min_start_s={p: 1 for p in PARTS},
    compile_in_child=False, compile_methods=("lora",), sdpa_iters=2,
)


# ---------------------------------------------------------------- time budget


class Budget:
    """The whole check's time budget: a part gets the smaller of its own share and what is left of the total."""

    def __init__(self, total_s: float, clock: Callable[[], float] = time.perf_counter):
        self.clock, self.total_s = clock, total_s
        self.start = clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def remaining(self) -> float:
        return self.total_s - self.elapsed()

    def part(self, share_s: float, rest: bool = False) -> PartBudget:
        """A part's budget: its share, or all that is left of the total when `rest` (the last part)."""
        left = self.remaining()
        return PartBudget(self.clock, self.clock() + max(0.0, left if rest else min(share_s, left)))


@dataclass
class PartBudget:
    clock: Callable[[], float]
    deadline: float
    skipped: list[str] = field(default_factory=list)   # what this part left out for lack of time

    def left(self) -> float:
        return self.deadline - self.clock()

    def fits(self, estimate_s: float, what: str) -> bool:
        """Whether a measurement estimated at `estimate_s` can start; when not, it is recorded as skipped."""
        if estimate_s <= self.left():
            return True
        self.skipped.append(f"{what}: skipped, time budget ({self.left():.0f} s left, needs about {estimate_s:.0f} s)")
        return False


# ---------------------------------------------------------------- the log


class CheckLog:
    """Progress lines with the time since the start: to stderr as they come, and into gpu_check.log (the whole
    text rewritten atomically on each flush)."""

    def __init__(self, path: Path, echo: Callable[[str], None] | None = None):
        self.path, self.echo = path, echo
        self.t0 = time.perf_counter()
        self.lines: list[str] = []

    def __call__(self, message: str) -> None:
        for i, text in enumerate(message.splitlines() or [""]):
            line = f"[{time.perf_counter() - self.t0:7.1f}s] {text}" if i == 0 else f"           {text}"
            self.lines.append(line)
            if self.echo is not None:
                self.echo(line)

    def flush(self) -> None:
        atomic_write_text(self.path, "\n".join(self.lines) + "\n")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def device_name(device: str) -> str:
    from tunebench.bench.measure import environment

    return environment(device)["device_name"]


# ---------------------------------------------------------------- synthetic data


def special_ids_floor(tokenizer) -> int:
    """The lowest id above every special token (the tiny tokenizer's specials are 0-2, pad = eos = 2)."""
    return 1 + max(tokenizer.all_special_ids, default=-1)


def synthetic_features(n: int, length: int, vocab: int, low: int, num_labels: int, seed: int) -> list[dict]:
    """n full-length examples of random token ids in [low, vocab) with random labels (no padding)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(low, vocab, size=(n, length))
    labels = rng.integers(0, num_labels, size=n)
    return [{"input_ids": row.tolist(), "attention_mask": [1] * length, "labels": int(y), "length": length}
            for row, y in zip(ids, labels, strict=True)]


def synthetic_batch(n: int, length: int, vocab: int, low: int, num_labels: int, seed: int) -> dict:
    """One (n, length) batch of random tokens with balanced, shuffled labels (for the sanity checks)."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % num_labels)[torch.randperm(n, generator=g)]
    return {"input_ids": torch.randint(low, vocab, (n, length), generator=g),
            "attention_mask": torch.ones(n, length, dtype=torch.long), "labels": labels}


# ---------------------------------------------------------------- building the model


def _device_context(device: str):
    return torch.device(device) if device == "cuda" else contextlib.nullcontext()


def build_on_device(cfg: Config, task: TaskSpec, tokenizer, device: str, policy) -> torch.nn.Module:
    """train.build_model, with the random weights created on the GPU itself (a torch.device context): the same
    function and seeds, without initializing 1.3B parameters on the CPU and copying them over."""
    from tunebench.train import build_model

    with _device_context(device):
        return build_model(cfg, task, tokenizer, device, policy)


def load_base_on_device(cfg: Config, task: TaskSpec, tokenizer, device: str, policy) -> torch.nn.Module:
    """The model before the method transform, loaded as train.build_model loads it (seeded, the policy's
    frozen-weight dtype): what sanity.overfit_batch takes."""
    from transformers import set_seed

    from tunebench.model import load_model

    with _device_context(device):
        set_seed(cfg.training.seed)
        return load_model(cfg, task, tokenizer, device, dtype=policy.frozen_dtype)


# ---------------------------------------------------------------- SDPA


SDPA_OP_BACKENDS = (("_scaled_dot_product_flash_attention", "flash"),
                    ("_scaled_dot_product_efficient_attention", "efficient"),
                    ("_scaled_dot_product_cudnn_attention", "cudnn"),
                    ("_scaled_dot_product_fused_attention_overrideable", "overrideable"),
                    ("_scaled_dot_product_attention_math", "math"))
KERNEL_MARKERS = ("flash", "fmha", "sdpa", "cudnn", "attention", "attn")


def _sdpa_backends() -> dict[str, Any]:
    from torch.nn.attention import SDPBackend

    return {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "cudnn": getattr(SDPBackend, "CUDNN_ATTENTION", None), "math": SDPBackend.MATH}


def _sdp_choice(q, k, v, attn_mask=None, is_causal=False) -> str:
    """The backend SDPA picks for these inputs with every backend allowed (torch's own selection, private API)."""
    try:
        chosen = int(torch._fused_sdp_choice(q, k, v, attn_mask, 0.0, is_causal))
    except Exception as e:  # noqa: BLE001 -- a private API: report what it said instead of failing the part
        return f"unknown ({exception_line(e)})"
    names = {int(b): n for n, b in _sdpa_backends().items() if b is not None}
    return names.get(chosen, f"backend {chosen}")


def _time_attention(q, k, v, kwargs: dict, iters: int, device: str) -> float:
    """Milliseconds per forward + backward of one attention call (after one untimed call)."""
    import torch.nn.functional as F

    def once():
        q.grad = k.grad = v.grad = None
        F.scaled_dot_product_attention(q, k, v, **kwargs).float().sum().backward()

    once()
    sync_device(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        once()
    sync_device(device)
    return 1000 * (time.perf_counter() - t0) / iters


def probe_sdpa(device: str, dtype: torch.dtype, batch: int, heads: int, seq: int, head_dim: int,
               iters: int) -> dict:
    """Each SDPA backend alone (torch.nn.attention.sdpa_kernel) on the model's attention shapes, causal (what a
    batch without padding runs: transformers passes is_causal and no mask) and with a boolean padding mask
    (dynamic padding), forward + backward; and the backend SDPA picks, with deterministic algorithms on and off."""
    from torch.nn.attention import sdpa_kernel

    g = torch.Generator(device=device).manual_seed(0)
    q, k, v = (torch.randn(batch, heads, seq, head_dim, device=device, dtype=dtype, generator=g).requires_grad_()
               for _ in range(3))
    keep = torch.ones(batch, seq, dtype=torch.bool, device=device)
    keep[batch // 2:, seq * 3 // 4:] = False            # half of the batch right-padded by a quarter
    mask = torch.ones(seq, seq, dtype=torch.bool, device=device).tril()[None, None] & keep[:, None, None, :]
    cases = {"causal": {"is_causal": True}, "padding_mask": {"attn_mask": mask}}
    out: dict[str, Any] = {"shape": {"batch": batch, "heads": heads, "seq": seq, "head_dim": head_dim,
                                     "dtype": str(dtype).removeprefix("torch.")}}
    for case, kwargs in cases.items():
        res: dict[str, Any] = {"chosen": _sdp_choice(q, k, v, kwargs.get("attn_mask"), kwargs.get("is_causal", False))}
        saved = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
        try:
            torch.use_deterministic_algorithms(True, warn_only=True)
            res["chosen_deterministic"] = _sdp_choice(q, k, v, kwargs.get("attn_mask"),
                                                      kwargs.get("is_causal", False))
        finally:
            torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        for name, backend in _sdpa_backends().items():
            if backend is None:
                res[name] = {"ok": False, "error": "not in this torch"}
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    with sdpa_kernel([backend]):
                        res[name] = {"ok": True, "fwd_bwd_ms": _time_attention(q, k, v, kwargs, iters, device)}
                except RuntimeError as e:
                    why = [str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip()]
                    res[name] = {"ok": False, "error": exception_line(e), "why": why[:3]}
        res["runs"] = [n for n in _sdpa_backends() if res.get(n, {}).get("ok")]
        out[case] = res
    del q, k, v, mask
    free_memory()
    return out


def sdpa_from_profile(keys: list[str]) -> dict:
    """The SDPA ops and attention kernels in the names of a profiled step, and the backend they show."""
    ops = sorted({k for k in keys if "scaled_dot_product" in k})
    kernels = sorted({k for k in keys if not k.startswith("aten::") and "scaled_dot_product" not in k
                      and any(m in k.lower() for m in KERNEL_MARKERS)},
                     key=lambda k: (not any(m in k.lower() for m in ("kernel", "fmha", "cudnn")), k))  # GPU first
    used = sorted({name for op in ops for marker, name in SDPA_OP_BACKENDS if marker in op})
    return {"backends": used, "ops": ops, "kernels": [k[:160] for k in kernels[:12]]}


# ---------------------------------------------------------------- one timed training run


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


# ---------------------------------------------------------------- the batch search


def memory_batch_plan(cfg: Config, vocab: int, policy, usable_bytes: int, start: int, cap: int) -> dict:
    """The largest power-of-two multiple of `start` (the study's batch, known to fit) up to `cap` whose peak,
    as tunebench.plan.memory estimates it for this config, leaves RESERVE_BYTES of `usable_bytes` free: where
    the batch search starts and stops. `limited_by` says whether the cap or the estimate set it."""
    from tunebench.plan.cost import tiny_size
    from tunebench.plan.memory import RESERVE_BYTES, estimate_memory

    size = tiny_size(cfg.model, vocab)
    t = cfg.training
    peaks: dict[str, int] = {}
    largest, limited_by, b = start, "cap", start
    while b * 2 <= cap:
        b *= 2
        peak = estimate_memory(size, cfg.method, cfg.lora, cfg.task, policy, t.optim, b,
                               cfg.model.max_length).peak(t.gradient_checkpointing)
        peaks[str(b)] = peak
        if peak + RESERVE_BYTES > usable_bytes:
            limited_by = "memory estimate"
            break
        largest = b
    return {"usable_bytes": int(usable_bytes), "reserve_bytes": RESERVE_BYTES, "estimated_peak_bytes": peaks,
            "largest": largest, "limited_by": limited_by, "cap": cap}


def usable_memory_bytes(device: str) -> int:
    """What a measurement may use: the device's free memory plus what this process's allocator holds unused
    (CUDA), or the available RAM (CPU)."""
    if device == "cuda":
        free, _total = torch.cuda.mem_get_info()
        return int(free + torch.cuda.memory_reserved() - torch.cuda.memory_allocated())
    import psutil

    return int(psutil.virtual_memory().available)


def search_batch(measure: Callable[[int], dict], start: int, cap: int, fits: Callable[[int], bool],
                 device: str = "cpu", first: int | None = None, cap_reason: str = "cap") -> dict:
    """The largest per-device batch that fits, measured: from `first` (default 2 x start) doubling up to `cap`
    until a measurement runs out of memory or the next size would not fit the time budget (`fits(batch)`);
    when the first size tried runs out of memory, halving down to 2 x start instead. `start` is known to fit;
    `cap_reason` names what set the cap (`stopped_by` when the search reaches it). Each attempt is a fresh
    model and Trainer; memory is freed after an out-of-memory error before the next step."""
    tried: list[dict] = []
    largest, at_largest, stopped = start, None, cap_reason
    b = first or start * 2
    going_down = False
    while start < b <= cap:
        if not fits(b):
            tried.append({"batch": b, "status": "skipped", "reason": "time budget"})
            stopped = "time budget"
            break
        result, error = None, None
        try:
            result = measure(b)
        except Exception as e:  # noqa: BLE001 -- out of memory ends the search; anything else is recorded too
            error = (exception_line(e)[:300], is_out_of_memory(e))   # not the exception: its traceback holds the model
        free_memory()             # after the except block, so the failed run's tensors can go
        if error is not None:
            tried.append({"batch": b, "status": "oom" if error[1] else "error", "reason": error[0]})
            stopped = "out of memory" if error[1] else "error"
            if error[1] and not tried[:-1] and b // 2 > start:
                going_down = True     # the first size tried is too large: the largest that fits is below it
            if going_down and error[1] and b // 2 > start:
                b //= 2
                continue
            break
        tried.append({"status": "ok", **result})
        largest, at_largest = b, result
        if going_down:
            break
        b *= 2
    return {"start": start, "cap": cap, "first": first or start * 2, "largest_fitting": largest,
            "stopped_by": stopped, "tried": tried, "at_largest": at_largest}


# ---------------------------------------------------------------- child process (torch.compile)


def child_argv() -> list[str]:
    """The compile child: asks to die with its parent before anything heavy is imported, then child_main."""
    boot = ("import sys; from tunebench.bench.child import die_with_parent; die_with_parent(); "
            "from tunebench.bench.gpu_check import child_main; sys.exit(child_main(sys.argv[1]))")
    return [sys.executable, "-c", boot]


def run_child(spec: dict, timeout_s: float, work: Path, name: str, argv: list[str] | None = None) -> dict:
    """measure_training in a fresh Python process (child_argv; `argv` replaces it in tests), killed with its whole
    process group (TorchInductor's compile workers too) when it outlasts `timeout_s`, and ended with the check
    (tunebench.bench.child)."""
    import tunebench

    src = str(Path(tunebench.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    return child.run_child(argv or child_argv(), spec, timeout_s, work, name, env)


def child_main(spec_path: str) -> int:
    """The child's side of run_child: one measure_training from the spec, the result written atomically."""
    t_start = time.perf_counter()
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    result: dict[str, Any]
    try:
        from tunebench.model import load_tokenizer
        from tunebench.train import check_switches

        cfg = validate_config(spec["config"], source="gpu-check child")
        device = spec["device"]
        check_switches(cfg, device)
        task = get_task(cfg.task)
        started = time.perf_counter()
        m = measure_training(cfg, task, load_tokenizer(cfg), device, batch=spec["batch"], warmup=spec["warmup"],
                             timed=spec["timed"], workdir=Path(spec["workdir"]), profile=spec.get("profile", False))
        result = {"status": "ok", "startup_s": started - t_start, **m}
    except Exception as e:  # noqa: BLE001 -- the parent records the reason
        traceback.print_exc()
        result = {"status": "oom" if is_out_of_memory(e) else "failed", "reason": exception_line(e)[:300]}
    atomic_write_json(spec["result"], result)
    return 0


# ---------------------------------------------------------------- the check


class GpuCheck:
    """Runs the parts in order under the budget and keeps the report (rewritten into OUT_DIR after each part)."""

    def __init__(self, base_cfg: Config, out_dir: Path, mode: Mode, overrides: dict[str, Any],
                 model_dir: Path | None, glue_dir: Path | None, budget_s: float | None, device: str,
                 echo: Callable[[str], None] | None = _stderr, *, work: Path, determinism: dict | None = None):
        self.mode, self.device, self.out = mode, device, out_dir
        self.base_cfg, self.overrides = base_cfg, overrides
        self.model_dir, self.glue_dir = model_dir, glue_dir
        self.work = work                          # the scratch folder (make_scratch), outside OUT_DIR
        self.task = get_task(SYNTHETIC_TASK)
        self.cfg = self._synthetic_config()
        self._run_config()                        # its overrides validated before anything is written
        from tunebench.model import load_tokenizer
        from tunebench.precision import resolve_policy
        from tunebench.train import check_switches

        check_switches(self.cfg, device)          # a precision or switch this machine cannot run: one line, exit 2
        self.log = CheckLog(out_dir / LOG_FILE, echo)
        self.budget = Budget(mode.total_budget_s if budget_s is None else budget_s)
        # a smaller total (--gpu-check-budget) scales every share down with it; a larger one leaves them
        self.share_scale = min(1.0, self.budget.total_s / mode.total_budget_s) if mode.total_budget_s else 1.0
        self.determinism = determinism or {}
        self.tokenizer = load_tokenizer(self.cfg)
        self.policy = resolve_policy(self.cfg, device)
        self.methods = list(METHODS)
        self.failed_notes: list[str] = []        # findings that fail a part without stopping it
        self.report: dict[str, Any] = {
            "schema": 1, "kind": "gpu_check", "mode": mode.name, "complete": False,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "budget_s": self.budget.total_s,
            "env": {**self._env(), "determinism": self.determinism, "scratch": str(work)},
            "model": self._model_record(), "parts": {},
            "sdpa": {}, "sanity": {}, "throughput": {}, "task_lengths": {}, "real_run": {}, "batch_search": {},
            "variants": {},
            "summary": {}, "targets": {},
        }

    # ------------------------------------------------ configuration

    def _synthetic_config(self) -> Config:
        m = self.mode
        updates: dict[str, Any] = {"model.name": "tiny", "task": SYNTHETIC_TASK, "training.precision": m.precision,
                                   "tracking.backend": "none", "output_dir": str(self.work / "results")}
        updates.update({f"model.tiny.{k}": v for k, v in m.tiny.items()})
        if m.max_length:
            updates["model.max_length"] = m.max_length
        cfg = with_overrides(self.base_cfg, updates)
        return with_overrides(cfg, self.overrides) if self.overrides else cfg

    def _run_config(self) -> Config:
        """The real run's config: the user's config (its own model.tiny when no checkpoint is given), the real
        checkpoint, RTE from the GLUE folder or the builtin task, run_steps steps, no tracker."""
        m = self.mode
        updates: dict[str, Any] = {
            "model.name": str(self.model_dir) if self.model_dir else "tiny", "task": SYNTHETIC_TASK,
            "data.source": "local" if self.glue_dir else "builtin", "data.dir": str(self.work / "data"),
            "output_dir": str(self.work / "runs"), "experiment": "gpu-check", "training.max_steps": m.run_steps,
            "training.eval_steps": m.run_eval_steps, "tracking.backend": "none", "training.precision": m.precision,
            **m.run_overrides}
        if self.glue_dir:
            updates["data.glue_dir"] = str(self.glue_dir)
        cfg = with_overrides(self.base_cfg, updates)
        return with_overrides(cfg, self.overrides) if self.overrides else cfg

    def _env(self) -> dict:
        from tunebench.bench.measure import environment
        from tunebench.system import PACKAGES, package_version

        return {**environment(self.device), "cuda": torch.version.cuda,
                "packages": {p: package_version(p) for p in (*PACKAGES, "pydantic", "pandas")}}

    def _model_record(self) -> dict:
        c = self.cfg
        return {"architecture": f"{STUDY_MODEL} shapes at random init" if self.mode.name == "gpu" else "tiny",
                "tiny": c.model.tiny.model_dump(), "max_length": c.model.max_length,
                "batch": c.training.per_device_train_batch_size, "precision": self.policy.as_dict(),
                "synthetic_task": SYNTHETIC_TASK, "overrides": self.overrides}

    # ------------------------------------------------ running

    def run(self) -> dict:
        self.log(f"gpu check ({self.mode.name}) on {self.report['env']['device_name']}: budget "
                 f"{self.budget.total_s:.0f} s; model {self.report['model']['architecture']}, "
                 f"{self.cfg.training.per_device_train_batch_size} x {self.cfg.model.max_length}, "
                 f"{self.policy.name}")
        steps = {"sdpa": self._sdpa, "sanity": self._sanity, "throughput": self._throughput,
                 "task_lengths": self._task_lengths, "real_run": self._real_run,
                 "batch_search": self._batch_search, "variants": self._variants,
                 "torch_compile": self._torch_compile}
        try:
            for name in PARTS:
                self._part(name, steps[name])
        except BaseException as e:        # SystemExit from SIGTERM / SIGHUP, KeyboardInterrupt: what ran is kept
            self.report["interrupted"] = f"{type(e).__name__}: {e}".rstrip(": ")
            self.log(f"interrupted ({self.report['interrupted']}): gpu_check.json keeps the parts that ran")
            self._save()
            raise
        self._finish()
        return self.report

    def _part(self, name: str, fn: Callable[[PartBudget], bool]) -> None:
        share = self.mode.part_budget_s[name] * self.share_scale
        budget = self.budget.part(share, rest=name == PARTS[-1])
        record: dict[str, Any] = {"budget_s": round(budget.left(), 1)}
        if budget.left() < self.mode.min_start_s[name]:
            record.update(status="skipped", reason=f"time budget: {max(0.0, self.budget.remaining()):.1f} s of the "
                          f"total left, the part needs at least {self.mode.min_start_s[name]:g} s")
            self.log(f"{name}: skipped ({record['reason']})")
            self.report["parts"][name] = record
            self._save()
            return
        self.log(f"{name}: start (budget {budget.left():.0f} s)")
        t0, notes_before = time.perf_counter(), len(self.failed_notes)
        try:
            passed = fn(budget)
            status = "ok" if passed else "failed"
            if passed and budget.skipped:
                status = "partial"
        except Exception as e:  # noqa: BLE001 -- one part's failure must not stop the others
            status = "failed"
            record["reason"] = exception_line(e)[:500]
            self.log(f"{name}: FAILED: {record['reason']}\n{traceback.format_exc()}")
        free_memory()
        record.update(status=status, elapsed_s=round(time.perf_counter() - t0, 2))
        if len(self.failed_notes) > notes_before:
            record["findings"] = self.failed_notes[notes_before:]
        if budget.skipped:
            record["skipped"] = budget.skipped
            for s in budget.skipped:
                self.log(f"{name}: {s}")
        self.report["parts"][name] = record
        self.log(f"{name}: {status} in {record['elapsed_s']:.1f} s")
        self._save()

    def _save(self) -> None:
        atomic_write_json(self.out / JSON_FILE, self.report)
        self.log.flush()

    def _finish(self) -> None:
        self.report["targets"] = evaluate_targets(self.report["summary"])
        self.report["wall_s"] = round(self.budget.elapsed(), 2)
        self.report["process_s"] = round(time.time() - _process_start(), 1)     # imports and start-up included
        self.report["ok"] = all(p["status"] in ("ok", "partial", "skipped") for p in self.report["parts"].values())
        self.report["complete"] = True
        for key, t in self.report["targets"].items():
            met = "n/a" if t["met"] is None else ("met" if t["met"] else "missed")
            value = "n/a" if t["value"] is None else f"{t['value']:.3f}"
            self.log(f"target {key}: {value} ({t['op']} {t['threshold']}): {met}")
        self.log(f"done in {self.report['wall_s']:.1f} s ({self.report['process_s']:.0f} s since the process "
                 "started): " + ", ".join(
            f"{k} {v['status']}" for k, v in self.report["parts"].items()))
        self._save()

    def _measure(self, cfg: Config, *, batch: int, warmup: int, timed: int, profile: bool = False,
                 label: str = "") -> dict:
        workdir = self.work / "trainer" / f"{cfg.method}-{label or batch}"
        try:
            return measure_training(cfg, self.task, self.tokenizer, self.device, batch=batch, warmup=warmup,
                                    timed=timed, workdir=workdir, profile=profile)
        finally:
            free_memory()

    def _method_cfg(self, method: str, **updates: Any) -> Config:
        return with_overrides(self.cfg, {"method": method, **updates})

    # ------------------------------------------------ 1 SDPA

    def _sdpa(self, budget: PartBudget) -> bool:
        t = self.cfg.model.tiny
        dtype = self.policy.compute_dtype
        out = probe_sdpa(self.device, dtype, self.cfg.training.per_device_train_batch_size, t.num_attention_heads,
                         self.cfg.model.max_length, t.hidden_size // t.num_attention_heads, self.mode.sdpa_iters)
        self.report["sdpa"]["probe"] = out
        for case in ("causal", "padding_mask"):
            c = out[case]
            self.log(f"sdpa {case}: picks {c['chosen']} (deterministic: {c['chosen_deterministic']}); runs alone: "
                     + ", ".join(f"{n} {c[n]['fwd_bwd_ms']:.2f} ms" for n in c["runs"]))
        return bool(out["causal"]["runs"])

    # ------------------------------------------------ 2 sanity

    def _sanity(self, budget: PartBudget) -> bool:
        m = self.mode
        vocab = max(self.cfg.model.tiny.vocab_size or 0, len(self.tokenizer))
        batch = synthetic_batch(m.sanity_examples, m.sanity_len, vocab, special_ids_floor(self.tokenizer),
                                self.task.num_labels, self.cfg.training.seed)
        det = self.cfg.training.deterministic
        passed = True
        for method in self.methods:
            try:
                with deterministic_algorithms(det):          # as the Trainer's runs (full_determinism)
                    passed &= self._sanity_method(method, batch, budget, det)
            except RuntimeError as e:
                if not det or "determinis" not in str(e).lower():
                    raise
                # Deterministic algorithms failed (an op without a deterministic kernel, or cuBLAS without
                # CUBLAS_WORKSPACE_CONFIG): the finding, recorded; the checks then run without them.
                why = exception_line(e)[:300]
                free_memory()
                self.log(f"sanity {method}: deterministic algorithms FAILED: {why}; checking without them")
                self.failed_notes.append(f"sanity {method}: deterministic algorithms failed: {why}")
                self._sanity_method(method, batch, budget, False)
                self.report["sanity"][method]["deterministic_failed"] = why
                passed = False
        return passed

    def _sanity_method(self, method: str, batch: dict, budget: PartBudget, deterministic: bool) -> bool:
        from tunebench.methods import head_name
        from tunebench.sanity import inspect_gradient_flow, nonzero_lora_b, run_optimizer

        m = self.mode
        mcfg = self._method_cfg(method)
        entry: dict[str, Any] = {"examples": m.sanity_examples, "seq_len": m.sanity_len,
                                 "deterministic": deterministic}
        self.report["sanity"][method] = entry
        t0 = time.perf_counter()
        model = build_on_device(mcfg, self.task, self.tokenizer, self.device, self.policy)
        build_s = time.perf_counter() - t0
        nonzero_lora_b(model)
        t1 = time.perf_counter()
        gf = inspect_gradient_flow(model, batch, method, head_name(self.task), self.policy,
                                   run_optimizer(mcfg, self.task))
        sync_device(self.device)
        gf_s = time.perf_counter() - t1
        fwd_bwd_s = _time_forward_backward(model, batch, self.policy, self.device)   # warm: the step estimate
        del model
        free_memory()
        entry["gradient_flow"] = {**gf.as_dict(), "build_s": build_s, "s": gf_s, "fwd_bwd_s": fwd_bwd_s}
        self.log(f"sanity {method}: gradient flow {'passed' if gf.passed else 'FAILED'}: {gf.figure} "
                 f"{gf.detail}".rstrip())
        entry["overfitting"] = self._overfit(mcfg, method, batch, budget, build_s, fwd_bwd_s)
        if not gf.passed:
            self.failed_notes.append(f"{method} gradient flow: {gf.figure}: {gf.detail}")
        if entry["overfitting"]["passed"] is False:
            self.failed_notes.append(f"{method} overfitting: loss target {m.loss_target} not reached: "
                                     + "; ".join(f"lr {a['lr']:g}: loss {a['loss']:.3f} after {a['max_steps']} "
                                                 "steps" for a in entry["overfitting"]["attempts"]))
        return gf.passed and entry["overfitting"]["passed"] is not False

    def _overfit(self, mcfg: Config, method: str, batch: dict, budget: PartBudget, build_s: float,
                 fwd_bwd_s: float) -> dict:
        from tunebench.sanity import overfit_batch

        m = self.mode
        per_step = 1.5 * fwd_bwd_s                      # forward + backward + AdamW (a warm step), with margin
        attempts: list[dict] = []
        result: dict[str, Any] = {"loss_target": m.loss_target, "cap_steps": m.overfit_steps, "attempts": attempts,
                                  "passed": None}
        for lr in m.overfit_lrs[method]:
            cap = min(m.overfit_steps, int((budget.left() - build_s) / max(per_step, 1e-6)))
            if cap < min(10, m.overfit_steps):
                budget.fits(build_s + 10 * per_step, f"{method} overfitting at lr {lr:g}")
                break
            base = load_base_on_device(mcfg, self.task, self.tokenizer, self.device, self.policy)
            t0 = time.perf_counter()
            steps, loss, acc = overfit_batch(base, mcfg, self.task, self.tokenizer, batch, lr, cap, m.loss_target,
                                             self.policy)
            del base
            free_memory()
            attempts.append({"lr": lr, "max_steps": cap, "steps": steps, "loss": loss, "accuracy": acc,
                             "s": time.perf_counter() - t0})
            self.log(f"sanity {method}: overfitting at lr {lr:g}: "
                     + (f"loss {loss:.4f}, accuracy 100% after {steps} steps" if steps is not None
                        else f"not reached in {cap} steps (loss {loss:.3f}, accuracy {100 * acc:.0f}%)"))
            if steps is not None:
                result.update(passed=True, lr=lr, steps=steps, loss=loss)
                return result
        if attempts:
            result["passed"] = False
        return result

    # ------------------------------------------------ 3 throughput at the study's batch

    def _throughput(self, budget: PartBudget) -> bool:
        m, b = self.mode, self.cfg.training.per_device_train_batch_size
        for method in self.methods:
            prev = next(iter(self.report["throughput"].values()), None)
            est = (estimate_s(prev, b, m.warmup_steps + m.timed_steps + 1) if prev is not None
                   else m.min_start_s["throughput"])
            if not budget.fits(est, f"{method} at batch {b}"):
                continue
            try:
                r = self._measure(self._method_cfg(method), batch=b, warmup=m.warmup_steps, timed=m.timed_steps,
                                  profile=True, label="study")
            except Exception as e:  # noqa: BLE001 -- see below
                if is_out_of_memory(e) or not self.cfg.training.deterministic:
                    raise
                # The study's default (deterministic kernels) failed: that is the finding, recorded; the summary
                # is then measured without it, so the other figures are not lost with it.
                failed_det = exception_line(e)[:300]
            else:
                failed_det = None
            if failed_det is not None:
                self.log(f"throughput {method}: training.deterministic=true FAILED: {failed_det}; measuring with "
                         f"false")
                r = self._measure(self._method_cfg(method, **{"training.deterministic": False}), batch=b,
                                  warmup=m.warmup_steps, timed=m.timed_steps, profile=True, label="study-nondet")
                r["deterministic_failed"] = failed_det
                self.failed_notes.append(f"throughput {method}: training.deterministic=true failed: {failed_det}")
            self.report["throughput"][method] = r
            self.report["summary"][method] = {"mfu": r["mfu"], "tokens_per_s": r["tokens_per_s"],
                                              "peak_memory_bytes": int(r["peak_memory_bytes"]),
                                              "device_name": device_name(self.device)}
            prof = r.get("profile", {})
            self.log(f"throughput {method} {b} x {r['seq_len']}: {1000 * r['step_time_s']:.1f} ms/step, "
                     f"{r['tokens_per_s']:,.0f} tokens/s, peak {format_bytes(r['peak_memory_bytes'])}, MFU "
                     f"{_pct(r['mfu'])}, "
                     f"compute {r['precision']['compute_dtype']}; SDPA in the profiled step: "
                     f"{prof.get('backends') or prof.get('error') or 'none seen'}")
        self.report["sdpa"]["training_step"] = {k: v.get("profile") for k, v in self.report["throughput"].items()}
        return not any("deterministic_failed" in r for r in self.report["throughput"].values())

    # ------------------------------------------------ 3b throughput at each task's real length

    def _task_lengths(self, budget: PartBudget) -> bool:
        """tokens/s at the study's batch and each task's mean tokens per example (the task table's mean_tokens:
        15 to 200, at least model.max_length's floor of 16): what a run of that task trains on (length-grouped batches,
        dynamic padding), unlike the padded 512 of the summary. `plan show --measured` turns the plan's tokens
        into hours with these (summary.<method>.tokens_per_s_by_task)."""
        from tunebench.tasks import TASKS

        m, b = self.mode, self.cfg.training.per_device_train_batch_size
        for method in self.methods:
            ref = self.report["throughput"].get(method)
            if ref is None or method not in self.report["summary"]:
                budget.skipped.append(f"{method}: no study-batch measurement to scale from")
                continue
            by_task = self.report["task_lengths"].setdefault(method, {})
            for task, spec in TASKS.items():
                length = max(16, min(spec.mean_tokens, self.cfg.model.max_length))
                est = estimate_s(ref, b, m.search_warmup + m.search_timed, factor=length / ref["seq_len"])
                if not budget.fits(est, f"{method} {task} at {b} x {length}"):
                    continue
                r = self._measure(self._method_cfg(method, **{"model.max_length": length}), batch=b,
                                  warmup=m.search_warmup, timed=m.search_timed, label=f"len-{task}")
                by_task[task] = _brief(r)
                self.report["summary"][method].setdefault("tokens_per_s_by_task", {})[task] = r["tokens_per_s"]
                self.log(f"task_lengths {method} {task} {b} x {length}: {1000 * r['step_time_s']:.1f} ms/step, "
                         f"{r['tokens_per_s']:,.0f} tokens/s, MFU {_pct(r['mfu'])}")
        return True

    # ------------------------------------------------ 4 the real run

    def _real_run(self, budget: PartBudget) -> bool:
        from tunebench.bench.measure import isolated_run
        from tunebench.model import resolve_device
        from tunebench.precision import resolve_policy
        from tunebench.results import run_dir
        from tunebench.runner import run_one

        cfg = self._run_config()
        device = resolve_device()
        entry: dict[str, Any] = {"model": cfg.model.name, "task": cfg.task, "data_source": cfg.data.source,
                                 "glue_dir": cfg.data.glue_dir, "max_steps": cfg.training.max_steps,
                                 "deterministic": cfg.training.deterministic, "device": device, "runs": {}}
        self.report["real_run"] = entry
        policy = resolve_policy(cfg, device).as_dict()
        passed, last_s = True, 0.0
        for method in self.methods:                   # the first run's estimate: the part's minimum to start
            if not budget.fits(1.2 * last_s if last_s else self.mode.min_start_s["real_run"], f"real run {method}"):
                continue
            mcfg = with_overrides(cfg, {"method": method})
            t0 = time.perf_counter()
            with isolated_run(device):
                rec = run_one(mcfg, resume=False)
            free_memory()
            last_s = time.perf_counter() - t0
            run = summarize_run(rec, run_dir(mcfg), policy, last_s)
            entry["runs"][method] = run
            passed &= run["checks_passed"]
            if not run["checks_passed"]:
                self.failed_notes.append(
                    f"real run {method}: status {run['status']}" + (f" ({run['reason']})" if run["reason"] else "")
                    + f"; precision recorded {run['precision_recorded']}, as the policy {run['precision_as_policy']}"
                    + ("" if method != "lora" else f"; adapter saved {run['adapter_saved']}"))
            self.log(f"real run {method}: {run['status']} in {last_s:.1f} s"
                     + (f": test {run['primary_metric']} {run['test_metric']:.4f}, precision {run['precision']}, "
                        f"adapter saved: {run['adapter_saved']}" if run["status"] == "ok" else f": {run['reason']}"))
        if not entry["runs"]:
            return True
        entry["report"] = self._report(Path(cfg.output_dir) / cfg.experiment)
        if not entry["report"]["written"]:
            self.failed_notes.append(f"report: report.html or summary.md missing in {entry['report']['dir']}")
        return passed and entry["report"]["written"]

    def _report(self, results: Path) -> dict:
        from tunebench.report.build import build_report
        from tunebench.report.render import write_report

        t0 = time.perf_counter()
        out = results / "report"
        rep = build_report(results, out_dir=out)
        written = write_report(rep, out)
        copied = {}
        for name in REPORT_FILES:          # into OUT_DIR: the scratch goes when the check ends
            if written.get(name) and Path(written[name]).is_file():
                shutil.copyfile(written[name], self.out / name)
                copied[name] = self.out / name
        html, md = copied.get("report.html"), copied.get("summary.md")
        r = {"dir": str(self.out), "html": str(html), "summary_md": str(md),
             "written": bool(html and html.is_file() and md and md.is_file()),
             "runs_read": len(rep.runs), "n_ok": rep.n_ok, "verdicts": list(rep.verdicts.values()),
             "notes": list(rep.notes), "s": time.perf_counter() - t0}
        self.log(f"report: {r['runs_read']} runs read, {r['n_ok']} ok; {html}")
        return r

    # ------------------------------------------------ 5 the batch search

    def _batch_search(self, budget: PartBudget) -> bool:
        m, start = self.mode, self.cfg.training.per_device_train_batch_size
        vocab = max(self.cfg.model.tiny.vocab_size or 0, len(self.tokenizer))
        for method in self.methods:
            ref = self.report["throughput"].get(method)
            if ref is None:
                budget.skipped.append(f"{method}: skipped, no measurement at the study's batch to start from")
                continue
            steps = m.search_warmup + m.search_timed
            mcfg = self._method_cfg(method)
            free_memory()
            plan = memory_batch_plan(mcfg, vocab, self.policy, usable_memory_bytes(self.device), start, m.batch_cap)

            def fits(b: int, method: str = method, ref: dict = ref, steps: int = steps) -> bool:
                return budget.fits(estimate_s(ref, b, steps), f"{method} at batch {b}")

            def measure(b: int, mcfg: Config = mcfg) -> dict:
                return self._measure(mcfg, batch=b, warmup=m.search_warmup, timed=m.search_timed)

            # from and up to what the estimate says fits: the time goes to measuring, not to out-of-memory errors
            res = search_batch(measure, start, plan["largest"], fits, self.device, first=plan["largest"],
                               cap_reason=plan["limited_by"])
            res["memory_plan"] = plan
            best = res["at_largest"]
            if best is not None:
                estimated = plan["estimated_peak_bytes"].get(str(best["batch"]))
                res["estimated_over_measured_peak"] = (estimated / best["peak_memory_bytes"]
                                                       if estimated and best["peak_memory_bytes"] else None)
            self.report["batch_search"][method] = res
            self.log(f"batch search {method}: the memory estimate says up to {plan['largest']} fits "
                     f"({format_bytes(plan['usable_bytes'])} usable, limited by {plan['limited_by']}); largest "
                     f"fitting {res['largest_fitting']} (stopped by {res['stopped_by']})"
                     + (f": {best['tokens_per_s']:,.0f} tokens/s, peak {format_bytes(best['peak_memory_bytes'])} "
                        f"(estimated {format_bytes(estimated) if estimated else 'n/a'}), MFU {_pct(best['mfu'])}"
                        if best else ""))
        return True

    # ------------------------------------------------ 6 determinism and gradient checkpointing

    def _variants(self, budget: PartBudget) -> bool:
        m, b = self.mode, self.cfg.training.per_device_train_batch_size
        det = self.cfg.training.deterministic
        variants = {"deterministic": ("training.deterministic", not det, self.methods),
                    "gradient_checkpointing": ("training.gradient_checkpointing",
                                               not self.cfg.training.gradient_checkpointing, self.methods)}
        if self.policy.name == "bf16-mixed" and self.cfg.model.dtype == "auto":
            # LoRA's frozen base in bf16 (adapters and head stay fp32): the memory the LoRA target asks about
            variants["frozen_bf16"] = ("model.dtype", "bfloat16", [m for m in self.methods if m == "lora"])
        ok = True
        for vname, (key, value, methods) in variants.items():
            rows: dict[str, Any] = {}
            self.report["variants"][vname] = rows
            for method in methods:
                ref = self.report["throughput"].get(method)
                if ref is None:
                    budget.skipped.append(f"{vname} {method}: skipped, no reference measurement")
                    continue
                factor = 1.5 if vname == "gradient_checkpointing" else 1.2
                if not budget.fits(estimate_s(ref, b, m.search_warmup + m.search_timed, factor),
                                   f"{vname}={value} {method}"):
                    continue
                row = self._variant_row(self._method_cfg(method, **{key: value}), ref, b, label=vname, key=key)
                row[_variant_text(get_dotted(self.cfg.model_dump(), key))] = _brief(ref)
                rows[method] = row
                ok &= row.get("works", True) or vname == "deterministic"
                self.log(f"{vname} {method}: " + _variant_line(row, value))
        return ok

    def _variant_row(self, cfg: Config, ref: dict, b: int, label: str, key: str) -> dict:
        """One variant at the study's batch against the reference measurement (`ref`), or why it does not run."""
        m = self.mode
        on = _variant_text(get_dotted(cfg.model_dump(), key))
        try:
            r = self._measure(cfg, batch=b, warmup=m.search_warmup, timed=m.search_timed, profile=True, label=label)
        except Exception as e:  # noqa: BLE001 -- "does not work" is the finding
            return {"works": False, "reason": exception_line(e)[:300], "value": on}
        return {"works": True, "value": on, on: _brief(r),
                "step_time_ratio": r["step_time_s"] / ref["step_time_s"],
                "peak_memory_ratio": r["peak_memory_bytes"] / ref["peak_memory_bytes"] if ref["peak_memory_bytes"]
                else None, "sdpa_backends": (r.get("profile") or {}).get("backends")}

    # ------------------------------------------------ 7 torch.compile

    def _torch_compile(self, budget: PartBudget) -> bool:
        m, b = self.mode, self.cfg.training.per_device_train_batch_size
        rows: dict[str, Any] = {}
        self.report["variants"]["torch_compile"] = rows
        compile_on = m.compile_in_child
        for method in m.compile_methods:
            ref = self.report["throughput"].get(method)
            if ref is None:
                budget.skipped.append(f"torch_compile {method}: skipped, no reference measurement")
                continue
            need = self.mode.min_start_s["torch_compile"]
            if not budget.fits(need, f"torch_compile {method}"):
                continue
            cfg = self._method_cfg(method, **{"training.torch_compile": compile_on})
            spec = {"config": cfg.model_dump(), "device": self.device, "batch": b, "warmup": m.search_warmup + 1,
                    "timed": m.search_timed, "workdir": str(self.work / "trainer" / f"{method}-compile"),
                    "profile": False}
            free_memory()
            res = run_child(spec, budget.left(), self.work / "child", f"compile-{method}")
            row: dict[str, Any] = {"torch_compile": compile_on, "child": _brief(res) if res["status"] == "ok" else res,
                                   "works": {"ok": True, "timed_out": None}.get(res["status"], False) if compile_on
                                   else None,
                                   "false": _brief(ref)}
            if not compile_on:
                row["note"] = ("smoke: the child-process harness ran without torch.compile (TorchInductor on a CPU "
                               "compiles for minutes)")
            if res["status"] == "ok":
                row["step_time_ratio"] = res["step_time_s"] / ref["step_time_s"]
                row["peak_memory_ratio"] = (res["peak_memory_bytes"] / ref["peak_memory_bytes"]
                                            if ref["peak_memory_bytes"] else None)
                row["first_step_s"] = res["first_step_s"]          # includes the compilation
                row["startup_s"] = res.get("startup_s")
            rows[method] = row
            if row["works"] is False:
                self.failed_notes.append(f"torch_compile {method}: {res['status']}: {res.get('reason')}")
            self.log(f"torch_compile={str(compile_on).lower()} {method} (child process): {res['status']}"
                     + (f": {1000 * res['step_time_s']:.1f} ms/step ({row['step_time_ratio']:.2f}x), first step "
                        f"{res['first_step_s']:.1f} s, peak {format_bytes(res['peak_memory_bytes'])}"
                        if res["status"] == "ok" else f": {res.get('reason')}"))
        return True


def _time_forward_backward(model: torch.nn.Module, batch: dict, policy, device: str) -> float:
    """Seconds of one more forward + backward of the sanity batch (after the gradient-flow check's: warm)."""
    model.train()
    sync_device(device)
    t0 = time.perf_counter()
    with policy.autocast_context(device):            # as the Trainer runs it (and the sanity checks)
        model(**{k: v.to(device) for k, v in batch.items()}).loss.backward()
    sync_device(device)
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def _process_start() -> float:
    import psutil

    return psutil.Process().create_time()


def _variant_text(value: Any) -> str:
    """A variant's setting as the report keys it: true / false, or the value itself (bfloat16)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _brief(m: dict) -> dict:
    """The figures of one measurement that a comparison needs."""
    keys = ("batch", "seq_len", "step_time_s", "tokens_per_s", "peak_memory_bytes", "mfu", "first_step_s", "build_s")
    return {k: m[k] for k in keys if k in m}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _variant_line(row: dict, value: Any) -> str:
    if not row.get("works", True):
        return f"={_variant_text(value)} does not work: {row['reason']}"
    on = row[row["value"]]
    return (f"={row['value']}: {1000 * on['step_time_s']:.1f} ms/step ({row['step_time_ratio']:.2f}x), peak "
            f"{format_bytes(on['peak_memory_bytes'])} ({row['peak_memory_ratio']:.2f}x)"
            + (f", SDPA {row['sdpa_backends']}" if row.get("sdpa_backends") is not None else ""))


def summarize_run(rec: dict, rdir: Path, policy: dict, elapsed_s: float) -> dict:
    """What the check keeps of one real run: status, test metric, the precision record (checked against the
    policy), and whether the adapter was saved (LoRA; full fine-tuning saves a model only when asked)."""
    primary = rec.get("primary_metric")
    precision = rec.get("precision") or {}
    keys = ("name", "trainable_dtype", "optimizer_state_dtype", "compute_dtype")
    recorded = all(precision.get(k) for k in keys)
    as_policy = recorded and all(precision[k] == policy[k] for k in keys)
    lora = rec.get("method") == "lora"
    adapter = (rdir / "adapter" / "adapter_config.json").is_file()
    ok = rec.get("status") == "ok"
    return {
        "status": rec.get("status"), "reason": rec.get("reason"), "run_id": rec.get("run_id"), "run_dir": str(rdir),
        "primary_metric": primary, "test_metric": (rec.get("test") or {}).get(primary),
        "best_validation": (rec.get("best_validation") or {}).get("value"), "steps": rec.get("steps"),
        "device": rec.get("device"), "precision": precision or None, "precision_recorded": recorded,
        "precision_as_policy": as_policy, "adapter_saved": adapter if lora else None,
        "wall_s": (rec.get("timing") or {}).get("wall_s"), "elapsed_s": elapsed_s,
        "tokens_per_s": (rec.get("tokens") or {}).get("tokens_per_s"),
        "peak_memory_bytes": (rec.get("memory") or {}).get("peak_bytes"),
        "checks_passed": ok and recorded and as_policy and (adapter or not lora),
    }


def evaluate_targets(summary: dict) -> dict:
    """The targets on the measured summary: value, threshold and met (None when a figure is missing)."""
    full, lora = summary.get("full") or {}, summary.get("lora") or {}

    def ratio(a, b):
        return a / b if a is not None and b else None

    values = {"full_mfu": full.get("mfu"),
              "lora_tokens_per_s_over_full": ratio(lora.get("tokens_per_s"), full.get("tokens_per_s")),
              "lora_peak_memory_over_full": ratio(lora.get("peak_memory_bytes"), full.get("peak_memory_bytes"))}
    out = {}
    for key, t in TARGETS.items():
        v = values[key]
        met = None if v is None else (v >= t["threshold"] if t["op"] == ">=" else v <= t["threshold"])
        out[key] = {**t, "value": v, "met": met}
    return out


def make_scratch(root: Path | None = None) -> Path:
    """The check's scratch folder, `tunebench-gpu-check-<pid>-*` under TMPDIR (or `root`), marked as the check's;
    the ones of earlier checks whose process is gone (killed with SIGKILL) are removed first."""
    base = Path(root or tempfile.gettempdir())
    for old in base.glob(f"{SCRATCH_PREFIX}*"):
        pid = old.name.removeprefix(SCRATCH_PREFIX).split("-")[0]
        if pid.isdigit() and (old / MARKER).is_file() and not pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=base))
    (work / MARKER).write_text("made by tunebench bench --gpu-check; removed when it ends\n", encoding="utf-8")
    return work


def remove_scratch(work: Path) -> None:
    if (work / MARKER).is_file():
        shutil.rmtree(work, ignore_errors=True)


def set_cublas_workspace() -> dict:
    """CUBLAS_WORKSPACE_CONFIG for deterministic cuBLAS (`:4096:8` unless one of the two valid values is set),
    and whether that happened before CUDA was initialised in this process (after, cuBLAS may already have
    read it: deterministic runs may then fail, and the record says why)."""
    before = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    initialized = torch.cuda.is_initialized()
    if before not in (":4096:8", ":16:8"):
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    rec: dict[str, Any] = {"cublas_workspace_config": os.environ["CUBLAS_WORKSPACE_CONFIG"], "was": before,
                           "set_before_cuda_init": before in (":4096:8", ":16:8") or not initialized}
    if not rec["set_before_cuda_init"]:
        rec["note"] = ("CUDA was initialised in this process before CUBLAS_WORKSPACE_CONFIG was set: runs with "
                       "training.deterministic=true may fail; set it before starting (benchmarks/gpu_check.sh does)")
    return rec


@contextlib.contextmanager
def deterministic_algorithms(on: bool) -> Iterator[None]:
    """torch's deterministic algorithms (and cuDNN's) on or off inside, as the Trainer's full_determinism sets
    them; the previous settings restored after."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(on)
    if on:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """transformers' and torch's user warnings (deprecations, unused-kernel reasons) out of the console."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def run_gpu_check(out_dir: str | Path, base_cfg: Config, *, smoke: bool = False, model_dir: str | Path | None = None,
                  glue_dir: str | Path | None = None, overrides: dict[str, Any] | None = None,
                  budget_s: float | None = None, echo: Callable[[str], None] | None = _stderr) -> dict:
    """The whole check (module docstring); returns the report also written to OUT_DIR/gpu_check.json.
    Without --smoke it needs a CUDA GPU (TunebenchError otherwise); --smoke runs on the CPU."""
    determinism = set_cublas_workspace()           # first: before anything initialises CUDA
    if not smoke and not torch.cuda.is_available():
        raise TunebenchError("--gpu-check needs a CUDA GPU and none is visible here (--smoke runs the same check on "
                             "the CPU in seconds)")
    for flag, path in (("--gpu-check-model", model_dir), ("--gpu-check-glue", glue_dir)):
        if path is not None and not Path(path).is_dir():
            raise TunebenchError(f"{flag} {path}: folder not found")
    if glue_dir is not None and not (Path(glue_dir) / get_task(SYNTHETIC_TASK).raw_dir).is_dir():
        raise TunebenchError(f"--gpu-check-glue {glue_dir}: no {get_task(SYNTHETIC_TASK).raw_dir}/ folder in it "
                             "(the GLUE layout: DIR/RTE/train.tsv)")
    if budget_s is not None and budget_s < 0:
        raise TunebenchError(f"--gpu-check-budget {budget_s}: must be at least 0 seconds")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = make_scratch()
    try:
        with child.ending_children_on_signals(), _quiet():
            check = GpuCheck(base_cfg, out, SMOKE if smoke else GPU, dict(overrides or {}),
                             Path(model_dir) if model_dir else None, Path(glue_dir) if glue_dir else None,
                             budget_s, "cpu" if smoke else "cuda", echo, work=work, determinism=determinism)
            return check.run()
    finally:
        remove_scratch(work)


if __name__ == "__main__":                     # a child process of run_child, started by hand
    child.die_with_parent()
    sys.exit(child_main(sys.argv[1]))
