"""`tunebench bench`: token counting, the FLOPs formula against hand computations, the switches, gradient
checkpointing with LoRA, padding invariance, and an end-to-end run on the tiny model (no timing assertions)."""

from __future__ import annotations

import json

import pytest
import torch
from scipy import stats

from shared_assets import STORIES
from tunebench.bench import (
    BatchStats,
    RunTiming,
    accuracy_verdict,
    batch_stats,
    check_targets,
    count_non_pad_tokens,
    paired_speedups,
    project_eval_share,
    speedups,
    summarize,
    train_flops,
)
from tunebench.cli import main
from tunebench.config import load_config, with_overrides
from tunebench.data.tasks import get_task
from tunebench.flops import FlopParams, count_flop_params, peak_flops, train_flops_per_token

TINY = ["model.name=tiny", "tracking.backend=none", "data.builtin_train_size=96", "data.builtin_test_size=32",
        "data.validation_size=16", "model.max_length=64", "training.per_device_train_batch_size=4",
        "training.eval_train_examples=8", "training.per_device_eval_batch_size=16"]


# ---------------------------------------------------------------- token counting


def test_token_counting_excludes_padding():
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])   # (B=3, T=5)
    assert count_non_pad_tokens(mask) == 10
    assert count_non_pad_tokens(mask.tolist()) == 10
    stats = batch_stats(mask)
    assert stats == BatchStats(samples=3, non_pad_tokens=10, padded_len=5) and stats.padded_tokens == 15
    assert batch_stats([[1, 1, 0], [1, 0, 0]]) == BatchStats(2, 3, 3)


# ---------------------------------------------------------------- FLOPs


def test_flops_formula_by_hand():
    # full fine-tuning: N = 1000 non-embedding parameters (the 50-parameter embedding is left out), L=2, d=8
    full = count_flop_params([("model.embed_tokens.weight", 50, True), ("model.layers.0.w", 600, True),
                              ("score.weight", 400, True)], n_layers=2, d_model=8)
    assert full == FlopParams(frozen=0, trainable=1000, n_layers=2, d_model=8)
    assert train_flops_per_token(full, seq_len=10) == 6 * 1000 + 12 * 2 * 8 * 10          # 6N + 12LdT = 7920
    # LoRA: frozen base 900, adapters + head 100; PEFT's inactive head copy is not in the forward pass
    lora = count_flop_params([("base.model.embed_tokens.weight", 50, False), ("base.layers.0.w", 900, False),
                              ("base.layers.0.lora_A.default.weight", 60, True),
                              ("score.original_module.weight", 40, False),
                              ("score.modules_to_save.default.weight", 40, True)], n_layers=2, d_model=8)
    assert (lora.frozen, lora.trainable) == (900, 100)
    assert train_flops_per_token(lora, 10) == 4 * 900 + 6 * 100 + 1920                    # 6120
    # a batch's FLOPs: each non-pad token at the batch's padded length
    batches = [BatchStats(2, 15, 10), BatchStats(2, 4, 3)]
    assert train_flops(full, batches) == 15 * 7920 + 4 * (6000 + 12 * 2 * 8 * 3)


def _flop_params(cfg, method: str):
    from tunebench.bench.measure import flop_params_of
    from tunebench.model import load_tokenizer
    from tunebench.train import build_model

    cfg = with_overrides(cfg, {"method": method})
    model = build_model(cfg, get_task("sst2"), load_tokenizer(cfg), "cpu")
    return flop_params_of(model)


def test_flop_parameter_counts_of_the_tiny_model(tmp_path):
    # tiny: d=64, 2 layers, 4 heads / 2 KV heads (k, v are 64 x 32), MLP 128. Per layer q,o 2*4096 + k,v
    # 2*2048 + MLP 3*64*128 + 2 norms 128 = 36,992; x2 + final norm 64 + head 64*2 = 74,176.
    cfg = load_config([], TINY)
    full = _flop_params(cfg, "full")
    assert (full.frozen, full.trainable, full.n_layers, full.d_model) == (0, 74_176, 2, 64)
    # LoRA r=16 on the 7 projections: per layer 16*(128+96+96+128+3*192) = 16,384; x2 + head 128 = 32,896
    lora = _flop_params(cfg, "lora")
    assert (lora.frozen, lora.trainable) == (74_048, 32_896)


