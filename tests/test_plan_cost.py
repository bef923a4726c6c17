"""Cost estimates: parameter counts against published numbers, tokens, FLOPs by the benchmark's convention
(tunebench.bench), GPU-hours at an assumed or a measured MFU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunebench.cli import main
from tunebench.config import Config, ModelConfig, with_overrides
from tunebench.errors import TunebenchError
from tunebench.flops import peak_flops, train_flops_per_token
from tunebench.plan.cost import (
    ASSUMED,
    KNOWN_MODELS,
    RunCost,
    estimate_run_cost,
    flop_params,
    flops_per_token,
    gpu_hours,
    head_params,
    load_measured,
    lookup_model_size,
    lora_params,
    planning_peak,
    size_from_hf_config,
    tiny_size,
    tokens_per_example,
    train_examples,
    train_tokens,
)
from tunebench.plan.progress import estimate_remaining_s
from tunebench.tasks import get_task

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
    """The benchmark's convention (tunebench.bench, PaLM): 6N + 12LdT per token for full fine-tuning,
    4N_frozen + 6N_trainable + 12LdT for LoRA, T = the task's mean tokens per example; by hand for
    Sheared-LLaMA-1.3B on MRPC (2 labels, 62 tokens per example)."""
    size = lookup_model_size(ModelConfig())
    full = with_overrides(Config(), {"task": "mrpc", "method": "full", "data.source": "local"})
    tokens = round(3301 * 3.0) * get_task("mrpc").mean_tokens
    assert train_tokens(full) == tokens == 9903 * 62 == 613_986
    n = 24 * (4 * 2048 * 2048 + 3 * 2048 * 5504 + 2 * 2048) + 2048    # non-embedding weights
    assert n == size.non_embedding == 1_214_351_360
    head = 2048 * 2                                                    # score: hidden x 2 labels, no bias
    attention = 12 * 24 * 2048 * 62                                    # 12 L d T
    assert attention == 36_569_088
    per_token_full = 6 * (n + head) + attention
    assert per_token_full == 6 * 1_214_355_456 + 36_569_088 == 7_322_701_824
    assert flops_per_token(full, size) == per_token_full
    assert estimate_run_cost(full, size).flops == per_token_full * tokens == 4_496_036_402_110_464
    lora = with_overrides(full, {"method": "lora"})
    a = 24 * 16 * (4 * (2048 + 2048) + 3 * (2048 + 5504))                # r (in + out) on all 7 projections
    assert a == lora_params(size, lora.lora) == 14_991_360
    per_token_lora = 4 * n + 6 * (a + head) + attention
    assert per_token_lora == 4_857_405_440 + 6 * 14_995_456 + 36_569_088 == 4_983_947_264
    assert estimate_run_cost(lora, size).flops == per_token_lora * tokens
    # gradient checkpointing recomputes the forward: 2N (every weight) + attention's forward third, 4 L d T
    ckpt = with_overrides(full, {"training.gradient_checkpointing": True})
    recompute = 2 * (n + head) + 4 * 24 * 2048 * 62
    assert recompute == 2_428_710_912 + 12_189_696 == 2_440_900_608
    assert flops_per_token(ckpt, size) == per_token_full + recompute == 9_763_602_432
    cost = estimate_run_cost(ckpt, size)
    assert (cost.flops, cost.recompute_flops, cost.model_flops) == ((per_token_full + recompute) * tokens,
                                                                   recompute * tokens, per_token_full * tokens)
    steps = with_overrides(full, {"training.max_steps": 100, "training.gradient_accumulation_steps": 2})
    assert train_tokens(steps) == 100 * 4 * 2 * 62
    assert train_tokens(with_overrides(full, {"model.max_length": 32})) == round(3301 * 3.0) * 32
    # T is capped with the tokens: 12 L d T at T = max_length = 32
    short = with_overrides(full, {"model.max_length": 32})
    assert flops_per_token(short, size) == 6 * (n + head) + 12 * 24 * 2048 * 32


def test_squad_head_has_a_bias_and_shares_the_convention():
    """qa_outputs is hidden x 2 + a bias of 2; SQuAD's mean of 200 tokens is T."""
    size = lookup_model_size(ModelConfig())
    cfg = with_overrides(Config(), {"task": "squad_v2", "method": "full", "data.source": "local"})
    assert head_params(size, "squad_v2") == 2048 * 2 + 2
    assert flops_per_token(cfg, size) == 6 * (1_214_351_360 + 4098) + 12 * 24 * 2048 * 200
    p = flop_params(with_overrides(cfg, {"method": "lora"}), size)
    assert (p.frozen, p.trainable) == (1_214_351_360, 14_991_360 + 4098)
    assert train_flops_per_token(p, 200) == flops_per_token(with_overrides(cfg, {"method": "lora"}), size)


def test_gpu_hours_use_the_benchmarks_peak_table():
    """One home for peaks: the planning GPU's is flops.PEAK_BF16_FLOPS's H100 (SXM) entry, 989.4 TFLOP/s."""
    assert planning_peak() == peak_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert gpu_hours(989.4e12 * 0.4 * 3600) == pytest.approx(1.0, rel=1e-12)
    assert ASSUMED.hours(RunCost(1, 1, 989.4e12 * 0.4 * 3600, 0.0), "full") == pytest.approx(1.0, rel=1e-12)


def _measured_file(tmp_path: Path, summary: dict) -> Path:
    path = tmp_path / "gpu_check.json"
    path.write_text(json.dumps({"summary": summary, "other": "ignored"}))
    return path


