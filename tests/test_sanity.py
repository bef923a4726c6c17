"""Each sanity check passes on a healthy setup and fails, naming the fault, on a deliberately broken one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from shared_assets import SHARED, STORIES
from tunebench.cli import main
from tunebench.config import load_config, with_overrides
from tunebench.data.tasks import get_task
from tunebench.methods import apply_method, build_lora_config, expected_lora_trainable, wrapped_linears
from tunebench.sanity import (
    CHECKS,
    ModelSanityChecker,
    check_data_loading,
    check_lora_setup,
    check_model_loading,
    check_reproducibility,
    check_wandb_logging,
    inspect_gradient_flow,
    inspect_lora_setup,
    run_checks,
)

TINY = ["model.name=tiny", "tracking.backend=none", "data.builtin_train_size=200", "data.builtin_test_size=40",
        "data.validation_size=40", "model.max_length=128", "training.per_device_train_batch_size=8"]


@pytest.fixture
def cfg(tmp_path):
    return load_config([], [*TINY, f"output_dir={tmp_path}"])


@pytest.fixture
def sst2():
    return get_task("sst2")


def test_every_check_passes_on_a_healthy_setup(cfg, tmp_path, capsys):
    code = main(["sanity", "--tasks", "sst2", "rte", *TINY, f"output_dir={tmp_path}", "experiment=ok"])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "ok" / "sanity.json").read_text())
    assert code == 0, out
    assert report["passed"] and {c["check"] for c in report["checks"]} == {*CHECKS, "precision_parity"}
    per_method = [c for c in report["checks"] if c["check"] in ("gradient_flow", "overfitting", "reproducibility")]
    assert sorted((c["check"], c["method"]) for c in per_method) == sorted(
        (c, m) for c in ("gradient_flow", "overfitting", "reproducibility") for m in ("lora", "full"))
    assert all(c["passed"] for c in report["checks"])


# ---------------------------------------------------------------- 1 model loading


def _copy_stories(tmp_path: Path) -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(STORIES, dst)
    return dst


def test_model_loading_passes_on_the_real_checkpoint(cfg, sst2):
    r = check_model_loading(with_overrides(cfg, {"model.name": str(STORIES)}), sst2)
    assert r.passed, r.detail
    assert "finite" in r.figure


def test_model_loading_fails_on_a_checkpoint_missing_a_weight(cfg, sst2, tmp_path):
    ckpt = _copy_stories(tmp_path)
    weights = load_file(ckpt / "model.safetensors")
    del weights["model.layers.2.mlp.up_proj.weight"]
    save_file(weights, ckpt / "model.safetensors", metadata={"format": "pt"})
    r = check_model_loading(with_overrides(cfg, {"model.name": str(ckpt)}), sst2)
    assert not r.passed and "model.layers.2.mlp.up_proj.weight" in r.detail


def test_model_loading_fails_on_a_truncated_checkpoint(cfg, sst2, tmp_path):
    ckpt = _copy_stories(tmp_path)
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])
    r = check_model_loading(with_overrides(cfg, {"model.name": str(ckpt)}), sst2)
    assert not r.passed and r.detail


def test_model_loading_fails_without_pad_token(cfg, sst2):
    from tunebench.model import load_model, load_tokenizer

    tok = load_tokenizer(cfg)
    model = load_model(cfg, sst2, tok, device="cpu")
    model.config.pad_token_id = None
    from tunebench.sanity import inspect_model_loading

    r = inspect_model_loading(model, tok, sst2, dict(tok(["a good film ."], return_tensors="pt")))
    assert not r.passed and "pad_token_id" in r.detail


# ---------------------------------------------------------------- 2 LoRA setup


def _lora_inputs(cfg, task):
    from tunebench.model import load_model, load_tokenizer

    tok = load_tokenizer(cfg)
    torch.manual_seed(0)
    base = load_model(cfg, task, tok, device="cpu").eval()
    batch = dict(tok(["a good film .", "a dull plot ."], padding=True, return_tensors="pt"))
    with torch.no_grad():
        logits = base(**batch).logits
    want = set(wrapped_linears(base, cfg.lora.target_modules))
    return base, batch, logits, expected_lora_trainable(base, cfg, task), want


def test_lora_setup_passes_and_states_the_formula(cfg, sst2):
    r = check_lora_setup(cfg, sst2)
    assert r.passed, r.detail
    assert "= formula" in r.figure and "7 modules x 2 layers" in r.figure


def test_lora_setup_fails_when_lora_wraps_no_module(cfg, sst2):
    r = check_lora_setup(with_overrides(cfg, {"lora.target_modules": ["nothing_here"]}), sst2)
    assert not r.passed and "nothing_here" in r.detail


def test_lora_setup_fails_when_a_layer_is_left_out(cfg, sst2):
    from peft import get_peft_model

    base, batch, logits, expected, want = _lora_inputs(cfg, sst2)
    lora_cfg = build_lora_config(cfg, sst2)
    lora_cfg.layers_to_transform = [0]   # layer 1 left out
    lora_cfg.layers_pattern = "layers"
    model = get_peft_model(base, lora_cfg)
    r = inspect_lora_setup(model, cfg, sst2, batch, logits, expected, want, n_layers=2)
    assert not r.passed and "model.layers.1." in r.detail


def test_lora_setup_fails_on_a_stray_trainable_parameter(cfg, sst2):
    base, batch, logits, expected, want = _lora_inputs(cfg, sst2)
    model = apply_method(base, cfg, sst2)
    model.base_model.model.model.norm.weight.requires_grad_(True)
    r = inspect_lora_setup(model, cfg, sst2, batch, logits, expected, want, n_layers=2)
    assert not r.passed and "norm.weight" in r.detail


def test_lora_setup_fails_when_the_head_is_frozen(cfg, sst2):
    base, batch, logits, expected, want = _lora_inputs(cfg, sst2)
    model = apply_method(base, cfg, sst2)
    for n, p in model.named_parameters():
        if "score" in n:
            p.requires_grad_(False)
    r = inspect_lora_setup(model, cfg, sst2, batch, logits, expected, want, n_layers=2)
    assert not r.passed and "head" in r.detail and "frozen" in r.detail


def test_lora_setup_fails_when_output_differs_at_init(cfg, sst2):
    base, batch, logits, expected, want = _lora_inputs(cfg, sst2)
    model = apply_method(base, cfg, sst2)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.fill_(0.1)
    r = inspect_lora_setup(model, cfg, sst2, batch, logits, expected, want, n_layers=2)
    assert not r.passed and "differs from the base model" in r.detail


# ---------------------------------------------------------------- 3 data loading


def test_data_loading_passes_on_builtin_and_real_data(cfg, tmp_path):
    assert check_data_loading(cfg, ["sst2", "squad_v2"]).passed
    glue = SHARED / "data" / "glue"
    real = with_overrides(cfg, {"data.source": "local", "data.glue_dir": str(glue), "data.dir": str(tmp_path / "d")})
    r = check_data_loading(real, ["rte"])
    assert r.passed, r.detail
    assert "rte" in r.figure


def test_data_loading_fails_on_missing_data(cfg, tmp_path):
    missing = with_overrides(cfg, {"data.source": "local", "data.dir": str(tmp_path / "empty")})
    r = check_data_loading(missing, ["mrpc"])
    assert not r.passed and "mrpc" in r.figure


# ---------------------------------------------------------------- 4 gradient flow


def _trainable_model(cfg, task, method):
    from tunebench.model import load_model, load_tokenizer

    cfg = with_overrides(cfg, {"method": method})
    tok = load_tokenizer(cfg)
    torch.manual_seed(0)
    model = apply_method(load_model(cfg, task, tok, device="cpu"), cfg, task)
    batch = dict(tok(["a good film .", "a dull plot ."], padding=True, return_tensors="pt"))
    batch["labels"] = torch.tensor([1, 0])
    return model, batch


@pytest.mark.parametrize("method", ["lora", "full"])
def test_gradient_flow_passes_on_a_healthy_model(cfg, sst2, method):
    model, batch = _trainable_model(cfg, sst2, method)
    if method == "lora":
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.add_(0.01)
    r = inspect_gradient_flow(model, batch, method, head="score")
    assert r.passed, r.detail


def test_gradient_flow_fails_on_an_untrained_parameter_reported_as_trainable(cfg, sst2):
    model, batch = _trainable_model(cfg, sst2, "full")
    model.register_parameter("unused_bias", torch.nn.Parameter(torch.zeros(3)))
    r = inspect_gradient_flow(model, batch, "full", head="score")
    assert not r.passed and "unused_bias" in r.detail


def test_gradient_flow_fails_when_lora_b_gets_no_gradient(cfg, sst2):
    model, batch = _trainable_model(cfg, sst2, "lora")
    # At init B = 0, so A receives exactly zero gradient: the check must see it.
    r = inspect_gradient_flow(model, batch, "lora", head="score")
    assert not r.passed and "lora_A" in r.detail


@pytest.mark.parametrize("method", ["lora", "full"])
def test_gradient_flow_fails_on_a_frozen_head(cfg, sst2, method):
    model, batch = _trainable_model(cfg, sst2, method)
    for n, p in model.named_parameters():
        if "score" in n:
            p.requires_grad_(False)
    r = inspect_gradient_flow(model, batch, method, head="score")
    assert not r.passed and "frozen" in r.detail and "score" in r.detail


# ---------------------------------------------------------------- 5 overfitting


def test_overfitting_fails_when_nothing_can_learn(cfg, sst2, monkeypatch):
    import tunebench.sanity as sanity

    original = sanity.apply_method

    def frozen(model, c, task):
        model = original(model, c, task)
        for p in model.parameters():
            p.requires_grad_(False)
        next(iter(model.parameters())).requires_grad_(True)   # something trainable, nothing that matters
        return model

    monkeypatch.setattr(sanity, "apply_method", frozen)
    r = sanity.check_overfitting(with_overrides(cfg, {"method": "full"}), sst2, max_steps=20)
    assert not r.passed and "cannot overfit" in r.detail


# ---------------------------------------------------------------- 6 W&B logging


def test_wandb_logging_reads_back_what_it_logged(cfg):
    r = check_wandb_logging(cfg)
    assert r.passed, r.detail


def test_wandb_logging_fails_on_an_unwritable_folder(cfg, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    r = check_wandb_logging(cfg, folder=blocker / "wandb-here")
    assert not r.passed and "a-file" in r.detail


# ---------------------------------------------------------------- 7 reproducibility


def test_reproducibility_fails_on_a_nondeterministic_data_order(cfg, monkeypatch):
    import random

    import tunebench.train as train

    original = train.prepare_splits

    def shuffled_unseeded(*a, **kw):
        splits = original(*a, **kw)
        random.SystemRandom().shuffle(splits["train"].features)   # OS entropy: a new order every run
        return splits

    monkeypatch.setattr(train, "prepare_splits", shuffled_unseeded)
    r = check_reproducibility(with_overrides(cfg, {"method": "full", "training.group_by_length": False}), steps=4)
    assert not r.passed and "nondeterministic" in r.detail


def test_original_api_and_real_model_flag(cfg, tmp_path, capsys):
    checker = ModelSanityChecker(with_overrides(cfg, {"model.name": str(STORIES)}), "sst2")
    assert checker.check_lora_setup().passed
    code = main(["sanity", "--model", str(STORIES), "--checks", "model_loading", "lora_setup", "gradient_flow",
                 *TINY[1:], f"output_dir={tmp_path}"])
    assert code == 0, capsys.readouterr().out


def test_cli_lists_the_same_checks():
    from tunebench.commands import sanity as command

    assert command.CHECKS == CHECKS


def test_failed_check_gives_nonzero_exit(tmp_path, capsys):
    code = main(["sanity", "--checks", "lora_setup", *TINY, "lora.target_modules=[q_proj,nope_proj]",
                 f"output_dir={tmp_path}", "experiment=bad"])
    assert code == 1
    report = json.loads((tmp_path / "bad" / "sanity.json").read_text())
    assert not report["passed"] and "nope_proj" in report["checks"][0]["detail"]
    assert run_checks(load_config([], TINY), ["sst2"], ["lora"], ("lora_setup",))[0].passed


# ---------------------------------------------------------------- no hidden second model; offline once


def test_no_preflight_model_outlives_the_run(tmp_path, monkeypatch):
    """The pre-flight checks of `run_one` load the checkpoint and copy it; once the run is done none of those
    models is still alive (a 1.3B model left on the GPU beside the run's own would halve what fits)."""
    import gc
    import weakref

    import tunebench.model
    from tunebench import sanity
    from tunebench.runner import run_one

    if not STORIES.is_dir():
        pytest.skip("../shared/models/stories260K not available")
    refs: list[weakref.ref] = []
    load, copy_model = tunebench.model.load_model, sanity.ModelSource.model_copy

    def tracked_load(*a, **k):
        model = load(*a, **k)
        refs.append(weakref.ref(model))
        return model

    def tracked_copy(model):
        out = copy_model(model)
        refs.append(weakref.ref(out))
        return out

    monkeypatch.setattr(tunebench.model, "load_model", tracked_load)   # the checks import it at call time
    monkeypatch.setattr(sanity.ModelSource, "model_copy", staticmethod(tracked_copy))
    cfg = load_config([], [f"model.name={STORIES}", "task=rte", "method=lora", "tracking.backend=none",
                           f"output_dir={tmp_path}", "data.builtin_train_size=40", "data.builtin_test_size=20",
                           "data.validation_size=20", "model.max_length=64", "training.max_steps=2",
                           "training.eval_steps=2", "training.eval_train_examples=0"])
    rec = run_one(cfg)          # with the pre-flight checks
    assert rec["status"] == "ok", rec["reason"]
    assert len(refs) >= 3       # the checkpoint and the copies the three pre-flight checks used
    gc.collect()
    assert [r for r in refs if r() is not None] == []


def test_offline_hub_model_fails_fast_once(tmp_path, monkeypatch):
    """An unreachable hub is detected once (one probe), the load fails in one line without retries, and the
    sanity checks report it once and skip the checks that need the model."""
    import socket
    import time

    import tunebench.model
    from tunebench.model import hub_reachable

    probes = []

    def refuse(*a, **k):
        probes.append(a)
        raise OSError("network unreachable")

    hub_reachable.cache_clear()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    loads = []
    real = tunebench.model.from_pretrained_checked
    monkeypatch.setattr(tunebench.model, "from_pretrained_checked", lambda *a, **k: loads.append(1) or real(*a, **k))
    cfg = load_config([], [*TINY, "model.name=no-such-org/no-such-model", f"output_dir={tmp_path}"])
    t0 = time.perf_counter()
    try:
        results = run_checks(cfg, ["rte"])
    finally:
        hub_reachable.cache_clear()
    elapsed = time.perf_counter() - t0
    by = {(r.check, r.method): r for r in results}
    assert len(probes) == 1 and len(loads) == 1         # one probe, one attempt (the tokenizer), no retries
    assert not by[("model_loading", "-")].passed and "could not be fetched" in by[("model_loading", "-")].detail
    needs_model = [k for k in by if k[0] in ("lora_setup", "gradient_flow", "overfitting", "reproducibility")]
    assert len(needs_model) == 7 and all(by[k].skipped and not by[k].passed for k in needs_model)
    assert by[("data_loading", "-")].passed
    assert elapsed < 5, elapsed


def test_wandb_check_is_skipped_without_wandb(cfg, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    r = check_wandb_logging(cfg)
    assert r.skipped and not r.passed and r.figure == "skipped: wandb not installed"


def test_precision_parity_fails_when_the_arms_differ():
    from tunebench.sanity import CheckResult, inspect_precision_parity

    def arm(method, trainable):
        return CheckResult("gradient_flow", method, True, "", precision={
            "name": "bf16-mixed", "trainable_dtype": trainable, "optimizer_state_dtype": trainable,
            "compute_dtype": "bfloat16"})

    ok = inspect_precision_parity([arm("lora", "float32"), arm("full", "float32")])
    assert ok.passed and "float32" in ok.figure
    bad = inspect_precision_parity([arm("lora", "float32"), arm("full", "bfloat16")])
    assert not bad.passed and "trainable_dtype" in bad.detail and "optimizer_state_dtype" in bad.detail


def test_sanity_measures_the_arms_precision(cfg):
    results = run_checks(cfg, ["sst2"], checks=("gradient_flow",))
    parity = [r for r in results if r.check == "precision_parity"]
    assert len(parity) == 1 and parity[0].passed, parity
    for r in results[:2]:
        assert r.precision == {"name": "32-true", "trainable_dtype": "float32", "optimizer_state_dtype": "float32",
                               "compute_dtype": "float32"}


def test_offline_mode_and_proxy_are_honoured(monkeypatch):
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE: offline without a probe; an HTTPS proxy that answers: reachable
    (GPU clusters reach the hub through one)."""
    import socket

    from tunebench.model import hub_reachable

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    try:
        monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
        monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("probed while offline"))
        hub_reachable.cache_clear()
        assert hub_reachable() is False
        monkeypatch.undo()
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            monkeypatch.delenv(var, raising=False)
        with socket.socket() as proxy:
            proxy.bind(("127.0.0.1", 0))
            proxy.listen(1)
            monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.getsockname()[1]}")
            hub_reachable.cache_clear()
            assert hub_reachable() is True
    finally:
        hub_reachable.cache_clear()


def test_wandb_check_fails_without_wandb_when_runs_would_need_it(cfg, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    r = check_wandb_logging(with_overrides(cfg, {"tracking.backend": "wandb"}))
    assert not r.passed and not r.skipped and "tunebench[wandb]" in r.detail


def test_a_model_that_raises_anything_fails_once_and_the_rest_skip(cfg, monkeypatch):
    import tunebench.model

    def broken(*a, **k):
        raise KeyError("llama4_unknown")

    monkeypatch.setattr(tunebench.model, "load_model", broken)
    results = run_checks(cfg, ["sst2"], checks=("model_loading", "lora_setup", "gradient_flow"))
    assert [(r.check, r.passed, r.skipped) for r in results] == [
        ("model_loading", False, False), ("lora_setup", False, True), ("gradient_flow", False, True),
        ("gradient_flow", False, True), ("precision_parity", False, True)]
    assert "KeyError" in results[0].detail


def test_the_span_heads_bias_may_have_an_exactly_zero_gradient(cfg):
    """A softmax over positions ignores a shift of every logit, so qa_outputs.bias gets a zero gradient by
    construction (0.0 exactly on some batches: the demo's SQuAD pre-flight failed on it); its weight may not."""
    from tunebench.sanity import zero_gradient_by_construction

    assert zero_gradient_by_construction("base_model.model.qa_outputs.modules_to_save.default.bias")
    assert zero_gradient_by_construction("qa_outputs.bias")
    assert not zero_gradient_by_construction("qa_outputs.weight")
    assert not zero_gradient_by_construction("score.bias")
    task = get_task("squad_v2")
    qa = with_overrides(cfg, {"task": "squad_v2", "method": "full", "qa.doc_stride": 32})
    from tunebench.model import load_model, load_tokenizer

    tok = load_tokenizer(qa)
    model = load_model(qa, task, tok, device="cpu")
    from tunebench.sanity import _batch

    batch = _batch(qa, task, tok, 4)
    seen = {}

    def zero_bias_grad(grad):
        seen["hooked"] = True
        return torch.zeros_like(grad)

    model.qa_outputs.bias.register_hook(zero_bias_grad)
    r = inspect_gradient_flow(model, batch, "full", "qa_outputs")
    assert seen and r.passed, r.detail
    model.qa_outputs.weight.register_hook(lambda g: torch.zeros_like(g))
    r = inspect_gradient_flow(model, batch, "full", "qa_outputs")
    assert not r.passed and "qa_outputs.weight" in r.detail


def test_the_table_shows_the_fix_hint_with_its_brackets(cfg, monkeypatch, capsys):
    """The console renders markup: `[wandb]` in a hint would be read as a style tag and vanish."""
    import importlib.util

    from tunebench.commands.sanity import print_table

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    r = check_wandb_logging(with_overrides(cfg, {"tracking.backend": "wandb"}))
    print_table([r], 1.0)
    out = capsys.readouterr().out
    assert "pip install 'tunebench[wandb]'" in " ".join(out.split()), out
