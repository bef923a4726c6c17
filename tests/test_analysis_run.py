"""`tunebench analyze` end to end on run folders saved the way the engine saves them (tiny model and the real
stories260K checkpoint): LoRA energy and effective ranks <= r, finite forgetting, an unchanged model forgets exactly
nothing, full runs without model/ are skipped with one line, the JSON is written atomically."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from shared_assets import STORIES
from tunebench.analysis.run import ANALYSIS_FILE, analyze_run, build_causal_lm, load_base_task_model
from tunebench.cli import main
from tunebench.config import Config, dump_yaml, with_overrides
from tunebench.data.tasks import get_task
from tunebench.model import load_tokenizer
from tunebench.results import run_id
from tunebench.train import build_model

REPO = Path(__file__).resolve().parents[1]
R = 4
PROJECTIONS = 7

pytestmark = pytest.mark.usefixtures("one_thread")



def make_run(root: Path, model: str, method: str, *, perturb: bool, save: bool = True,
             status: str = "ok") -> Path:
    """Build the model as the engine does, stand in for training (a small random change), save it as
    train._save_model does, and write config.yaml and a minimal metrics.json."""
    cfg = with_overrides(Config(), {
        "model.name": model, "method": method, "lora.r": R, "training.save_full_model": save,
        "tracking.backend": "none", "experiment": "analysis_test", "training.seed": 7,
    })
    task = get_task(cfg.task)
    tokenizer = load_tokenizer(cfg)
    net = build_model(cfg, task, tokenizer, "cpu")
    if perturb:
        _perturb(net, method)
    run_dir = root / cfg.experiment / f"{run_id(cfg)}-{'changed' if perturb else 'same'}-{status}"
    run_dir.mkdir(parents=True)
    if method == "lora":
        net.save_pretrained(str(run_dir / "adapter"))
        tokenizer.save_pretrained(str(run_dir / "adapter"))
    elif save:
        net.save_pretrained(str(run_dir / "model"))
    (run_dir / "config.yaml").write_text(dump_yaml(cfg), encoding="utf-8")
    metrics = {"schema": 1, "run_id": run_dir.name, "experiment": cfg.experiment, "status": status,
               "task": cfg.task, "method": method, "seed": 7, "lora_r": R if method == "lora" else None,
               "primary_metric": "accuracy", "test": {"accuracy": 0.75}, "device": "cpu"}
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return run_dir


@torch.no_grad()
def _perturb(net: torch.nn.Module, method: str) -> None:
    gen = torch.Generator().manual_seed(1)
    for name, p in net.named_parameters():
        if method == "lora" and "lora_B" in name:
            p.copy_(0.05 * torch.randn(p.shape, generator=gen))
        if method == "full" and name.startswith("model."):   # every backbone weight, embeddings included
            p.add_(0.01 * torch.randn(p.shape, generator=gen))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    runs = {
        "tiny_lora": make_run(root, "tiny", "lora", perturb=True),
        "tiny_full": make_run(root, "tiny", "full", perturb=True),
        "tiny_lora_same": make_run(root, "tiny", "lora", perturb=False),
        "tiny_full_unsaved": make_run(root, "tiny", "full", perturb=True, save=False),
        "tiny_full_same": make_run(root, "tiny", "full", perturb=False),
        "tiny_failed": make_run(root, "tiny", "lora", perturb=True, status="failed"),
        "stories_lora": make_run(root, str(STORIES), "lora", perturb=True),
        "stories_full": make_run(root, str(STORIES), "full", perturb=True),
        "stories_full_same": make_run(root, str(STORIES), "full", perturb=False),
    }
    return root, runs


@pytest.fixture(scope="module")
def analysed(study, capsys_module):
    root, runs = study
    rc = main(["analyze", str(root)])
    out = capsys_module()
    results = {k: json.loads((d / ANALYSIS_FILE).read_text()) for k, d in runs.items()
               if (d / ANALYSIS_FILE).exists()}
    return rc, out, results


@pytest.fixture(scope="module")
def capsys_module():
    """Module-scoped stdout capture (pytest's capsys is function-scoped)."""
    import contextlib
    import io

    buf = io.StringIO()
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(buf))
    yield lambda: (stack.close(), buf.getvalue())[1]
    stack.close()


def test_every_ok_run_with_weights_is_analysed(analysed):
    rc, out, results = analysed
    assert rc == 0
    assert set(results) == {"tiny_lora", "tiny_full", "tiny_lora_same", "tiny_full_same", "stories_lora",
                            "stories_full", "stories_full_same"}
    assert "set training.save_full_model=true" in out
    assert "1 run folder(s) not ok" in out