def test_flops_per_token_of_stories260k():
    # stories260K: d=64, 5 layers, 8 heads / 4 KV heads (head_dim 8: k, v 64 x 32), MLP 172.
    # Per layer 2*4096 + 2*2048 + 3*64*172 + 128 = 45,440; x5 + final norm 64 = 227,264; + SST-2 head 128.
    cfg = load_config([], [f"model.name={STORIES}"])
    full = _flop_params(cfg, "full")
    assert (full.frozen, full.trainable) == (0, 227_392)
    assert train_flops_per_token(full, 34) == 6 * 227_392 + 12 * 5 * 64 * 34 == 1_494_912
    # LoRA r=16: per layer 16*(128+96+96+128) + 3*16*236 = 18,496; x5 + head 128 = 92,608 trainable.
    lora = _flop_params(cfg, "lora")
    assert (lora.frozen, lora.trainable) == (227_264, 92_608)
    assert train_flops_per_token(lora, 34) == 4 * 227_264 + 6 * 92_608 + 130_560 == 1_595_264  # > full's


def test_peak_flops_table():
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert peak_flops("NVIDIA H100 PCIe") == 756.0e12
    assert peak_flops("NVIDIA H200") == 989.4e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312.0e12
    assert peak_flops("NVIDIA L4") == 121.0e12 and peak_flops("NVIDIA L40S") is None
    assert peak_flops("NVIDIA A10G") == 125.0e12
    assert peak_flops("cpu (x86_64)") is None and peak_flops(None) is None


def test_summary_is_the_median_repeat_and_ratios_compare_tokens_per_second():
    p = FlopParams(0, 1000, 2, 8)
    batches = [BatchStats(4, 100, 30), BatchStats(4, 60, 20)]
    runs = [RunTiming("tunebench", "full", r, s, batches) for r, s in enumerate((2.0, 1.0, 4.0))]
    s = summarize(runs, p, peak=1e9)
    assert s.elapsed_s == 2.0 and s.tokens_per_s == 80.0 and s.samples_per_s == 4.0 and s.step_time_s == 1.0
    assert s.padded_tokens == 200 and s.padding_share == pytest.approx(0.2) and s.mean_padded_len == 25
    assert s.mfu == pytest.approx(train_flops(p, batches) / 2.0 / 1e9)
    slow = summarize([RunTiming("original", "full", 0, 20.0, batches)], p, None)
    assert slow.mfu is None
    ratios = speedups([slow, s])
    assert ratios == {"original": pytest.approx(10.0)}
    assert check_targets("sst2", ratios) == {"original": {"ratio": pytest.approx(10.0), "target": 10.0, "met": True}}
    # paired: each round's ratio, then the median (a slow round slows every baseline in it alike)
    raw = [RunTiming("raw", "full", r, s, batches) for r, s in enumerate((1.8, 1.1, 3.0))]
    assert paired_speedups({"tunebench": runs, "raw": raw}) == {"raw": pytest.approx(0.9)}


def test_eval_share_projection_by_hand():
    # 1,000 train examples, batch 4, 3 epochs: 750 steps; every 100 steps -> 8 passes over 50 validation
    # examples, then 50 + 100 + 20 at the end: 570 examples at 0.01 s = 5.7 s against 750 x 0.02 = 15 s.
    p = project_eval_share(train_examples=1000, examples_per_step=4, epochs=3, eval_steps=100, step_time_s=0.02,
                           eval_s_per_example=0.01, validation_examples=50, final_eval_examples=170)
    assert (p["steps"], p["eval_interval"], p["evaluations"]) == (750, 100, 8)
    assert p["train_s"] == pytest.approx(15.0) and p["eval_s"] == pytest.approx(5.7)
    assert p["eval_share"] == pytest.approx(5.7 / 20.7)
    # a fraction of the run: 0.05 of 750 steps = every 38 steps, 20 passes
    f = project_eval_share(train_examples=1000, examples_per_step=4, epochs=3, eval_steps=0.05, step_time_s=0.02,
                           eval_s_per_example=0.01, validation_examples=50, final_eval_examples=170)
    assert (f["eval_interval"], f["evaluations"]) == (38, 20)
    assert f["eval_s"] == pytest.approx(0.01 * (20 * 50 + 170))
    m = project_eval_share(train_examples=1000, examples_per_step=4, epochs=3, eval_steps=0.05, step_time_s=0.02,
                           eval_s_per_example=0.01, validation_examples=50, final_eval_examples=170, max_steps=100)
    assert (m["steps"], m["eval_interval"], m["evaluations"]) == (100, 5, 20)     # max_steps replaces epochs


