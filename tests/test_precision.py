"""Both arms train under one precision policy: the update full fine-tuning needs is not rounded away,
LoRA's adapters and head follow the same policy, and runs record what they actually trained with."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
import types

import pytest
import torch

from shared_assets import STORIES
from tunebench.cli import main
from tunebench.config import load_config
from tunebench.data.tasks import get_task
from tunebench.errors import TunebenchError
from tunebench.model import load_tokenizer
from tunebench.precision import (
    apply_policy,
    build_policy,
    check_supported,
    optimizer_state_dtypes,
    resolve_policy,
    trainable_dtypes,
)
from tunebench.results import run_dir
from tunebench.runner import run_one
from tunebench.train import build_model

TINY = ["model.name=tiny", "tracking.backend=none", "data.builtin_train_size=120", "data.builtin_test_size=40",
        "data.validation_size=40", "model.max_length=64", "training.eval_train_examples=0"]


@pytest.fixture
def cpu_with_bf16(monkeypatch):
    """These tests check what each policy trains with, not the hardware: on a CPU without native bf16 (AVX2
    only, where mkldnn has no bf16 kernels) torch still computes in bf16, slower, so the machine check is
    told this CPU has it."""
    monkeypatch.setattr("tunebench.precision.bf16_supported", lambda device: True)


def _llama_scale_linear(dtype: torch.dtype) -> torch.nn.Linear:
    torch.manual_seed(0)
    lin = torch.nn.Linear(2048, 256, bias=False)
    torch.nn.init.normal_(lin.weight, std=0.02)          # Llama's initializer range
    return lin.to(dtype)


def _share_changed_after_one_adam_step(lin: torch.nn.Linear, lr: float) -> float:
    before = lin.weight.detach().clone()
    opt = torch.optim.AdamW(lin.parameters(), lr=lr, weight_decay=0.0)
    x = torch.randn(8, lin.in_features, dtype=lin.weight.dtype)
    lin(x).pow(2).mean().backward()
    opt.step()
    return (lin.weight.detach() != before).float().mean().item()


def test_an_update_lost_in_bf16_is_applied_under_the_default_gpu_policy():
    """Adam's first step moves every weight by ~lr; at lr 1e-5 that is below bf16's spacing at 0.02 (2^-13)."""
    lr = 1e-5
    bf16_share = _share_changed_after_one_adam_step(_llama_scale_linear(torch.bfloat16), lr)
    policy = build_policy("auto", "auto", "cuda")
    assert policy.name == "bf16-mixed" and policy.trainable_dtype == torch.float32
    lin = apply_policy(_llama_scale_linear(torch.bfloat16), policy)   # a bf16 checkpoint, trained as the policy says
    assert lin.weight.dtype == torch.float32
    assert bf16_share < 0.25                                      # most of the update is lost in bf16...
    assert _share_changed_after_one_adam_step(lin, lr) == 1.0     # ...and none of it under the policy


@pytest.mark.parametrize(("precision", "device", "name", "trainable", "compute", "state"), [
    ("auto", "cuda", "bf16-mixed", torch.float32, torch.bfloat16, torch.float32),
    ("auto", "cpu", "32-true", torch.float32, torch.float32, torch.float32),
    ("bf16-true", "cuda", "bf16-true", torch.bfloat16, torch.bfloat16, torch.bfloat16),
])
def test_policy_table(precision, device, name, trainable, compute, state):
    p = build_policy(precision, "auto", device)
    assert (p.name, p.trainable_dtype, p.compute_dtype, p.optimizer_state_dtype) == (name, trainable, compute, state)
    assert p.frozen_dtype == trainable          # model.dtype=auto: frozen weights like the trainable ones
    assert p.autocast == (name == "bf16-mixed")


@pytest.mark.parametrize("model_dtype", ["auto", "bfloat16"])
def test_both_arms_built_for_cuda_train_fp32_tensors(model_dtype):
    """The defect: with bf16 weights, LoRA's head (modules_to_save) stayed bf16 beside fp32 adapters and full
    fine-tuning trained bf16 weights. Built with the CUDA policy (on this CPU), every trainable tensor is fp32."""
    task = get_task("rte")
    for method in ("lora", "full"):
        cfg = load_config([], [*TINY, f"method={method}", f"model.dtype={model_dtype}"])
        policy = resolve_policy(cfg, "cuda")
        model = build_model(cfg, task, load_tokenizer(cfg), "cpu", policy)
        assert trainable_dtypes(model) == {torch.float32}, method
        frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
        assert frozen == (set() if method == "full" else {policy.frozen_dtype}), method
        head = [p for n, p in model.named_parameters() if "score" in n and p.requires_grad]
        assert head and all(p.dtype == torch.float32 for p in head), method


def test_bf16_true_makes_lora_adapters_and_head_bf16():
    task = get_task("sst2")
    cfg = load_config([], [*TINY, "method=lora", "training.precision=bf16-true"])
    model = build_model(cfg, task, load_tokenizer(cfg), "cpu", resolve_policy(cfg, "cuda"))
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in names) and any("score" in n for n in names)
    assert trainable_dtypes(model) == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_real_checkpoint_arms_share_the_policy():
    """stories260K loaded as a study run would load it on a GPU: both arms' trainable tensors are fp32."""
    if not STORIES.is_dir():
        pytest.skip("../shared/models/stories260K not available")
    task = get_task("sst2")
    for method in ("lora", "full"):
        cfg = load_config([], [f"model.name={STORIES}", f"method={method}", "tracking.backend=none"])
        model = build_model(cfg, task, load_tokenizer(cfg), "cpu", resolve_policy(cfg, "cuda"))
        assert trainable_dtypes(model) == {torch.float32}, method


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.dtype=float16"], "model.dtype = 'float16'"),
    (["training.precision=32-true", "model.dtype=bfloat16"], "training.precision=bf16-mixed"),
    (["training.precision=bf16-true", "model.dtype=float32"], "bf16-true"),
    (["training.precision=fp8"], "training.precision"),
])
def test_bad_precision_settings_get_one_line_and_exit_2(tmp_path, capsys, overrides, message):
    code = main(["run", *TINY, f"output_dir={tmp_path}", *overrides])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not list(tmp_path.iterdir())        # nothing written


