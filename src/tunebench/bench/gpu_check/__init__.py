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

The modules, from the lowest (each imports only those above it in this list):

- `modes`: the GPU check's and the smoke run's sizes, step counts and time budgets (`GPU`, `SMOKE`), `PARTS`.
- `budget`: the time budget (`Budget`, `PartBudget`).
- `log`: the progress log (`CheckLog`) and the device's name.
- `synthetic`: the synthetic examples.
- `build`: the model built on the device.
- `sdpa`: the SDPA probe (`probe_sdpa`) and the backend a profiled step shows.
- `training`: one timed training run (`measure_training`) and duration estimates (`estimate_s`).
- `batch_search`: the memory estimate's batch plan and the measured batch search.
- `compile_child`: the torch.compile measurement in a child process (`run_child`, `child_main`).
- `real_run`, `targets`: what the check keeps of a real run; the study's targets on the measured summary.
- `scratch`, `determinism`: the scratch folder; CUBLAS_WORKSPACE_CONFIG and deterministic algorithms.
- `check`: the orchestrator (`GpuCheck`), one method per part.
- `run`: the entry point, `run_gpu_check`.
"""

from tunebench.bench.gpu_check.batch_search import memory_batch_plan, search_batch
from tunebench.bench.gpu_check.budget import Budget, PartBudget
from tunebench.bench.gpu_check.check import JSON_FILE, LOG_FILE, GpuCheck
from tunebench.bench.gpu_check.compile_child import child_main, run_child
from tunebench.bench.gpu_check.determinism import deterministic_algorithms, set_cublas_workspace
from tunebench.bench.gpu_check.modes import GPU, PARTS, SMOKE, Mode, study_shape
from tunebench.bench.gpu_check.run import run_gpu_check
from tunebench.bench.gpu_check.scratch import MARKER, SCRATCH_PREFIX
from tunebench.bench.gpu_check.targets import TARGETS, evaluate_targets
from tunebench.bench.gpu_check.training import measure_training

__all__ = [
    "GPU",
    "JSON_FILE",
    "LOG_FILE",
    "MARKER",
    "PARTS",
    "SCRATCH_PREFIX",
    "SMOKE",
    "TARGETS",
    "Budget",
    "GpuCheck",
    "Mode",
    "PartBudget",
    "child_main",
    "deterministic_algorithms",
    "evaluate_targets",
    "measure_training",
    "memory_batch_plan",
    "run_child",
    "run_gpu_check",
    "search_batch",
    "set_cublas_workspace",
    "study_shape",
]