# ---------------------------------------------------------------- padding, switches, checkpointing


def test_padding_to_max_length_leaves_the_classifier_logits_unchanged():
    """Right padding + attention mask: the last real token never attends to a pad (stories260K, fp32)."""
    from transformers import DataCollatorWithPadding, default_data_collator

    from tunebench.bench.measure import pad_to_max_length
    from tunebench.model import load_tokenizer
    from tunebench.train import build_model

    cfg = load_config([], [f"model.name={STORIES}", "method=full"])
    tok = load_tokenizer(cfg)
    model = build_model(cfg, get_task("sst2"), tok, "cpu").eval()
    enc = tok(["a fine film .", "the plot was a dull and long mess that never ends ."])
    feats = [{"input_ids": i, "attention_mask": [1] * len(i)} for i in enc["input_ids"]]
    padded = pad_to_max_length(feats, tok.pad_token_id, 512)
    assert all(len(f["input_ids"]) == 512 for f in padded)
    assert sum(padded[0]["attention_mask"]) == len(feats[0]["input_ids"])
    with torch.no_grad():
        a = model(**DataCollatorWithPadding(tok)(feats)).logits
        b = model(**default_data_collator(padded)).logits
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("switch, message", [
    ("training.liger_kernels=true", "liger"),
    ("training.optim=adamw_8bit", "bitsandbytes"),
])
def test_unavailable_switches_fail_with_one_line(tmp_path, capsys, switch, message):
    code = main(["bench", "--steps", "1", "--repeats", "1", *TINY, f"output_dir={tmp_path}", switch])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err and switch.split("=")[0] in err


def test_cpu_switches_are_accepted(monkeypatch):
    from tunebench.errors import TunebenchError
    from tunebench.train import check_switches

    bf16 = ["training.precision=bf16-mixed", "model.dtype=bfloat16"]
    monkeypatch.setattr("tunebench.precision.bf16_supported", lambda device: False)   # a CPU without bf16
    with pytest.raises(TunebenchError, match="bf16 is not supported on this CPU"):    # one line, before loading
        check_switches(load_config([], [*TINY, *bf16]), "cpu")
    monkeypatch.setattr("tunebench.precision.bf16_supported", lambda device: True)    # a CPU that has bf16
    for extra in (["training.gradient_checkpointing=true"], ["training.optim=adamw_torch_fused"],
                  ["training.torch_compile=true", "training.pad_to_multiple_of=8"], bf16):
        check_switches(load_config([], [*TINY, *extra]), "cpu")   # no exception


def test_switches_name_what_is_missing(monkeypatch):
    """Without a GPU: the GPU-only kernels ask for one; without a compiler or triton, compile says which."""
    import importlib.util
    import shutil

    from tunebench.errors import TunebenchError
    from tunebench.train import check_switches

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name in ("liger_kernel", "bitsandbytes") else
                        (None if name == "triton" else real_find_spec(name, *a)))
    monkeypatch.setattr("tunebench.precision.bf16_supported", lambda device: True)   # the simulated GPU has bf16
    for switch, needs in (("training.liger_kernels=true", "CUDA GPU"), ("training.optim=adamw_8bit", "CUDA GPU")):
        with pytest.raises(TunebenchError, match=needs):
            check_switches(load_config([], [*TINY, switch]), "cpu")
        check_switches(load_config([], [*TINY, switch]), "cuda")   # package "installed" and a GPU: accepted
    with pytest.raises(TunebenchError, match="triton"):
        check_switches(load_config([], [*TINY, "training.torch_compile=true"]), "cuda")
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(TunebenchError, match="C\\+\\+ compiler"):
        check_switches(load_config([], [*TINY, "training.torch_compile=true"]), "cpu")


