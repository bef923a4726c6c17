"""The FLOPs convention and the GPUs' peak FLOP/s: one home for the plan's estimates (tunebench.plan.cost) and
the benchmark's measurements (tunebench.bench), so planned and measured FLOPs, MFU and GPU-hours agree.

FLOPs convention (PaLM, Chowdhery et al. 2022, appendix B), per *non-pad* token of a training step:

    full fine-tuning:  6*N + 12*L*d*T
    LoRA:              4*N_frozen + 6*N_trainable + 12*L*d*T

- N counts every parameter used in the forward pass *except the embeddings* (a lookup, no matmul; the
  embedding's weight gradient is a scatter-add): attention and MLP projections, norms and the task head.
  For LoRA, N_frozen are the base weights (forward 2N + activation gradients 2N; a frozen weight needs no
  2N weight-gradient term) and N_trainable the adapters plus the trained head (modules_to_save), 6N each.
  PEFT's inactive copy of the head (`original_module`) is not used in the forward pass and is not counted.
- 12*L*d*T is attention (QK^T and AV, forward 4*d*T per layer, times 3 for forward + backward); it has no
  weights, so LoRA pays it in full. T is the batch's padded sequence length (what the kernels compute over),
  so a batch's FLOPs are sum over its non-pad tokens of (6N + 12*L*d*T_batch); no causal halving (PaLM).
- The causal-LM head does not exist in a classifier; the classification head (d x labels) is in N.
MFU = model FLOPs per second / the device's dense bf16 peak; n/a on a CPU (no meaningful peak table).
Pure: numbers in, numbers out (no torch).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Dense (no sparsity) bf16 tensor-core peaks in FLOP/s, from the vendors' data sheets. Patterns are matched
# against torch.cuda.get_device_name() in order (H100 PCIe before the SXM default; L4 not L40S).
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    (r"H100.*PCIe", 756.0e12),
    (r"H100", 989.4e12),       # SXM5 (the HBM3 80GB part)
    (r"H200", 989.4e12),
    (r"A100", 312.0e12),
    (r"\bL4\b", 121.0e12),
    (r"A10G", 125.0e12),
)

EMBEDDING_MARKERS = ("embed_tokens", "wte", "word_embeddings")
INACTIVE_MARKERS = ("original_module",)   # PEFT keeps the untrained head beside the trained copy


@dataclass(frozen=True)
class FlopParams:
    """Non-embedding parameters used in the forward pass, split by whether they receive a weight gradient."""

    frozen: int
    trainable: int
    n_layers: int
    d_model: int

    @property
    def total(self) -> int:
        return self.frozen + self.trainable


def count_flop_params(named: Iterable[tuple[str, int, bool]], n_layers: int, d_model: int) -> FlopParams:
    """From (name, numel, requires_grad) triples: embeddings and PEFT's inactive head copy left out."""
    frozen = trainable = 0
    for name, numel, requires_grad in named:
        if any(m in name for m in EMBEDDING_MARKERS + INACTIVE_MARKERS):
            continue
        if requires_grad:
            trainable += numel
        else:
            frozen += numel
    return FlopParams(frozen, trainable, n_layers, d_model)


def attention_flops_per_token(n_layers: int, d_model: int, seq_len: float) -> float:
    """12*L*d*T: QK^T and AV (2*d*T each, forward) for every layer, times 3 for forward + backward."""
    return 12.0 * n_layers * d_model * seq_len


def train_flops_per_token(p: FlopParams, seq_len: float) -> float:
    """4*N_frozen + 6*N_trainable + 12*L*d*T (= 6N + 12LdT for full fine-tuning, N_frozen = 0)."""
    return 4.0 * p.frozen + 6.0 * p.trainable + attention_flops_per_token(p.n_layers, p.d_model, seq_len)


def peak_flops(device_name: str | None) -> float | None:
    """Dense bf16 peak FLOP/s of a known GPU; None for a CPU or an unknown device (MFU is then n/a)."""
    if not device_name:
        return None
    for pattern, flops in PEAK_BF16_FLOPS:
        if re.search(pattern, device_name):
            return flops
    return None
