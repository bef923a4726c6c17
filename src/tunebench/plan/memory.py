"""Peak GPU memory of a training run before it runs: weights, gradients, optimizer state, autocast's weight
copies and activations, with and without gradient checkpointing. Pure: shapes and settings in, bytes out.

Exact parts (they equal what the model's own parameters add up to under the precision policy; tested on a
real model built on the meta device):
- Parameters. Full fine-tuning: every parameter trains (embeddings, layers, final norm, task head). LoRA: the
  adapters (tunebench.plan.cost.lora_params: r x (in + out) per targeted projection, + DoRA's magnitudes) and
  the task head train; the base model is frozen, and PEFT keeps the untrained head (`original_module`)
  beside the trained copy (`modules_to_save`), so the head counts once in each.
- Weights: trainable x the policy's trainable dtype + frozen x its frozen dtype (tunebench.precision).
- Gradients: trainable x the trainable dtype (a gradient has its parameter's dtype).
- Optimizer state: AdamW keeps 2 moments per trainable parameter in the state dtype; bf16-true's AdamW with
  Kahan summation (torch-optimi) adds a compensation buffer: 3 bf16 buffers (torchao's stochastic rounding
  keeps 2: the figure is then an upper bound); training.optim=adamw_8bit keeps 2 one-byte moments (2 bytes per
  parameter; bitsandbytes' per-block scales, under 0.05 byte, are not counted).

Estimated parts:
- Autocast's weight copies (bf16-mixed only, where weights are fp32 and matmuls run in bf16): torch.autocast
  caches the bf16 copy of every trainable weight it casts until the forward ends, and each frozen fp32 weight's
  bf16 copy is saved for the backward (matmul's input gradient needs it). So 2 bytes per matmul weight (the
  embedding table is a lookup, not cast); with gradient checkpointing the frozen copies live one layer at a
  time (the cached trainable ones do not change). model.dtype=bfloat16 stores the frozen weights in bf16: no
  copies. (Verified on a CPU with torch.autograd's saved tensors, tests/test_plan_memory.py.)
- Activations, at per-device batch b x model.max_length s (the longest batch sets the peak; length-grouped
  batches of shorter examples use less). The method of Korthikanti et al. 2022 ("Reducing Activation
  Recomputation in Large Transformer Models", section 4.1: count the tensors each operation saves for the
  backward) applied to transformers' LlamaDecoderLayer with SDPA / FlashAttention, which never materializes
  the s x s score matrix (it keeps q, k, v, the output and a per-head log-sum-exp). Per layer and token, with
  h hidden, q = heads x head_dim, kv = kv_heads x head_dim, i intermediate, c bytes of the compute dtype:
      RMSNorm x 2:      h x 4 each (LLaMA's RMSNorm upcasts its input to fp32 and keeps it), plus, for full
                        fine-tuning, the normalized h in the trainable dtype (the norm weight's gradient)
      attention:        c x (2q + 2kv)   q, k, v after RoPE and the output (also o_proj's input)
      MLP:              c x 3i           gate and up outputs, SiLU(gate)
      linear inputs:    full fine-tuning: c x (2h + i), the inputs the weight gradients need (the normalized
                        h for q/k/v and for gate/up, the product for down_proj); under bf16-mixed c x (5h + i):
                        autocast casts the fp32 normalized input to bf16 once per projection. LoRA: the frozen
                        projections keep no input; each adapter keeps its input after LoRA dropout, c x in,
                        plus the dropout mask (1 byte: CUDA's fused dropout; a CPU keeps a mask in the
                        adapter's dtype), and A's output, c x r. Without dropout (and without autocast's
                        casts) the adapters share their projection's input (counted once).
  Korthikanti's GPT layer (34 s b h bytes + 5 a s^2 b in 16-bit) differs by the s^2 term (gone with SDPA), the
  dropout masks (none in LLaMA) and the SwiGLU MLP (3 saved i-sized tensors). Besides the layers: the final
  norm and head input, h x (4 + c) per token, and the boolean b x s x s mask transformers builds for SDPA when
  a batch is padded.
  With gradient checkpointing (per decoder layer, non-reentrant), each layer keeps only its input (h per token
  in the embeddings' dtype) and the backward recomputes one layer's activations at a time.
  Not counted: the backward's transient buffers (about one layer's activations), CUDA context and allocator
  fragmentation (`fits` keeps RESERVE_BYTES free for them), DoRA's norm activations.
- The peak: weights + optimizer state + the larger of what the forward holds at its end (weight copies +
  activations) and what the backward holds at its end (every gradient; with gradient checkpointing also the
  checkpointed activations, counted whole though they are freed as the backward goes). The Trainer frees the
  gradients after each optimizer step (set_to_none) and the backward allocates them layer by layer as it frees
  that layer's activations, so the two never peak together. With gradient accumulation (> 1) the gradients
  persist between micro-batches: every part adds up.
- `fits`: peak + RESERVE_BYTES within a GPU's usable memory (GPU_MEMORY: the total the smallest card of each
  class reports; a "24 GB" L4 or A10G has 22.5 GiB).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tunebench.config import LoraConfig
from tunebench.plan.cost import ModelSize, head_params, lora_params
from tunebench.precision import PrecisionPolicy

GIB, MIB = 2**30, 2**20
# The GPU classes a plan is checked against: nominal size -> the total memory the smallest card of the class
# reports (nvidia-smi): A10G 23,028 MiB (L4 23,034, RTX 4090 24,564); A100 PCIe 40GB 40,536 MiB (SXM 40,960);
# H100 80GB 81,559 MiB (A100 80GB 81,920).
GPU_MEMORY = {24: 23_028 * MIB, 40: 40_536 * MIB, 80: 81_559 * MIB}
RESERVE_BYTES = 1 * GIB            # CUDA context and allocator fragmentation, not in the estimate
FP32_BYTES = 4                     # LLaMA's RMSNorm computes in fp32 whatever the compute dtype


def _bytes(dtype: torch.dtype) -> int:
    return dtype.itemsize


# ---------------------------------------------------------------- parameters (exact)


@dataclass(frozen=True)
class ParamSplit:
    """Parameters of the task model as trained: trainable, frozen, and of those the embedding table."""

    trainable: int
    frozen: int
    embedding: int

    @property
    def total(self) -> int:
        return self.trainable + self.frozen


def param_split(size: ModelSize, method: str, lora: LoraConfig, task: str) -> ParamSplit:
    """Full: everything trains. LoRA: adapters + head train; base + PEFT's original head copy are frozen."""
    if size.vocab is None:
        raise ValueError(f"{size.source}: vocabulary size unknown: the embedding table cannot be counted")
    embedding = size.vocab * size.hidden
    head = head_params(size, task)
    base = embedding + size.non_embedding + head           # a task model: no LM head
    if method == "full":
        return ParamSplit(trainable=base, frozen=0, embedding=embedding)
    return ParamSplit(trainable=lora_params(size, lora) + head, frozen=base, embedding=embedding)