H100 = "NVIDIA H100 80GB HBM3"
SUMMARY = {"lora": {"mfu": 0.25, "tokens_per_s": 9000.0, "device_name": H100},
           "full": {"mfu": 0.5, "tokens_per_s": 6000.0, "device_name": H100}}


def test_measured_mfu_replaces_the_assumed_one(tmp_path):
    """Hours = model FLOPs (no recompute: MFU's convention) / (the device's peak x the method's MFU)."""
    util = load_measured(_measured_file(tmp_path, SUMMARY))
    size = lookup_model_size(ModelConfig())
    cfg = with_overrides(Config(), {"task": "rte", "method": "full", "data.source": "local",
                                    "training.gradient_checkpointing": True})
    cost = estimate_run_cost(cfg, size)
    assert cost.recompute_flops > 0
    assert util.hours(cost, "full") == cost.model_flops / (989.4e12 * 0.5) / 3600
    assert util.hours(cost, "lora") == cost.model_flops / (989.4e12 * 0.25) / 3600
    assert ASSUMED.hours(cost, "full") == cost.flops / (989.4e12 * 0.4) / 3600   # executed FLOPs at 40%
    assert util.unit() == f"{H100}-h" and "lora 25.0%" in util.describe()


def test_plan_show_measured(tmp_path, capsys):
    plan = tmp_path / "p.yaml"
    plan.write_text("name: p\ntasks: [rte]\nmethods: [lora, full]\nseeds: [42]\n"
                    "overrides: {data.source: local}\n")
    path = _measured_file(tmp_path, SUMMARY)
    assert main(["plan", "show", str(plan), "--measured", str(path)]) == 0
    out = capsys.readouterr().out
    size = lookup_model_size(ModelConfig())
    for method, mfu in (("lora", 0.25), ("full", 0.5)):
        cfg = with_overrides(Config(), {"task": "rte", "method": method, "data.source": "local"})
        hours = estimate_run_cost(cfg, size).flops / (989.4e12 * mfu) / 3600
        line = next(line for line in out.splitlines() if line.strip().startswith(f"rte       {method}"))
        assert f"(~{hours:.3g} {H100}-h)" in line
    assert f"MFU measured in {path}" in out
    assert main(["plan", "show", str(plan)]) == 0
    assert "H100-h at an assumed 40% of 989.4 TFLOP/s" in capsys.readouterr().out


def test_measured_tokens_per_s_at_the_tasks_length_give_the_hours(tmp_path):
    """The GPU check's task_lengths: a task measured at its own mean length takes training tokens / its tokens/s
    (SST-2's 15-token examples reach far less than the MFU at a padded 512 says); others keep the MFU."""
    summary = {m: {**v, "tokens_per_s_by_task": {"rte": 2000.0 if m == "full" else 3000.0}}
               for m, v in SUMMARY.items()}
    util = load_measured(_measured_file(tmp_path, summary))
    size = lookup_model_size(ModelConfig())
    for task in ("rte", "sst2"):
        cfg = with_overrides(Config(), {"task": task, "method": "full", "data.source": "local"})
        cost = estimate_run_cost(cfg, size)
        want = cost.train_tokens / 2000.0 / 3600 if task == "rte" else cost.model_flops / (989.4e12 * 0.5) / 3600
        assert util.hours(cost, "full", task) == want
    assert "tasks rte at the tokens/s measured at their own mean length" in util.describe()
    bad = {m: {**v, "tokens_per_s_by_task": {"rte": 0}} for m, v in SUMMARY.items()}
    with pytest.raises(TunebenchError, match="tokens_per_s_by_task"):
        load_measured(_measured_file(tmp_path, bad))


@pytest.mark.parametrize("content,message", [
    (None, "no such file"),
    ("{not json", "invalid JSON"),
    ('{"results": {}}', "expected a `summary` mapping"),
    ('{"summary": {"lora": {"mfu": 1.5, "device_name": "NVIDIA H100"}}}', "summary.lora.mfu = 1.5"),
    ('{"summary": {"lora": {"mfu": 0.3, "device_name": "Tesla T4"}}}', "no known bf16 peak"),
    ('{"summary": {"lora": {"mfu": null, "device_name": "cpu"}}}', "summary.lora.mfu = None: the check measured"),
    ('{"summary": {"lora": {"mfu": 0.3}}}', "summary.lora.device_name = None"),
    ('{"summary": {"lora": {"mfu": 0.3, "device_name": "NVIDIA H100", "tokens_per_s": -1}}}',
     "summary.lora.tokens_per_s = -1"),
    ('{"summary": {"lora": {"mfu": 0.3, "device_name": "NVIDIA H100"}}}', "no measurement for method 'full'"),
])
def test_plan_show_measured_bad_input(tmp_path, capsys, content, message):
    plan = tmp_path / "p.yaml"
    plan.write_text("name: p\ntasks: [rte]\nmethods: [lora, full]\nseeds: [42]\n")
    path = tmp_path / "m.json"
    if content is not None:
        path.write_text(content)
    assert main(["plan", "show", str(plan), "--measured", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_builtin_tokens_are_measured():
    cfg = with_overrides(Config(), {"task": "sst2", "model.name": "tiny"})
    assert 3 < tokens_per_example(cfg) < get_task("sst2").mean_tokens  # short synthetic sentences


def test_time_left_uses_throughput():
    assert estimate_remaining_s(0, 10, 5) is None
    assert estimate_remaining_s(2, 10, 6) == 30
    assert estimate_remaining_s(2, 10, 0) == 0