def test_bf16_true_without_a_compensating_optimizer_refuses(monkeypatch, cpu_with_bf16):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("optimi", "torchao") else real(name, *a))
    with pytest.raises(TunebenchError, match="torch-optimi"):
        check_supported(build_policy("bf16-true", "auto", "cpu"), "cpu", "adamw_torch_fused")


def test_run_refuses_bf16_true_without_its_optimizer_before_writing(tmp_path, capsys, monkeypatch, cpu_with_bf16):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("optimi", "torchao") else real(name, *a))
    code = main(["run", *TINY, f"output_dir={tmp_path}", "training.precision=bf16-true"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "torch-optimi" in err, err
    assert not list(tmp_path.iterdir())


def test_bf16_on_a_machine_without_bf16_refuses(monkeypatch):
    import tunebench.precision as precision

    monkeypatch.setattr(precision, "bf16_supported", lambda device: False)
    with pytest.raises(TunebenchError, match="bf16 is not supported"):
        check_supported(build_policy("bf16-mixed", "auto", "cuda"), "cuda", "adamw_torch_fused")


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_runs_record_the_same_precision_for_both_arms(tmp_path, precision, cpu_with_bf16):
    """metrics.json says what each arm actually trained with (measured: parameters, optimizer state, the output
    dtype of a linear layer in training), and the two arms agree."""
    records = {}
    for method in ("lora", "full"):
        cfg = load_config([], [*TINY, f"output_dir={tmp_path}", f"method={method}", "training.max_steps=2",
                               "training.eval_steps=2", f"training.precision={precision}"])
        rec = run_one(cfg, preflight=False)
        assert rec["status"] == "ok", rec["reason"]
        assert json.loads((run_dir(cfg) / "metrics.json").read_text())["precision"] == rec["precision"]
        records[method] = rec["precision"]
    compute = "bfloat16" if precision == "bf16-mixed" else "float32"
    for method, p in records.items():
        assert p["name"] == precision
        assert (p["trainable_dtype"], p["optimizer_state_dtype"], p["compute_dtype"]) == ("float32", "float32",
                                                                                            compute), method
    assert records["lora"]["frozen_dtype"] == "float32" and records["full"]["frozen_dtype"] is None


@pytest.fixture
def bf16_true_optimizer(monkeypatch):
    """bf16-true's optimizer: torch-optimi's AdamW with Kahan summation where it is installed; elsewhere torch's
    AdamW stands in for it (bf16 moments, no compensation). The tests that use it check the dtypes a run trains
    and restores checkpoints in, which SequentialEvalTrainer's overrides of the Trainer's private
    _load_from_checkpoint and _load_best_model decide, not the optimizer's numerics; so they run on every
    install and catch a transformers release that renames those methods."""
    if importlib.util.find_spec("optimi") is not None:
        return "optimi"

    class StandIn(torch.optim.AdamW):
        def __init__(self, params, kahan_sum: bool = False, **kwargs):
            super().__init__(params, **kwargs)

    module = types.ModuleType("optimi")
    module.__spec__ = importlib.machinery.ModuleSpec("optimi", None)   # found by compensating_optimizer
    module.AdamW = StandIn
    monkeypatch.setitem(sys.modules, "optimi", module)
    return "torch AdamW standing in"


@pytest.mark.parametrize("method", ["full", "lora"])
def test_bf16_true_run_trains_bf16_with_kahan_summation(tmp_path, method, cpu_with_bf16, bf16_true_optimizer):
    """Both arms stay bf16 to the end: the best checkpoint restored after training (PEFT's load_adapter upcasts
    adapters to fp32 unless the policy is re-applied) included."""
    cfg = load_config([], [*TINY, f"output_dir={tmp_path}", f"method={method}", "training.max_steps=4",
                           "training.eval_steps=2", "training.precision=bf16-true"])
    rec = run_one(cfg, preflight=False)
    assert rec["status"] == "ok", rec["reason"]
    assert rec["precision"] == {"name": "bf16-true", "trainable_dtype": "bfloat16",
                                "optimizer_state_dtype": "bfloat16", "compute_dtype": "bfloat16",
                                "frozen_dtype": None if method == "full" else "bfloat16"}


def test_resumed_lora_run_keeps_the_policy(tmp_path, cpu_with_bf16, bf16_true_optimizer):
    """A LoRA run resumed from its checkpoint trains on in the policy's dtypes (parameters, optimizer state and
    the adapters' compute), not in the fp32 PEFT restores adapters in."""
    from tunebench.tracking import NullTracker
    from tunebench.train import train_and_evaluate

    common = [*TINY, f"output_dir={tmp_path}", "method=lora", "training.eval_steps=2",
              "training.precision=bf16-true", "training.save_total_limit=5"]
    rdir = tmp_path / "run"
    first = train_and_evaluate(load_config([], [*common, "training.max_steps=2"]), rdir, NullTracker(),
                               resume=False)
    assert (rdir / "checkpoints" / "checkpoint-2").is_dir() and first.fields["steps"] == 2
    resumed = train_and_evaluate(load_config([], [*common, "training.max_steps=4"]), rdir, NullTracker(),
                                 resume=True)
    assert resumed.fields["steps"] == 4
    assert resumed.fields["precision"] == {"name": "bf16-true", "trainable_dtype": "bfloat16",
                                           "optimizer_state_dtype": "bfloat16", "compute_dtype": "bfloat16",
                                           "frozen_dtype": "bfloat16"}


def test_the_policy_is_reapplied_after_each_checkpoint_load_under_the_default_policy(tmp_path, monkeypatch):
    """SequentialEvalTrainer re-applies the policy after the Trainer loads a checkpoint (resume) and after it
    restores the best one (the end of training) by overriding the private _load_from_checkpoint and
    _load_best_model; a transformers release that renames either leaves its override uncalled. Checked under
    the default policy, with no optional package."""
    from tunebench.tracking import NullTracker
    from tunebench.train import SequentialEvalTrainer, train_and_evaluate

    calls = []
    real = SequentialEvalTrainer._reapply_policy

    def spy(self):
        calls.append(sys._getframe(1).f_code.co_name)     # the override that re-applies it
        real(self)

    monkeypatch.setattr(SequentialEvalTrainer, "_reapply_policy", spy)
    common = [*TINY, f"output_dir={tmp_path}", "method=lora", "training.eval_steps=2", "training.save_total_limit=5"]
    rdir = tmp_path / "run"
    first = train_and_evaluate(load_config([], [*common, "training.max_steps=2"]), rdir, NullTracker(), resume=False)
    assert calls == ["_load_best_model"] and first.fields["precision"]["name"] == "32-true"
    calls.clear()
    resumed = train_and_evaluate(load_config([], [*common, "training.max_steps=4"]), rdir, NullTracker(), resume=True)
    assert calls == ["_load_from_checkpoint", "_load_best_model"] and resumed.fields["steps"] == 4


@pytest.mark.skipif(importlib.util.find_spec("optimi") is None, reason="torch-optimi not installed")
def test_kahan_summation_keeps_the_update_bf16_adam_loses():
    """bf16-true's optimizer: optimi's AdamW with Kahan summation accumulates updates below bf16's spacing."""
    from tunebench.precision import optimizer_cls_and_kwargs

    policy = build_policy("bf16-true", "auto", "cpu")
    cls, kwargs = optimizer_cls_and_kwargs(policy, 1e-5, (0.9, 0.999), 1e-8, 0.0)
    lin = _llama_scale_linear(torch.bfloat16)
    start = lin.weight.detach().float().clone()
    opt = cls(lin.parameters(), **kwargs)
    plain = _llama_scale_linear(torch.bfloat16)
    plain_opt = torch.optim.AdamW(plain.parameters(), lr=1e-5, weight_decay=0.0)
    for _ in range(20):
        for layer, o in ((lin, opt), (plain, plain_opt)):
            o.zero_grad()
            layer.weight.grad = torch.ones_like(layer.weight)    # the same push on every weight, every step
            o.step()
    assert optimizer_state_dtypes(opt) == {torch.bfloat16}
    moved = (start - lin.weight.detach().float()).mean().item()
    moved_plain = (start - plain.weight.detach().float()).mean().item()
    assert moved == pytest.approx(20 * 1e-5, rel=0.15)     # Kahan: the 20 updates add up
    assert moved_plain < 0.5 * 20 * 1e-5                   # plain bf16 Adam loses most of them


def test_analysis_loads_the_base_in_the_recorded_dtype():
    """analysis/run.py compares against the weights as the run loaded them: the recorded frozen dtype (the
    trainable one for full fine-tuning); runs from before the record: bf16 on a GPU under model.dtype auto."""
    from tunebench.analysis.run import load_base_task_model, training_dtype

    cfg = load_config([], [*TINY, "method=lora", "model.dtype=bfloat16", "training.precision=bf16-mixed"])
    lora = {"device": "cuda", "precision": {"frozen_dtype": "bfloat16", "trainable_dtype": "float32"}}
    full = {"device": "cuda", "precision": {"frozen_dtype": None, "trainable_dtype": "float32"}}
    assert training_dtype(cfg, lora) == torch.bfloat16
    assert training_dtype(cfg, full) == torch.float32
    old = load_config([], TINY)
    assert training_dtype(old, {"device": "cuda"}) == torch.bfloat16
    assert training_dtype(old, {"device": "cpu"}) == torch.float32
    # a GPU run with bf16 frozen weights (precision auto) analysed on this CPU: loads, no policy conflict
    gpu_cfg = load_config([], [*TINY, "model.dtype=bfloat16"])
    base = load_base_task_model(gpu_cfg, get_task("sst2"), load_tokenizer(gpu_cfg), torch.bfloat16, "cpu")
    assert {p.dtype for p in base.parameters()} == {torch.float32}      # upcast after loading in bf16
