"""The memory estimate before running: the exact parts (weights, gradients, optimizer state) against real models
under every precision policy, the estimated parts (autocast's weight copies, activations) against what
autograd actually saves on this CPU, and the fits verdict."""

from __future__ import annotations

import contextlib

import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from tunebench.config import Config, LoraConfig, load_config, with_overrides
from tunebench.data.tasks import get_task
from tunebench.methods import apply_method
from tunebench.model import CausalLlamaForQuestionAnswering, load_model, load_tokenizer
from tunebench.plan.cost import KNOWN_MODELS, ModelSize, lookup_model_size, size_from_hf_config
from tunebench.plan.memory import (
    GIB,
    GPU_MEMORY,
    RESERVE_BYTES,
    MemoryEstimate,
    activation_bytes,
    estimate_memory,
    gradient_bytes,
    layer_activation_bytes_per_token,
    optimizer_bytes,
    param_split,
    weight_bytes,
    weight_copy_bytes,
)
from tunebench.precision import PRECISIONS, apply_policy, build_policy, optimizer_cls_and_kwargs

SHEARED = "princeton-nlp/Sheared-LLaMA-1.3B"
SMALL = {"hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
         "intermediate_size": 96, "vocab_size": 300, "tie_word_embeddings": False}
# (training.precision, model.dtype) pairs the config accepts: the frozen weights in every dtype a policy allows
POLICIES = [(p, "auto") for p in PRECISIONS] + [("bf16-mixed", "bfloat16")]


def _model(shape: dict, task: str, device: str) -> torch.nn.Module:
    config = LlamaConfig(**shape, num_labels=get_task(task).num_labels)
    cls = CausalLlamaForQuestionAnswering if get_task(task).is_qa else LlamaForSequenceClassification
    with torch.device(device):
        return cls(config)