def test_gradient_checkpointing_keeps_lora_gradients(tmp_path):
    """Non-reentrant checkpointing (as build_training_args asks for it): same loss, same non-zero LoRA grads."""
    from tunebench.model import load_tokenizer
    from tunebench.train import CHECKPOINTING, build_model, build_training_args

    cfg = load_config([], [*TINY, "method=lora", "lora.dropout=0", "training.gradient_checkpointing=true"])
    task = get_task("sst2")
    tok = load_tokenizer(cfg)
    args = build_training_args(cfg, task, tmp_path, "cpu")
    kwargs = {f"{CHECKPOINTING}_kwargs": getattr(args, f"{CHECKPOINTING}_kwargs")}
    assert getattr(args, CHECKPOINTING) and kwargs == {f"{CHECKPOINTING}_kwargs": {"use_reentrant": False}}
    batch = dict(tok(["the movie was great .", "a dull plot ."], padding=True, return_tensors="pt"))
    batch["labels"] = torch.tensor([1, 0])

    def loss_and_grads(checkpointing: bool):
        model = build_model(cfg, task, tok, "cpu")
        with torch.no_grad():   # B starts at zero (so A's gradient would be zero): give B values
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))) * 0.1)
        if checkpointing:
            getattr(model, f"{CHECKPOINTING}_enable")(**kwargs)
        model.train()
        loss = model(**batch).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if "lora_" in n}

    loss_ref, grads_ref = loss_and_grads(False)
    loss_gc, grads_gc = loss_and_grads(True)
    assert torch.allclose(loss_gc, loss_ref, atol=1e-6)
    assert grads_gc.keys() == grads_ref.keys() and any("lora_A" in n for n in grads_gc)
    for name, g in grads_gc.items():
        assert g.abs().sum() > 0, name
        assert torch.allclose(g, grads_ref[name], atol=1e-6), name


# ---------------------------------------------------------------- end to end


def test_bench_end_to_end_on_the_tiny_model(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--steps", "3", "--repeats", "2", "--warmup-steps", "1", "--eval-share-steps", "2",
                 "--out", str(out), *TINY, f"output_dir={tmp_path}", "training.gradient_checkpointing=true"])
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    on_cpu = report["env"]["device"] == "cpu"
    assert set(report["methods"]) == {"lora", "full"}
    assert report["switches"]["gradient_checkpointing"] is True
    assert report["switches"]["dtype"] == ("float32" if on_cpu else "bfloat16")
    pad_atol = 1e-4 if on_cpu else 5e-2      # bf16 on a GPU
    assert len(report["load_avg"]["start"]) == 3 and report["padding_invariance"]["max_abs_logit_diff"] < pad_atol
    for method, entry in report["methods"].items():
        assert set(entry["baselines"]) == {"original", "trainer", "raw", "tunebench"}, method
        assert entry["same_tokens"]     # every baseline trained on the same non-pad tokens
        for name, s in entry["baselines"].items():
            assert s["steps"] == 3 and s["repeats"] == 2 and s["samples"] == 12, name
            assert s["tokens_per_s"] > 0 and s["step_time_s"] > 0 and (s["mfu"] is None) == on_cpu, name
            assert s["non_pad_tokens"] <= s["padded_tokens"]
        assert entry["baselines"]["original"]["mean_padded_len"] == 64     # padded to model.max_length
        assert entry["baselines"]["tunebench"]["padding_share"] < entry["baselines"]["original"]["padding_share"]
        assert set(entry["speedups"]) == {"original", "trainer", "raw"}
        assert 0 <= entry["eval_share"]["timing"]["eval_share"] <= 1
        # 2 steps, validation every step: 2 passes over 16 (the final one reused), test 32, train subset 8
        assert entry["eval_share"]["timing"]["validation_reused"] is True
        assert entry["eval_share"]["evaluated_examples"] == 2 * 16 + 32 + 8
    assert "tokens/s" in capsys.readouterr().out


