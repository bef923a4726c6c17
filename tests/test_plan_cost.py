"""Cost estimates: parameter counts against published numbers, tokens and FLOPs by the stated convention."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunebench.config import Config, ModelConfig, with_overrides
from tunebench.plan.cost import (
    KNOWN_MODELS,
    MEAN_TOKENS_PER_EXAMPLE,
    estimate_run_cost,
    flops_per_token,
    lookup_model_size,
    lora_params,
    size_from_hf_config,
    tiny_size,
    tokens_per_example,
    train_examples,
    train_tokens,
)
from tunebench.plan.progress import estimate_remaining_s

SHARED_MODEL = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "stories260K"


@pytest.mark.parametrize("name,total", [
    ("princeton-nlp/Sheared-LLaMA-1.3B", 1_345_423_360),   # the model card's count
    ("meta-llama/Llama-2-7b-hf", 6_738_415_616),
    ("HuggingFaceTB/SmolLM2-135M", 134_515_008),
])
def test_published_parameter_counts(name, total):
    assert size_from_hf_config(KNOWN_MODELS[name], name).total == total


def test_sheared_llama_by_hand():
    size = lookup_model_size(ModelConfig(name="princeton-nlp/Sheared-LLaMA-1.3B"))
    h, i, layers, vocab = 2048, 5504, 24, 32000
    per_layer = 4 * h * h + 3 * h * i + 2 * h
    assert size.non_embedding == layers * per_layer + h
    assert size.total == size.non_embedding + 2 * vocab * h  # untied embeddings and LM head
    # LoRA r=16 on all 7 projections: r * (in + out) each
    assert lora_params(size, Config().lora) == layers * 16 * (4 * (h + h) + 3 * (h + i))


@pytest.mark.skipif(not SHARED_MODEL.is_dir(), reason="../shared/models/stories260K not present")
def test_local_folder_reads_config_json():
    size = lookup_model_size(ModelConfig(name=str(SHARED_MODEL)))
    assert size.total == 260_032  # the shared README's count (tied embeddings, GQA, head_dim 8)


def test_tiny_and_unknown_models():
    tiny = tiny_size(ModelConfig(name="tiny"))
    h, i = 64, 128
    kv = h // 4 * 2
    assert tiny.non_embedding == 2 * (h * h * 2 + 2 * h * kv + 3 * h * i + 2 * h) + h
    assert lookup_model_size(ModelConfig(name="someone/unknown-model")) is None
    cost = estimate_run_cost(Config(model=ModelConfig(name="someone/unknown-model")), None)
    assert cost.flops is None and cost.train_tokens > 0


def test_train_examples_carve_validation_then_cap():
    cfg = Config()
    assert train_examples("rte", with_overrides(cfg, {"data.source": "local"}).data) == 2490 - 249
    assert train_examples("rte", with_overrides(cfg, {"data.source": "hub", "data.validation_size": 500}).data) == 1990
    assert train_examples("sst2", with_overrides(cfg, {"data.source": "local",
                                                       "data.max_train_examples": 2000}).data) == 2000
    assert train_examples("mrpc", cfg.data) == 900  # builtin: 1000 generated, 10% held out


def test_tokens_and_flops_follow_the_convention():
    size = lookup_model_size(ModelConfig())
    full = with_overrides(Config(), {"task": "mrpc", "method": "full", "data.source": "local"})
    tokens = round(3301 * 3.0) * MEAN_TOKENS_PER_EXAMPLE["mrpc"]
    assert train_tokens(full) == tokens
    assert estimate_run_cost(full, size).flops == 6 * size.non_embedding * tokens
    lora = with_overrides(full, {"method": "lora"})
    a = lora_params(size, lora.lora)
    assert estimate_run_cost(lora, size).flops == (4 * size.non_embedding + 6 * a) * tokens
    assert flops_per_token(with_overrides(full, {"training.gradient_checkpointing": True}), size) \
        == 8 * size.non_embedding
    steps = with_overrides(full, {"training.max_steps": 100, "training.gradient_accumulation_steps": 2})
    assert train_tokens(steps) == 100 * 4 * 2 * 62
    assert train_tokens(with_overrides(full, {"model.max_length": 32})) == round(3301 * 3.0) * 32


def test_builtin_tokens_are_measured():
    cfg = with_overrides(Config(), {"task": "sst2", "model.name": "tiny"})
    assert 3 < tokens_per_example(cfg) < MEAN_TOKENS_PER_EXAMPLE["sst2"]  # short synthetic sentences


def test_time_left_uses_throughput():
    assert estimate_remaining_s(0, 10, 5) is None
    assert estimate_remaining_s(2, 10, 6) == 30
    assert estimate_remaining_s(2, 10, 0) == 0
