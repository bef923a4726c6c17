"""The LoRA update as PEFT defines it: dW from the LoRA layer equals the merged model's W_after - W_before,
has rank <= r, and our intruder count agrees with PEFT's own intruder test (`reduce_intruder_dimension`)."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from peft.tuners.lora import LoraLayer

from tunebench.analysis.run import lora_spectrum
from tunebench.analysis.spectrum import (
    count_intruders,
    effective_rank,
    energy_rank,
    singular_values,
    update_spectrum,
)
from tunebench.config import Config, with_overrides
from tunebench.data.tasks import get_task
from tunebench.model import load_tokenizer
from tunebench.train import build_model

R = 4
PREFIX = "base_model.model."

pytestmark = pytest.mark.usefixtures("one_thread")



@pytest.fixture(scope="module")
def lora_model():
    """The tiny model with LoRA r=4 as the engine builds it, lora_B set to random values (a trained adapter)."""
    cfg = with_overrides(Config(), {"model.name": "tiny", "method": "lora", "lora.r": R, "tracking.backend": "none"})
    task = get_task(cfg.task)
    model = build_model(cfg, task, load_tokenizer(cfg), "cpu").eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    return model


def lora_layers(model) -> dict[str, LoraLayer]:
    return {n.removeprefix(PREFIX): m for n, m in model.named_modules() if isinstance(m, LoraLayer)}


def test_peft_delta_equals_merged_minus_base_and_has_rank_at_most_r(lora_model):
    layers = lora_layers(lora_model)
    assert len(layers) == 2 * 7                          # 2 layers x 7 projections
    merged = copy.deepcopy(lora_model).merge_and_unload()
    merged_modules = dict(merged.named_modules())
    for name, layer in layers.items():
        w_before = layer.get_base_layer().weight.detach()           # (d_out, d_in)
        delta = layer.get_delta_weight("default").detach()          # (d_out, d_in), B @ A * alpha / r
        w_after = merged_modules[name].weight.detach()
        torch.testing.assert_close(w_after - w_before, delta, atol=1e-6, rtol=0)
        assert torch.linalg.matrix_rank(delta).item() <= R
        s = singular_values(delta)
        assert 1 <= energy_rank(s) <= R
        # fp32 rounding leaves min(d_out, d_in) - r singular values of ~1e-7 s_1, which the entropy of s counts;
        # update_spectrum drops those below numpy's matrix-rank tolerance, leaving the r that carry the update
        assert effective_rank(s) > effective_rank(s[:R])
        assert update_spectrum(w_before, delta, w_after)["effective_rank"] == pytest.approx(
            effective_rank(s[:R]), rel=1e-12)
        assert 1 <= effective_rank(s[:R]) <= R


def test_lora_spectrum_rows_and_merged_state_match_peft_merge(lora_model, tmp_path):
    lora_model.save_pretrained(str(tmp_path / "adapter"))
    cfg = with_overrides(Config(), {"model.name": "tiny", "method": "lora", "lora.r": R})
    base = build_model(cfg.model_copy(update={"method": "full"}), get_task(cfg.task), load_tokenizer(cfg), "cpu")
    rows, merged_state = lora_spectrum(base, tmp_path / "adapter", top_k=10, eps=0.5, energy=0.9, device="cpu")
    expected = copy.deepcopy(lora_model).merge_and_unload().state_dict()
    assert [r["module"] for r in rows] == list(lora_layers(lora_model))
    assert all(1 <= r["energy_rank"] <= R and 1 <= r["effective_rank"] <= R for r in rows)
    for key in expected:
        if key.startswith("model."):                    # the backbone (the head is the saved trained copy)
            torch.testing.assert_close(merged_state[key], expected[key], atol=1e-6, rtol=0)


def test_intruder_count_agrees_with_peft_reduce_intruder_dimension(lora_model):
    intruders = pytest.importorskip("peft.tuners.lora.intruders", reason="peft < 0.19: no intruder reference")

    ours = {}
    for name, layer in lora_layers(lora_model).items():
        w_before = layer.get_base_layer().weight.detach()
        w_after = w_before + layer.get_delta_weight("default").detach()
        ours[name] = count_intruders(w_before, w_after, top_k=10, eps=0.5)
    messages: list[str] = []
    intruders.reduce_intruder_dimension(copy.deepcopy(lora_model), top_k=10, threshold_epsilon=0.5,
                              logging_sink=messages.append)
    theirs = {}
    for line in messages:
        m = re.match(r"(\S+): (?:No intruders|Intruders: (\d+))$", line)
        if m:
            theirs[m.group(1).removeprefix(PREFIX)] = int(m.group(2) or 0)
    assert theirs == ours
    assert sum(ours.values()) > 0                        # the comparison is not vacuous