def test_bench_accuracy_compares_original_and_tunebench(tmp_path):
    out = tmp_path / "acc.json"
    code = main(["bench", "--steps", "2", "--repeats", "1", "--warmup-steps", "0", "--accuracy", "--out", str(out),
                 *TINY, f"output_dir={tmp_path}", "training.num_train_epochs=1", "--methods", "full",
                 "--baselines", "tunebench", "--accuracy-seeds", "3", "4"])
    assert code == 0
    acc = json.loads(out.read_text())["methods"]["full"]["accuracy"]
    assert acc["metric"] == "accuracy" and acc["test_examples"] == 32 and acc["steps"] == 20   # 80 train / 4
    assert acc["seeds"] == [3, 4]
    for name in ("original", "tunebench"):
        assert [r["seed"] for r in acc["runs"][name]] == [3, 4]
        scores = [r["test"]["accuracy"] for r in acc["runs"][name]]
        assert all(0 <= a <= 1 and a * 32 == round(a * 32) for a in scores)
        assert acc["mean_points"][name] == pytest.approx(50 * sum(scores))
        assert all(r["tokens_per_s"] > 0 for r in acc["runs"][name])
    assert acc["difference_points"] == pytest.approx(acc["mean_points"]["tunebench"] - acc["mean_points"]["original"])


def test_accuracy_verdict_compares_means_over_seeds_with_a_paired_equivalence_test():
    v = accuracy_verdict({"original": [0.75, 0.77, 0.73], "tunebench": [0.76, 0.74, 0.745]})
    assert v["mean_points"] == {"original": pytest.approx(75.0), "tunebench": pytest.approx(74.833333)}
    assert v["sd_points"]["original"] == pytest.approx(2.0)
    assert v["difference_points"] == pytest.approx(-1 / 6)
    assert v["per_seed_difference_points"] == pytest.approx([1.0, -3.0, 1.5])
    assert v["mean_within_margin"] is True                  # the point estimate is inside +-1 ...
    d = [1.0, -3.0, 1.5]                                    # ... but three noisy seeds cannot show equivalence
    p = max(stats.ttest_1samp(d, -1, alternative="greater").pvalue, stats.ttest_1samp(d, 1, alternative="less").pvalue)
    assert v["equivalence"]["p"] == pytest.approx(p) and v["equivalence"]["equivalent"] is False
    tight = accuracy_verdict({"original": [0.750, 0.770, 0.730, 0.760], "tunebench": [0.751, 0.769, 0.7315, 0.7605]})
    assert tight["equivalence"]["equivalent"] is True
    one = accuracy_verdict({"original": [0.70], "tunebench": [0.715]})
    assert one["sd_points"] == {"original": None, "tunebench": None}
    assert one["difference_points"] == pytest.approx(1.5) and not one["mean_within_margin"]
    assert one["equivalence"]["design"] == "none" and one["equivalence"]["equivalent"] is False
    # SQuAD F1 is already in points (0-100): no second x100
    qa = accuracy_verdict({"original": [71.2, 70.0], "tunebench": [71.0, 70.1]}, scale=1.0)
    assert qa["difference_points"] == pytest.approx(-0.05) and qa["mean_within_margin"]


def test_accuracy_seeds_need_accuracy(capsys):
    assert main(["bench", "--steps", "2", *TINY, "--accuracy-seeds", "1", "2"]) == 2
    assert "--accuracy-seeds: only with --accuracy" in capsys.readouterr().err


