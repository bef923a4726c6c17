"""The training and evaluation engine on the tiny model and builtin data: files, invariants, resume, failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from run_helpers import KillAt
from tunebench.config import load_config, with_overrides
from tunebench.data.tasks import get_task
from tunebench.io import read_jsonl
from tunebench.methods import apply_method, count_parameters, expected_lora_trainable
from tunebench.model import load_model, load_tokenizer
from tunebench.results import run_dir
from tunebench.runner import run_one
from tunebench.system import cpu_name

TINY_RUN = [
    "model.name=tiny", "tracking.backend=none", "data.source=builtin",
    "data.builtin_train_size=96", "data.builtin_test_size=32", "data.validation_size=16",
    "training.max_steps=4", "training.eval_steps=2", "training.logging_steps=1",
    "training.per_device_train_batch_size=8", "training.eval_train_examples=16", "model.max_length=128",
    "qa.doc_stride=32",
]


def tiny_cfg(tmp_path: Path, *extra: str):
    return load_config([], [*TINY_RUN, f"output_dir={tmp_path}", "experiment=t", *extra])


@pytest.mark.parametrize("task", ["sst2", "mrpc", "rte", "squad_v2"])
@pytest.mark.parametrize("method", ["lora", "full"])
def test_each_method_on_each_task_writes_every_file(tmp_path, task, method):
    cfg = tiny_cfg(tmp_path, f"task={task}", f"method={method}")
    rec = run_one(cfg, preflight=False)
    assert rec["status"] == "ok", rec["reason"]
    rdir = run_dir(cfg)
    saved = json.loads((rdir / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(rec))
    for f in ("config.yaml", "metrics.json", "log.jsonl", "predictions/test.jsonl", "predictions/validation.jsonl"):
        assert (rdir / f).is_file(), f
    assert (rdir / "adapter" / "adapter_config.json").is_file() == (method == "lora")
    assert not (rdir / "checkpoints").exists()  # removed once the run is ok
    spec = get_task(task)
    assert set(spec.metrics) <= set(rec["test"]) and "loss" in rec["test"]
    assert rec["steps"] == 4 and rec["best_validation"]["step"] in (2, 4)
    assert rec["params"]["trainable"] <= rec["params"]["total"]
    assert (rec["params"]["trainable"] == rec["params"]["total"]) == (method == "full")
    carve = rec["data"]["validation_carve"]       # how validation was carved, for the report
    assert carve["grouping"] == ("article" if spec.is_qa else "text")
    assert ("unanswerable" in carve) == spec.is_qa
    assert rec["tokens"]["train_non_pad"] > 0 and rec["memory"]["peak_bytes"] > 0
    assert rec["env"]["packages"]["torch"].startswith("2.13") and rec["learning_rate"] == cfg.learning_rate
    assert rec["env"]["cpu"] == cpu_name() and rec["env"]["cpu"].endswith(")")   # which CPU kernels ran
    preds = read_jsonl(rdir / "predictions" / "test.jsonl")
    assert len(preds) == 32  # every test example predicted once
    if spec.is_qa:
        assert rec["test"]["total"] == 32 and "null_threshold" in rec["qa"]
        assert {"id", "prediction", "exact", "f1", "has_answer"} <= set(preds[0])
    else:
        acc = sum(p["label"] == p["prediction"] for p in preds) / len(preds)
        assert rec["test"]["accuracy"] == pytest.approx(acc)
    log = read_jsonl(rdir / "log.jsonl")
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4]
    assert [r["step"] for r in log if f"eval_{'f1' if spec.is_qa else spec.primary_metric}" in r] == [2, 4]


def _tiny_models(cfg, task_name="sst2"):
    task = get_task(task_name)
    tok = load_tokenizer(cfg)
    torch.manual_seed(0)
    return task, tok, load_model(cfg, task, tok, device="cpu")


def _batch(tok, n=4):
    enc = tok(["the movie was great .", "a dull plot .", "so good .", "bad ending ."][:n], padding=True,
              return_tensors="pt")
    return dict(enc)


def test_lora_output_equals_base_at_init_and_count_matches_formula(tmp_path):
    cfg = tiny_cfg(tmp_path)
    task, tok, base = _tiny_models(cfg)
    base.eval()
    with torch.no_grad():
        before = base(**_batch(tok)).logits
    expected = expected_lora_trainable(base, cfg, task)
    t = cfg.model.tiny
    per_layer = 16 * ((t.hidden_size + t.hidden_size) * 2                       # q, o
                      + (t.hidden_size + t.hidden_size // 2) * 2                # k, v (2 of 4 heads)
                      + (t.hidden_size + t.intermediate_size) * 3)              # gate, up, down
    assert expected == t.num_hidden_layers * per_layer + t.hidden_size * 2      # + score head (2 labels, no bias)
    model = apply_method(base, cfg, task)
    model.eval()
    with torch.no_grad():
        after = model(**_batch(tok)).logits
    assert torch.equal(before, after)
    assert count_parameters(model)["trainable"] == expected


def test_base_weights_unchanged_after_an_optimizer_step(tmp_path):
    cfg = tiny_cfg(tmp_path)
    task, tok, base = _tiny_models(cfg)
    model = apply_method(base, cfg, task)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    out = model(**_batch(tok), labels=torch.tensor([1, 0, 1, 0]))
    out.loss.backward()
    opt.step()
    assert frozen and all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    changed = [n for n, p in model.named_parameters() if n in trainable and not torch.equal(p, trainable[n])]
    assert any("lora_A" in n for n in changed) and any("score" in n for n in changed)


def test_eval_steps_as_a_fraction_of_the_run(tmp_path):
    """training.eval_steps=0.25 of 10 steps: validation (and a checkpoint) every 3 steps, and at the end."""
    cfg = tiny_cfg(tmp_path, "training.max_steps=10", "training.eval_steps=0.25")
    rec = run_one(cfg, preflight=False)
    assert rec["status"] == "ok", rec["reason"]
    log = read_jsonl(run_dir(cfg) / "log.jsonl")
    assert [r["step"] for r in log if "eval_accuracy" in r] == [3, 6, 9, 10]
    assert rec["best_validation"]["step"] in (3, 6, 9, 10)


def test_head_survives_save_and_reload(tmp_path):
    from peft import PeftModel

    cfg = tiny_cfg(tmp_path, "method=lora", "training.max_steps=120", "training.eval_steps=60",
                   "training.learning_rate=1e-2", "data.builtin_train_size=400")
    rec = run_one(cfg, preflight=False)
    assert rec["status"] == "ok"
    adapter = run_dir(cfg) / "adapter"
    # Reload onto the same (seeded random) backbone with a different random head: the saved head must win.
    from transformers import set_seed

    task, tok = get_task("sst2"), load_tokenizer(cfg)
    set_seed(cfg.training.seed)
    base = load_model(cfg, task, tok, device="cpu")
    torch.nn.init.normal_(base.score.weight, std=1.0)
    reloaded = PeftModel.from_pretrained(base, str(adapter)).eval()
    preds = read_jsonl(run_dir(cfg) / "predictions" / "test.jsonl")
    from tunebench.data import load_task_splits
    from tunebench.features import encode

    test = load_task_splits(cfg, "sst2")["test"].to_list()
    feats = encode(task, test, tok, cfg.model.max_length)
    got = {}
    with torch.no_grad():
        for r, f in zip(test, feats, strict=True):
            ids = torch.tensor([f["input_ids"]])
            got[r["idx"]] = int(reloaded(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.argmax(-1))
    # Every saved prediction (batched, length-sorted evaluation) matches the example predicted on its own.
    assert got == {p["idx"]: p["prediction"] for p in preds}
    assert len(set(got.values())) == 2  # a trained head, not a constant


def kill_at_6_then_resume(tmp_path, monkeypatch, common: list[str]):
    """(an uninterrupted run's record, the config of a second run, its record once resumed): the second run is
    killed at step 6 (KeyboardInterrupt in a log callback, metrics.json left `running`, checkpoint-4 on disk)
    and resumed."""
    import tunebench.train as train

    full = run_one(tiny_cfg(tmp_path / "a", *common), preflight=False)
    cfg = tiny_cfg(tmp_path / "b", *common)
    original = train.JsonlLogCallback.on_log
    monkeypatch.setattr(train.JsonlLogCallback, "on_log", KillAt(6)(original))
    with pytest.raises(KeyboardInterrupt):
        run_one(cfg, preflight=False)
    assert json.loads((run_dir(cfg) / "metrics.json").read_text())["status"] == "running"
    assert (run_dir(cfg) / "checkpoints" / "checkpoint-4").is_dir()
    monkeypatch.setattr(train.JsonlLogCallback, "on_log", original)
    return full, cfg, run_one(cfg, resume=True, preflight=False)


def test_killed_run_resumes_to_the_metrics_of_an_uninterrupted_run(tmp_path, monkeypatch):
    common = ["training.max_steps=8", "training.eval_steps=4", "training.save_total_limit=3"]
    full, cfg, resumed = kill_at_6_then_resume(tmp_path, monkeypatch, common)
    assert resumed["status"] == "ok"
    assert resumed["test"] == full["test"] and resumed["validation"] == full["validation"]
    losses = [r["loss"] for r in read_jsonl(run_dir(cfg) / "log.jsonl") if "loss" in r]
    ref = [r["loss"] for r in read_jsonl(run_dir(tiny_cfg(tmp_path / "a", *common)) / "log.jsonl") if "loss" in r]
    assert losses == ref


def test_a_resumed_run_records_the_train_loss_of_the_whole_run(tmp_path, monkeypatch):
    """train_loss is the mean over every step of the run, resumed or not (the Trainer's own covers only the
    steps of its train() call), also when records are logged off the checkpoints' steps: every 3 steps,
    checkpoints every 4 (a record is logged at each checkpoint too)."""
    common = ["training.max_steps=8", "training.eval_steps=4", "training.logging_steps=3",
              "training.save_total_limit=3"]
    full, cfg, resumed = kill_at_6_then_resume(tmp_path, monkeypatch, common)
    assert resumed["status"] == "ok" and resumed["steps"] == full["steps"] == 8
    losses = {r["step"]: r["loss"] for r in read_jsonl(run_dir(tiny_cfg(tmp_path / "a", *common)) / "log.jsonl")
              if "loss" in r}
    assert sorted(losses) == [3, 4, 6, 8]                      # every 3 steps, and at each checkpoint
    assert [r["loss"] for r in read_jsonl(run_dir(cfg) / "log.jsonl") if "loss" in r] == list(losses.values())
    mean = (3 * losses[3] + 1 * losses[4] + 2 * losses[6] + 2 * losses[8]) / 8
    assert full["train_loss"] == pytest.approx(mean, rel=1e-6)
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], rel=1e-9)


def test_whole_run_train_loss_weighs_the_logged_losses_by_their_steps():
    from tunebench.train import whole_run_train_loss

    history = [{"step": 3, "loss": 0.9}, {"step": 4, "loss": 0.5}, {"step": 4, "eval_loss": 7.0},
               {"step": 6, "loss": 0.45}, {"step": 8, "loss": 0.35}]
    assert whole_run_train_loss(history, 8, 0, 0.61) == 0.61                 # not resumed: the Trainer's own
    assert whole_run_train_loss(history, 8, 4, 0.4) == pytest.approx((2.7 + 0.5 + 4 * 0.4) / 8)
    # resumed from the last checkpoint: the Trainer trained no step (its loss is 0); the log has every step
    assert whole_run_train_loss(history, 8, 8, 0.0) == pytest.approx((2.7 + 0.5 + 0.9 + 0.7) / 8)
    # a checkpoint written without a record at its step: its last step at the mean of the logged ones
    assert whole_run_train_loss(history[:1], 8, 4, 0.4) == pytest.approx((2.7 + 0.9 + 4 * 0.4) / 8)


def test_nan_loss_marks_the_run_failed_with_its_reason(tmp_path, monkeypatch):
    from transformers import Trainer

    original = Trainer.compute_loss

    def nan_loss(self, model, inputs, *a, **kw):
        out = original(self, model, inputs, *a, **kw)
        return out * float("nan") if not isinstance(out, tuple) else (out[0] * float("nan"), *out[1:])

    monkeypatch.setattr(Trainer, "compute_loss", nan_loss)
    cfg = tiny_cfg(tmp_path)
    rec = run_one(cfg, preflight=False)
    assert rec["status"] == "failed" and "non-finite training loss" in rec["reason"]
    saved = json.loads((run_dir(cfg) / "metrics.json").read_text())
    assert saved["status"] == "failed" and (run_dir(cfg) / "error.log").is_file()


def test_exception_marks_the_run_failed(tmp_path):
    cfg = tiny_cfg(tmp_path, "lora.target_modules=[no_such_proj]")
    rec = run_one(cfg, preflight=False)
    assert rec["status"] == "failed" and "no_such_proj" in rec["reason"]


def test_a_run_held_by_another_process_is_left_alone(tmp_path):
    """Two processes on one run: the second gets status running back and writes nothing; once the first
    lets go (or dies: the kernel drops an flock with its process) the run can be run."""
    import subprocess
    import sys

    from tunebench.system import run_lock

    cfg = tiny_cfg(tmp_path)
    rdir = run_dir(cfg)
    rdir.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from tunebench.system import run_lock\n"
         "with run_lock(Path(sys.argv[1])) as busy:\n    print(busy, flush=True); time.sleep(60)", str(rdir)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "None"     # the other process holds the lock
        rec = run_one(cfg, preflight=False)
        assert rec["status"] == "running" and f"pid {holder.pid} on" in rec["reason"]
        assert sorted(p.name for p in rdir.iterdir()) == [".lock"]   # no config, no metrics: left alone
    finally:
        holder.kill()
        holder.wait()
    with run_lock(rdir) as busy:                              # released when its holder died
        assert busy is None
    assert run_one(cfg, preflight=False)["status"] == "ok"


def test_wandb_offline_run_files_hold_the_metrics_and_no_api_key(tmp_path, monkeypatch):
    from tunebench.tracking import read_finished_wandb_file

    monkeypatch.setenv("WANDB_API_KEY", "sk-test-0123456789abcdef0123456789abcdef01234567")
    cfg = tiny_cfg(tmp_path, "tracking.backend=wandb")
    rec = run_one(cfg, preflight=False)
    assert rec["status"] == "ok"
    files = list(run_dir(cfg).glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1
    records = read_finished_wandb_file(files[0])
    losses = [r["train/loss"] for kind, r in records if kind == "history" and "train/loss" in r]
    logged = [r["loss"] for r in read_jsonl(run_dir(cfg) / "log.jsonl") if "loss" in r]
    assert losses == pytest.approx(logged)
    summary = {k: v for kind, r in records if kind == "summary" for k, v in r.items()}
    assert summary["test/accuracy"] == pytest.approx(rec["test"]["accuracy"])
    for f in run_dir(cfg).rglob("*"):
        if f.is_file():
            assert b"sk-test-0123456789abcdef" not in f.read_bytes(), f


def test_preflight_runs_before_training(tmp_path):
    cfg = tiny_cfg(tmp_path)
    rec = run_one(cfg, preflight=True)
    assert rec["status"] == "ok"
    broken = with_overrides(cfg, {"lora.target_modules": ["no_such_proj"]})
    rec = run_one(broken, preflight=True)
    assert rec["status"] == "failed" and "pre-flight check lora_setup" in rec["reason"]


@pytest.mark.parametrize("task", ["squad_v2", "mrpc"])
def test_per_batch_predictions_score_exactly_as_the_concatenated_ones(tmp_path, monkeypatch, task):
    """The engine takes the Trainer's predictions per batch (eval_do_concat_batches=False: no quadratic
    padding and concatenation); every metric, threshold and per-example prediction equals the Trainer's
    default concatenated form, with batches of different lengths."""
    import tunebench.train as train

    build = train.build_training_args

    def run(concat: bool, out: Path) -> tuple[dict, list, list]:
        def args_with(*a, **k):
            args = build(*a, **k)
            assert args.eval_do_concat_batches is False       # the engine's setting
            args.eval_do_concat_batches = concat
            return args
        monkeypatch.setattr(train, "build_training_args", args_with)
        cfg = tiny_cfg(out, f"task={task}", "method=full", "training.per_device_eval_batch_size=3")
        rec = run_one(cfg, preflight=False)
        assert rec["status"] == "ok", rec["reason"]
        rdir = run_dir(cfg)
        return rec, read_jsonl(rdir / "predictions" / "test.jsonl"), read_jsonl(rdir / "log.jsonl")

    per_batch, preds_b, log_b = run(False, tmp_path / "b")
    concat, preds_c, log_c = run(True, tmp_path / "c")
    for key in ("test", "validation", "train_eval", "qa"):
        assert per_batch.get(key) == concat.get(key), key
    assert per_batch["best_validation"]["value"] == concat["best_validation"]["value"]
    assert preds_b == preds_c
    evals = [{k: v for k, v in r.items() if k.startswith("eval_") and "runtime" not in k and "per_second" not in k}
             for r in log_b if "eval_loss" in r]
    assert evals and evals == [{k: v for k, v in r.items() if k.startswith("eval_") and "runtime" not in k
                                and "per_second" not in k} for r in log_c if "eval_loss" in r]


@pytest.mark.parametrize(("task", "method"), [("squad_v2", "full"), ("mrpc", "full"), ("mrpc", "lora")])
def test_final_validation_reuses_the_restored_checkpoints_pass_with_identical_results(tmp_path, monkeypatch,
                                                                                        task, method):
    """The final validation pass is the in-loop pass of the checkpoint restored at the end (matched by its
    weights), not a second forward over the split: every metric, the SQuAD null threshold (chosen on
    validation, applied to test) and every validation prediction equal a run that predicts again. The best
    checkpoint here is not the last one, so a pass of the wrong weights would show (LoRA: restored by
    PEFT's load_adapter)."""
    from tunebench.train import SequentialEvalTrainer

    def run(out: Path, *extra: str) -> tuple[dict, list]:
        cfg = tiny_cfg(out, f"task={task}", f"method={method}", "training.max_steps=4", "training.eval_steps=1",
                       "training.learning_rate=5e-2", "training.full_finetune_learning_rate=5e-2",
                       "training.per_device_eval_batch_size=3", *extra)
        rec = run_one(cfg, preflight=False)
        assert rec["status"] == "ok", rec["reason"]
        return rec, read_jsonl(run_dir(cfg) / "predictions" / "validation.jsonl")

    reused, rows = run(tmp_path / "reused")
    assert reused["timing"]["validation_reused"] is True
    assert reused["best_validation"]["step"] < reused["steps"]          # restored: not the final weights
    monkeypatch.setattr(SequentialEvalTrainer, "restored_validation", lambda self: None)
    again, rows_again = run(tmp_path / "again")
    assert again["timing"]["validation_reused"] is False
    for key in ("test", "validation", "train_eval", "qa", "best_validation"):
        if key == "best_validation":
            reused[key].pop("time_s"), again[key].pop("time_s")
        assert reused.get(key) == again.get(key), key
    assert reused["validation"]["loss"] == again["validation"]["loss"]
    assert rows == rows_again


def test_no_kept_pass_matches_weights_no_pass_was_made_with(tmp_path, monkeypatch):
    """Whatever the Trainer restores (or fails to: it only warns), a kept pass is used only when the model's
    weights are the ones that made it: one changed value and validation is predicted again."""
    from tunebench.evaluate import weights_fingerprint
    from tunebench.train import SequentialEvalTrainer

    def restore_something_else(self):
        with torch.no_grad():
            next(p for p in self.model.parameters() if p.requires_grad).view(-1)[0] += 1e-3
    monkeypatch.setattr(SequentialEvalTrainer, "_load_best_model", restore_something_else)
    cfg = tiny_cfg(tmp_path, "task=mrpc", "method=lora", "training.max_steps=5", "training.eval_steps=2")
    rec = run_one(cfg, preflight=False)
    assert rec["status"] == "ok", rec["reason"]
    assert rec["timing"]["validation_reused"] is False

    model = torch.nn.Linear(3, 2)
    before = weights_fingerprint(model)
    assert weights_fingerprint(model) == before
    with torch.no_grad():
        model.weight[0, 0] += 1e-6
    assert weights_fingerprint(model) != before
    model.weight.requires_grad_(False)                  # frozen parameters are not training's to change
    assert [name for name, *_ in weights_fingerprint(model)] == ["bias"]


def test_an_output_dir_that_is_a_file_is_one_line_exit_2(tmp_path, capsys):
    from tunebench.cli import main

    (tmp_path / "results").write_text("not a folder")
    code = main(["run", *TINY_RUN, f"output_dir={tmp_path / 'results'}", "--skip-preflight"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("tunebench: error:")]
    assert code == 2 and len(errors) == 1, errors
    assert errors[0].startswith("tunebench: error: output_dir") and errors[0].endswith(
        f"{tmp_path / 'results'} is a file, not a folder")


def test_cpu_name_reads_the_model_and_the_kernels_width(tmp_path):
    """env.cpu: two runs compare bit for bit only on the same CPU type and kernel width."""
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654 96-Core Processor\n")
    capability = torch.backends.cpu.get_cpu_capability()
    assert cpu_name(info) == f"AMD EPYC 9654 96-Core Processor ({capability})"
    assert cpu_name(tmp_path / "missing").endswith(f" ({capability})")   # no cpuinfo: the platform's name