def test_lora_ranks_are_at_most_r_for_every_matrix(analysed):
    results = analysed[2]
    for key, layers in (("tiny_lora", 2), ("stories_lora", 5)):
        assert results[key]["schema"] == 2
        spectrum = results[key]["spectrum"]
        assert len(spectrum) == layers * PROJECTIONS
        assert all(1 <= m["energy_rank"] <= R for m in spectrum)
        assert all(1 <= m["effective_rank"] <= R for m in spectrum)     # Roy-Vetterli, rounding noise dropped
        assert all(m["stable_rank"] <= R + 1e-9 for m in spectrum)
        assert results[key]["summary"]["max_energy_rank"] <= R
        assert {m["group"] for m in spectrum} == {"attention", "mlp"}
        assert spectrum[0]["module"] == "model.layers.0.self_attn.q_proj"


def test_full_fine_tuning_update_is_high_rank(analysed):
    for key in ("tiny_full", "stories_full"):
        spectrum = analysed[2][key]["spectrum"]
        assert all(m["energy_rank"] > R and m["effective_rank"] > R for m in spectrum)  # dense: far above r
        assert analysed[2][key]["summary"]["n_matrices"] == len(spectrum)


def test_forgetting_is_finite_and_measured_on_the_same_text(analysed):
    results = analysed[2]
    for key in ("tiny_lora", "tiny_full", "stories_lora", "stories_full"):
        f = results[key]["forgetting"]
        assert f["text"] == "builtin" and f["tokens"] > 0
        assert all(math.isfinite(f[k]) for k in ("loss_before", "loss_after", "ppl_before", "ppl_after"))
        assert f["delta_loss"] == f["loss_after"] - f["loss_before"] != 0
        assert f["ppl_after"] == pytest.approx(math.exp(f["loss_after"]))
    for model in ("tiny", "stories"):       # both methods: the same tokens, the same loss before
        lora, full = results[f"{model}_lora"]["forgetting"], results[f"{model}_full"]["forgetting"]
        assert lora["tokens"] == full["tokens"] and lora["text_sha1"] == full["text_sha1"]
        assert lora["loss_before"] == full["loss_before"]
    assert results["tiny_lora"]["lm_head"] == "random"
    assert results["stories_full"]["lm_head"] == "tied"


def test_an_unchanged_model_forgets_exactly_nothing(analysed):
    """Also checks that `before` is exactly the model the run started from (tiny: rebuilt from the seed)."""
    for key in ("tiny_lora_same", "tiny_full_same", "stories_full_same"):
        record = analysed[2][key]
        f = record["forgetting"]
        assert f["delta_loss"] == 0.0 and f["loss_before"] == f["loss_after"] and f["ppl_before"] == f["ppl_after"]
        assert all(m["energy_rank"] == 0 and m["effective_rank"] == 0 and m["intruders"] == 0 and m["fro_norm"] == 0.0
                   for m in record["spectrum"])


def test_analysis_json_is_written_atomically_and_reproducibly(study, analysed):
    run_dir = study[1]["tiny_lora_same"]
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    again = analyze_run(run_dir, "builtin", 10, 0.5)
    saved = analysed[2]["tiny_lora_same"]
    assert {k: v for k, v in again.items() if k != "elapsed_s"} == {k: v for k, v in saved.items()
                                                                  if k != "elapsed_s"}


def test_skip_existing_leaves_analysed_runs(study, analysed, capsys):
    rc = main(["analyze", str(study[1]["tiny_lora_same"]), "--skip-existing"])
    assert rc == 0
    assert "skipped (analysis.json exists)" in capsys.readouterr().out


def test_tied_lm_head_follows_the_tuned_embeddings():
    cfg = with_overrides(Config(), {"model.name": str(STORIES)})
    task = get_task(cfg.task)
    base = load_base_task_model(cfg, task, load_tokenizer(cfg), torch.float32, "cpu")
    causal, kind = build_causal_lm(cfg, base, torch.float32, "cpu")
    assert kind == "tied"
    state = {k: v.clone() for k, v in base.model.state_dict().items()}
    state["embed_tokens.weight"] += 1.0
    causal.model.load_state_dict(state)
    assert torch.equal(causal.lm_head.weight, state["embed_tokens.weight"])


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "missing")]) == 2
    assert main(["analyze", str(tmp_path)]) == 2
    assert "no finished (status ok) run folder" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path), "--eps", "0"]) == 2


def test_rank_sweep_analysis_plan_keeps_full_weights():
    from tunebench.plan.spec import load_plan

    plan = load_plan(REPO / "configs" / "plans" / "rank_sweep_analysis.yaml")
    assert plan.base.training.save_full_model is True
    assert set(plan.methods) == {"lora", "full"}
    assert [a.settings.get("lora.r") for a in plan.arms] == [None, 1, 2, 4, 8, 16, 32, 64, 128, 256]