def weight_bytes(split: ParamSplit, policy: PrecisionPolicy) -> int:
    return split.trainable * _bytes(policy.trainable_dtype) + split.frozen * _bytes(policy.frozen_dtype)


def gradient_bytes(split: ParamSplit, policy: PrecisionPolicy) -> int:
    return split.trainable * _bytes(policy.trainable_dtype)


def optimizer_bytes(trainable: int, policy: PrecisionPolicy, optim: str) -> int:
    """AdamW: 2 moments in the state dtype; bf16-true (Kahan summation): 3 bf16 buffers; adamw_8bit: 2 bytes."""
    if policy.name == "bf16-true":
        return 3 * trainable * _bytes(policy.optimizer_state_dtype)
    if optim == "adamw_8bit":
        return 2 * trainable
    return 2 * trainable * _bytes(policy.optimizer_state_dtype)


# ---------------------------------------------------------------- weight copies and activations (estimates)


def linear_params_per_layer(size: ModelSize) -> int:
    return sum(i * o for i, o in size.projections().values())


def weight_copy_bytes(size: ModelSize, method: str, lora: LoraConfig, task: str, policy: PrecisionPolicy,
                      checkpointing: bool) -> int:
    """bf16 copies of fp32 matmul weights under autocast (bf16-mixed); 0 under the other policies."""
    if not policy.autocast:
        return 0
    low = _bytes(policy.compute_dtype)
    linears, head = size.layers * linear_params_per_layer(size), head_params(size, task)
    if method == "full":                                   # every matmul weight trains: cached for the forward
        return (linears + head) * low
    copies = (lora_params(size, lora) + head) * low        # the trainable adapters and head: cached
    if policy.frozen_dtype == torch.float32:               # frozen fp32 base: saved for the backward
        copies += (linear_params_per_layer(size) if checkpointing else linears) * low
    return copies