def test_training_on_batches_padded_to_max_length_gives_the_same_model():
    """Padding (right, masked) changes no gradient: three steps on the same batches, dynamically padded or
    padded to max_length, end at the same weights (full fine-tuning; LoRA dropout would draw other masks)."""
    from transformers import DataCollatorWithPadding, default_data_collator

    from tunebench.bench.measure import pad_to_max_length
    from tunebench.model import load_tokenizer
    from tunebench.train import build_model

    cfg = load_config([], [*TINY, "method=full"])
    task, tok = get_task("sst2"), load_tokenizer(cfg)
    texts = [["the movie was great .", "a dull plot ."], ["so good .", "bad ending and a dull plot ."],
             ["great .", "the plot was great ."]]
    feats = [[{"input_ids": i, "attention_mask": [1] * len(i), "labels": n % 2}
              for n, i in enumerate(tok(t)["input_ids"])] for t in texts]

    def train(collate) -> torch.nn.Module:
        model = build_model(cfg, task, tok, "cpu").train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for batch in feats:
            model(**collate(batch)).loss.backward()
            opt.step()
            opt.zero_grad()
        return model

    dynamic = train(DataCollatorWithPadding(tok))
    padded = train(lambda b: default_data_collator(pad_to_max_length(b, tok.pad_token_id, cfg.model.max_length)))
    for (name, a), b in zip(dynamic.named_parameters(), padded.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name


@pytest.mark.parametrize("method", ["lora", "full"])
def test_sequential_eval_trainer_trains_exactly_like_the_stock_trainer(tmp_path, method):
    """The per-step shortcuts (flop count, model.train, clipping over trainable parameters, zero_grad of the
    trainable ones) change no number: same losses, same grad norms, same final weights as transformers'
    Trainer on the same batches; model.zero_grad is restored and no gradient is left behind."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    from tunebench.bench.measure import to_dataset
    from tunebench.model import load_tokenizer
    from tunebench.train import FastPathTrainer, build_model

    cfg = load_config([], [*TINY, f"method={method}"])
    task, tok = get_task("sst2"), load_tokenizer(cfg)
    texts = ["the movie was great .", "a dull plot .", "so good .", "bad ending and a dull plot .", "great .",
             "the plot was great ."] * 2
    feats = [{"input_ids": i, "attention_mask": [1] * len(i), "labels": n % 2, "length": len(i)}
             for n, i in enumerate(tok(texts)["input_ids"])]

    def train(cls):
        set_seed(0)
        model = build_model(cfg, task, tok, "cpu")
        args = TrainingArguments(output_dir=str(tmp_path / cls.__name__), max_steps=3, per_device_train_batch_size=4,
                                 learning_rate=1e-2, max_grad_norm=0.5, logging_steps=1, save_strategy="no",
                                 report_to="none", disable_tqdm=True, use_cpu=True, seed=0)
        trainer = cls(model=model, args=args, data_collator=DataCollatorWithPadding(tok),
                      train_dataset=to_dataset(feats))
        trainer.train()
        logs = [v for h in trainer.state.log_history if "loss" in h for v in (h["loss"], h["grad_norm"])]
        return model, logs

    ours, our_logs = train(FastPathTrainer)
    stock, stock_logs = train(Trainer)
    assert len(our_logs) == 6 and our_logs == pytest.approx(stock_logs, rel=1e-6)
    for (name, a), b in zip(ours.named_parameters(), stock.parameters(), strict=True):
        assert torch.equal(a, b), name
    assert "zero_grad" not in vars(ours) and all(p.grad is None for p in ours.parameters())


def test_trainer_fast_paths_switch_chooses_the_trainer_class(tmp_path):
    """training.trainer_fast_paths: the speed patches (tunebench.fast_paths) on by default, off = the correctness
    overrides alone (sequential evaluation, the precision policy kept)."""
    from transformers import DataCollatorWithPadding

    from tunebench.fast_paths import FastPathsMixin
    from tunebench.model import load_tokenizer
    from tunebench.precision import resolve_policy
    from tunebench.train import (
        SequentialEvalTrainer,
        build_model,
        build_trainer,
        build_training_args,
        prepare_splits,
    )

    base = load_config([], [*TINY, "method=lora"])
    task, tok = get_task("sst2"), load_tokenizer(base)
    splits = prepare_splits(base, task, tok)
    chosen = {}
    for fast in (True, False):
        cfg = with_overrides(base, {"training.trainer_fast_paths": fast})
        trainer = build_trainer(cfg, task, build_model(cfg, task, tok, "cpu"),
                                build_training_args(cfg, task, tmp_path / str(fast), "cpu"),
                                DataCollatorWithPadding(tok), splits["train"].dataset(), splits["validation"], [],
                                resolve_policy(cfg, "cpu"))
        chosen[fast] = (isinstance(trainer, SequentialEvalTrainer), isinstance(trainer, FastPathsMixin))
    assert chosen == {True: (True, True), False: (True, False)}


def test_trainable_zero_grad_follows_deep_copies_and_torch_semantics(tmp_path):
    """The zero_grad that FastPathsMixin installs during train(): a deep copy of the model (an EMA
    or snapshot callback) clears its own gradients, and set_to_none=False zeroes in place like torch."""
    import copy

    from transformers import TrainerCallback, TrainingArguments

    from tunebench.train import FastPathTrainer

    seen = {}

    class CopyDuringTraining(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if "copy" in seen:
                return
            twin = copy.deepcopy(model)
            for p in twin.parameters():
                p.grad = torch.ones_like(p)
            for p in model.parameters():
                p.grad = torch.full_like(p, 2.0)
            twin.zero_grad(set_to_none=False)
            seen["copy"] = all(p.grad is not None and not p.grad.any() for p in twin.parameters())
            seen["original"] = all(p.grad is not None and bool((p.grad == 2).all()) for p in model.parameters())
            model.zero_grad()
            seen["cleared"] = all(p.grad is None for p in model.parameters())

    class Regression(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3, 2)

        def forward(self, x, labels=None):
            return {"loss": ((self.linear(x) - labels) ** 2).mean()}

    torch.manual_seed(0)
    model = Regression()
    data = [{"x": torch.randn(3), "labels": torch.randn(2)} for _ in range(4)]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2,
                             save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True)
    FastPathTrainer(model=model, args=args, train_dataset=data, callbacks=[CopyDuringTraining()]).train()
    assert seen == {"copy": True, "original": True, "cleared": True}
    assert "zero_grad" not in vars(model)


def test_bench_accuracy_chooses_the_squad_null_threshold_on_validation(monkeypatch, tmp_path):
    """Both paths score validation first and pass its threshold to test (as train_and_evaluate does)."""
    from types import SimpleNamespace

    import tunebench.bench.measure as br
    from tunebench.features import Split

    def split(tag: str, n: int) -> Split:
        return Split([{"id": f"{tag}{i}"} for i in range(n)], [{"input_ids": [5, 6], "attention_mask": [1, 1],
                                                                "split": tag} for _ in range(n)])

    data = br.BenchData(get_task("squad_v2"), SimpleNamespace(pad_token_id=0), [], [],
                        {"train": split("train", 8), "validation": split("validation", 3), "test": split("test", 5)})
    cfg = load_config([], ["task=squad_v2", "model.name=tiny", "qa.doc_stride=8", "model.max_length=32",
                           "training.per_device_train_batch_size=4", "training.num_train_epochs=1"])

    def fake_run(name):
        def run(scfg, data, feats, out_dir, device, warmup, steps):
            trainer = SimpleNamespace(name=name, seed=scfg.training.seed)
            return SimpleNamespace(trainer=trainer, timing=SimpleNamespace(elapsed_s=1.0, non_pad_tokens=10))
        return run

    calls = []

    def fake_evaluate(trainer, task, sp, scfg, null_threshold=None):
        which, width = sp.features[0]["split"], len(sp.features[0]["input_ids"])
        calls.append((trainer.name, trainer.seed, which, width, null_threshold))
        if which == "validation":   # a threshold per model, as if chosen on its validation scores
            return {"f1": 0.0}, [], -1.0 * trainer.seed - (0.5 if trainer.name == "original" else 0.0)
        return {"f1": 40.0 + trainer.seed * (2 if trainer.name == "original" else 3)}, [], null_threshold

    monkeypatch.setattr(br, "run_original", fake_run("original"))
    monkeypatch.setattr(br, "run_tunebench", fake_run("tunebench"))
    monkeypatch.setattr(br, "evaluate_split", fake_evaluate)
    acc = br.measure_accuracy(cfg, data, "cpu", tmp_path, lambda line: None, seeds=[1, 2])
    assert calls == [  # validation (padded to max_length 32 on the original path) first, then test with its threshold
        ("original", 1, "validation", 32, None), ("original", 1, "test", 32, -1.5),
        ("tunebench", 1, "validation", 2, None), ("tunebench", 1, "test", 2, -1.0),
        ("original", 2, "validation", 32, None), ("original", 2, "test", 32, -2.5),
        ("tunebench", 2, "validation", 2, None), ("tunebench", 2, "test", 2, -2.0),
    ]
    assert [r["null_threshold"] for r in acc["runs"]["original"]] == [-1.5, -2.5]
    assert [r["test"]["f1"] for r in acc["runs"]["tunebench"]] == [43.0, 46.0]
    assert acc["metric"] == "f1" and acc["test_examples"] == 5