def _unique_params(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    seen, out = set(), []
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def _measured(model: torch.nn.Module, policy, optim: str) -> tuple[int, int, int]:
    """Weights, gradients and optimizer state of the model as it stands, by summing its parameters."""
    params = _unique_params(model)
    weights = sum(p.numel() * p.element_size() for p in params)
    grads = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    buffers = 3 if policy.name == "bf16-true" else 2               # Adam's moments (+ Kahan compensation)
    state_bytes = 1 if optim == "adamw_8bit" else policy.optimizer_state_dtype.itemsize
    optimizer = sum(p.numel() for p in params if p.requires_grad) * buffers * state_bytes
    return weights, grads, optimizer


@pytest.mark.parametrize("task", ["sst2", "squad_v2"])
@pytest.mark.parametrize("method", ["full", "lora"])
@pytest.mark.parametrize("shape", ["sheared", "small"])
def test_exact_parts_equal_the_models_own_parameters(task, method, shape):
    """Built on the meta device at Sheared-LLaMA-1.3B's published shape (no weights allocated), the method
    applied by tunebench.methods (PEFT for LoRA), then each precision policy: parameter, gradient and
    optimizer bytes equal the sum over the model's parameters, exactly."""
    hf = KNOWN_MODELS[SHEARED] if shape == "sheared" else SMALL
    size = size_from_hf_config(hf, shape)
    cfg = with_overrides(Config(), {"task": task, "method": method})
    model = apply_method(_model(hf, task, "meta"), cfg, get_task(task))
    split = param_split(size, method, cfg.lora, task)
    assert (split.trainable, split.total) == (sum(p.numel() for p in _unique_params(model) if p.requires_grad),
                                             sum(p.numel() for p in _unique_params(model)))
    for precision, model_dtype in POLICIES:
        policy = build_policy(precision, model_dtype, "cuda")
        apply_policy(model, policy)
        for optim in ("adamw_torch_fused", "adamw_8bit"):
            if optim == "adamw_8bit" and precision == "bf16-true":
                continue                                         # refused by precision.check_supported
            assert (weight_bytes(split, policy), gradient_bytes(split, policy),
                    optimizer_bytes(split.trainable, policy, optim)) == _measured(model, policy, optim), \
                (precision, model_dtype, optim)


def test_sheared_llama_full_fine_tuning_by_hand():
    """1,279,891,456 parameters in the classifier (no LM head): 4 + 4 + 8 bytes each under bf16-mixed."""
    size = lookup_model_size(Config().model)
    split = param_split(size, "full", Config().lora, "sst2")
    assert split.trainable == 32000 * 2048 + size.non_embedding + 2048 * 2 == 1_279_891_456
    est = estimate_memory(size, "full", Config().lora, "sst2", build_policy("bf16-mixed", "auto", "cuda"),
                          "adamw_torch_fused", 4, 512)
    assert (est.weights, est.gradients, est.optimizer) == (4 * split.trainable, 4 * split.trainable,
                                                           8 * split.trainable)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_optimizer_state_of_a_real_step(precision, one_thread):
    """The optimizer each policy trains with (torch AdamW; torch-optimi's Kahan AdamW under bf16-true), one
    step on a small real model: its state tensors add up to optimizer_bytes."""
    if precision == "bf16-true":
        pytest.importorskip("optimi")
    policy = build_policy(precision, "auto", "cuda")
    cfg = with_overrides(Config(), {"method": "lora"})
    torch.manual_seed(0)
    model = apply_policy(apply_method(_model(SMALL, "sst2", "cpu"), cfg, get_task("sst2")), policy)
    trainable = [p for p in model.parameters() if p.requires_grad]
    cls_kwargs = optimizer_cls_and_kwargs(policy, 1e-3, (0.9, 0.999), 1e-8, 0.0)
    cls, kwargs = cls_kwargs or (torch.optim.AdamW, {"lr": 1e-3})
    optimizer = cls(trainable, **kwargs)
    for p in trainable:
        p.grad = torch.ones_like(p)
    optimizer.step()
    state = sum(v.numel() * v.element_size() for s in optimizer.state.values() for k, v in s.items()
                if torch.is_tensor(v) and v.dim() > 0 and k != "step")
    size = size_from_hf_config(SMALL, "small")
    assert state == optimizer_bytes(param_split(size, "lora", cfg.lora, "sst2").trainable, policy, "adamw_torch")


# ---------------------------------------------------------------- the estimated parts against autograd


def _saved(model: torch.nn.Module, batch: dict, autocast: bool) -> tuple[int, int]:
    """(activation bytes, weight-copy bytes) autograd keeps for the backward of one forward pass: every saved
    tensor that is not a parameter, deduplicated by storage; a copy is a matmul's saved weight operand."""
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with ctx:
        loss = model(**batch).loss
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, tuple[int, bool]] = {}
    stack, visited = [loss.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in visited:
            continue
        visited.add(fn)
        for attr in dir(fn):
            if not attr.startswith("_saved_"):
                continue
            value = getattr(fn, attr, None)
            if torch.is_tensor(value) and value.untyped_storage().data_ptr() not in params:
                key = value.untyped_storage().data_ptr()
                is_copy = fn.name() == "MmBackward0" and attr == "_saved_mat2"
                saved[key] = (value.untyped_storage().nbytes(), saved.get(key, (0, False))[1] or is_copy)
        stack.extend(f for f, _ in fn.next_functions)
    return (sum(n for n, copy in saved.values() if not copy), sum(n for n, copy in saved.values() if copy))


def _tiny(method: str, policy, layers: int = 4):
    cfg = load_config([], ["model.name=tiny", f"method={method}", "model.max_length=128",
                           f"model.tiny.num_hidden_layers={layers}"])
    task, tok = get_task("sst2"), load_tokenizer(cfg)
    torch.manual_seed(0)
    model = apply_policy(apply_method(load_model(cfg, task, tok, device="cpu", dtype=policy.frozen_dtype), cfg,
                                      task), policy)
    return cfg, model.train()


@pytest.mark.parametrize("precision,model_dtype", POLICIES)
@pytest.mark.parametrize("method", ["full", "lora"])
def test_activations_and_copies_match_what_autograd_saves(method, precision, model_dtype, one_thread):
    """A 4-layer tiny model, one unpadded batch of 4 x 128 on this CPU under the policy (bf16-mixed: CPU
    autocast). Activations within 5% (the first layer's q/k/v under LoRA keep nothing: the frozen
    embeddings need no gradient; the final norm's internals are approximated). A CPU's dropout keeps a
    mask in the adapter's dtype, CUDA's a boolean one."""
    policy = build_policy(precision, model_dtype, "cuda")
    cfg, model = _tiny(method, policy)
    b, s = 4, 128
    ids = torch.randint(5, 50, (b, s), generator=torch.Generator().manual_seed(0))
    activations, copies = _saved(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                                         "labels": torch.zeros(b, dtype=torch.long)}, policy.autocast)
    size = lookup_model_size(cfg.model)
    mask = policy.trainable_dtype.itemsize
    padding_mask = b * s * s                     # an unpadded batch needs no mask
    estimate = activation_bytes(size, method, cfg.lora, policy, b, s, False, dropout_mask_bytes=mask) - padding_mask
    assert activations == pytest.approx(estimate, rel=0.05)
    expected_copies = weight_copy_bytes(size, method, cfg.lora, "sst2", policy, checkpointing=False)
    if method == "lora" and policy.autocast:
        # the first layer's q/k/v A matrices (and frozen fp32 weights, when cast): their input needs no gradient
        proj, cast_base = size.projections(), policy.frozen_dtype == torch.float32
        first = sum(cfg.lora.r * proj[n][0] + (proj[n][0] * proj[n][1] if cast_base else 0)
                    for n in ("q_proj", "k_proj", "v_proj"))
        expected_copies -= first * policy.compute_dtype.itemsize
    assert copies == expected_copies