def layer_activation_bytes_per_token(size: ModelSize, method: str, lora: LoraConfig, policy: PrecisionPolicy,
                                     dropout_mask_bytes: int = 1) -> int:
    """Bytes one decoder layer keeps for the backward per token (the module docstring's formula)."""
    c = _bytes(policy.compute_dtype)
    h, q, kv, i = size.hidden, size.heads * size.head_dim, size.kv_heads * size.head_dim, size.intermediate
    norms = 2 * h * (FP32_BYTES + (_bytes(policy.trainable_dtype) if method == "full" else 0))
    attention = c * (2 * q + 2 * kv)
    mlp = c * 3 * i
    if method == "full":        # o_proj's input is the attention output (counted above)
        inputs = c * ((5 if policy.autocast else 2) * h + i)
    else:
        targets = {name: fan_in for name, (fan_in, _) in size.projections().items() if name in lora.target_modules}
        if lora.dropout > 0:      # each adapter drops out its own copy of the input
            inputs = sum(fan_in * (c + dropout_mask_bytes) for fan_in in targets.values())
        elif policy.autocast:     # autocast casts the input once per adapter
            inputs = c * sum(targets.values())
        else:                     # adapters read their projection's input: q/k/v and gate/up share one
            shared = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "gate_proj": "gate_up", "up_proj": "gate_up"}
            inputs = c * sum({shared.get(name, name): fan_in for name, fan_in in targets.items()}.values())
        inputs += c * lora.r * len(targets)                # A's output, B's input
    return norms + attention + mlp + inputs


def activation_bytes(size: ModelSize, method: str, lora: LoraConfig, policy: PrecisionPolicy, batch: int,
                     seq_len: int, checkpointing: bool, dropout_mask_bytes: int = 1) -> int:
    """Activations kept for the backward at batch x seq_len tokens (module docstring)."""
    tokens = batch * seq_len
    per_layer = layer_activation_bytes_per_token(size, method, lora, policy, dropout_mask_bytes)
    outside = tokens * size.hidden * (FP32_BYTES + _bytes(policy.compute_dtype)) + batch * seq_len * seq_len
    if not checkpointing:
        return tokens * size.layers * per_layer + outside
    residual = _bytes(policy.trainable_dtype if method == "full" else policy.frozen_dtype)   # the embeddings'
    return tokens * size.layers * size.hidden * residual + tokens * per_layer + outside


# ---------------------------------------------------------------- the estimate


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of each part of a run's peak GPU memory, and the gradient accumulation that decides their overlap."""

    params: ParamSplit
    weights: int
    gradients: int
    optimizer: int
    weight_copies: int
    weight_copies_checkpointed: int
    activations: int
    activations_checkpointed: int
    accumulation: int = 1

    def peak(self, checkpointing: bool) -> int:
        """weights + optimizer + max(forward's end, backward's end); everything added under accumulation."""
        fixed = self.weights + self.optimizer
        copies = self.weight_copies_checkpointed if checkpointing else self.weight_copies
        activations = self.activations_checkpointed if checkpointing else self.activations
        if self.accumulation > 1:
            return fixed + self.gradients + copies + activations
        backward_end = self.gradients + (activations if checkpointing else 0)
        return fixed + max(copies + activations, backward_end)

    def fits(self, gpu_gb: int, checkpointing: bool) -> bool:
        """The peak leaves RESERVE_BYTES of a GPU_MEMORY class free."""
        return self.peak(checkpointing) + RESERVE_BYTES <= GPU_MEMORY[gpu_gb]


def estimate_memory(size: ModelSize, method: str, lora: LoraConfig, task: str, policy: PrecisionPolicy,
                    optim: str, batch: int, seq_len: int, accumulation: int = 1) -> MemoryEstimate:
    """Every part of the peak for one run shape (per-device batch x max_length), both with and without
    gradient checkpointing."""
    split = param_split(size, method, lora, task)
    return MemoryEstimate(
        params=split,
        weights=weight_bytes(split, policy),
        gradients=gradient_bytes(split, policy),
        optimizer=optimizer_bytes(split.trainable, policy, optim),
        weight_copies=weight_copy_bytes(size, method, lora, task, policy, checkpointing=False),
        weight_copies_checkpointed=weight_copy_bytes(size, method, lora, task, policy, checkpointing=True),
        activations=activation_bytes(size, method, lora, policy, batch, seq_len, checkpointing=False),
        activations_checkpointed=activation_bytes(size, method, lora, policy, batch, seq_len, checkpointing=True),
        accumulation=accumulation,
    )


def format_gib(n: int) -> str:
    return f"{n / GIB:.2f}"


def fits_text(est: MemoryEstimate, checkpointing: bool) -> str:
    """'no/yes/yes' for the 24/40/80 GB classes."""
    return "/".join("yes" if est.fits(gb, checkpointing) else "no" for gb in GPU_MEMORY)