def test_lora_dropout_costs_activation_memory():
    """LoRA dropout copies each adapter's input: more activation memory than full fine-tuning's at 0.1."""
    size = lookup_model_size(Config().model)
    policy = build_policy("bf16-mixed", "auto", "cuda")
    with_dropout, without = LoraConfig(), LoraConfig(dropout=0.0)
    full = layer_activation_bytes_per_token(size, "full", with_dropout, policy)
    assert layer_activation_bytes_per_token(size, "lora", with_dropout, policy) > full
    assert layer_activation_bytes_per_token(size, "lora", without, policy) < full
    h, i, c = 2048, 5504, 2
    norms = 2 * h * (4 + 4)                                 # fp32 input + fp32 normalized (trainable dtype)
    assert full == norms + c * (2 * h + 2 * h) + c * 3 * i + c * (5 * h + i)


def test_activations_scale_with_tokens_and_checkpointing_keeps_layer_inputs():
    size = lookup_model_size(Config().model)
    policy = build_policy("bf16-true", "auto", "cuda")
    lora = LoraConfig()
    one = activation_bytes(size, "full", lora, policy, 1, 512, False)
    per_layer = layer_activation_bytes_per_token(size, "full", lora, policy)
    outside = 512 * 2048 * (4 + 2) + 512 * 512
    assert one == 512 * 24 * per_layer + outside
    assert activation_bytes(size, "full", lora, policy, 4, 512, False) == 4 * one
    ckpt = activation_bytes(size, "full", lora, policy, 4, 512, True)
    assert ckpt == 4 * 512 * (24 * 2048 * 2 + per_layer) + 4 * outside


def test_peak_overlaps_gradients_with_activations_unless_accumulating():
    est = MemoryEstimate(params=None, weights=10, gradients=5, optimizer=20, weight_copies=3,
                         weight_copies_checkpointed=2, activations=4, activations_checkpointed=1)
    assert est.peak(False) == 10 + 20 + max(3 + 4, 5)
    assert est.peak(True) == 10 + 20 + max(2 + 1, 5 + 1)
    accumulating = MemoryEstimate(**{**est.__dict__, "accumulation": 2})
    assert accumulating.peak(False) == 10 + 20 + 5 + 3 + 4


def test_fits_leaves_the_reserve_free():
    est = MemoryEstimate(params=None, weights=GPU_MEMORY[24] - RESERVE_BYTES, gradients=0, optimizer=0,
                         weight_copies=0, weight_copies_checkpointed=0, activations=0, activations_checkpointed=0)
    assert est.fits(24, False) and not MemoryEstimate(**{**est.__dict__, "weights": est.weights + 1}).fits(24, False)
    assert GPU_MEMORY[24] < 22.5 * GIB < GPU_MEMORY[40]       # a "24 GB" L4 or A10G reports 22.5 GiB


def test_sheared_llama_verdicts():
    """The study's shape (batch 4 x 512, bf16-mixed): LoRA fits a 24 GB GPU; full fine-tuning with fp32 Adam
    needs 14.3 GiB before any activation."""
    size = lookup_model_size(Config().model)
    policy = build_policy("bf16-mixed", "auto", "cuda")
    lora = estimate_memory(size, "lora", LoraConfig(), "sst2", policy, "adamw_torch_fused", 4, 512)
    full = estimate_memory(size, "full", LoraConfig(), "sst2", policy, "adamw_torch_fused", 4, 512)
    assert lora.fits(24, False) and lora.peak(True) < lora.peak(False)
    assert (full.weights + full.optimizer) / GIB == pytest.approx(1_279_891_456 * 12 / GIB)
    assert full.fits(80, False) and full.peak(False) > lora.peak(False)
    eight_bit = estimate_memory(size, "full", LoraConfig(), "sst2", policy, "adamw_8bit", 4, 512)
    assert eight_bit.optimizer == 2 * 1_279_891_456


def test_unknown_vocabulary_is_refused():
    size = ModelSize(hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16, intermediate=128, vocab=None,
                     tied=False, source="x")
    with pytest.raises(ValueError, match="vocabulary size unknown"):
        param_split(size, "full", LoraConfig(), "sst2")
