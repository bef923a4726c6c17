"""`tunebench bench --gpu-check OUT_DIR`: the smoke run end to end on the CPU (the same code as on a GPU, tiny
shape), the refusal without a GPU, the time budget, the batch search's out-of-memory stop and the child
process's time limit. No timing assertions: the figures of a shared CPU mean nothing."""

from __future__ import annotations

import json
import time

import pytest
import torch

from tunebench.bench import gpu_check
from tunebench.bench.gpu_check import Budget, PartBudget, evaluate_targets, run_child, search_batch, study_shape
from tunebench.cli import main
from tunebench.precision import bf16_supported

PART_KEYS = {"schema", "kind", "mode", "complete", "started_at", "budget_s", "env", "model", "parts", "sdpa", "sanity",
             "throughput", "task_lengths", "real_run", "batch_search", "variants", "summary", "targets", "wall_s",
             "ok"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    """One smoke run for the module (about 30 s). Under bf16-mixed where this CPU has bf16 (the GPU check's own
    precision: autocast in the sanity checks, the Trainer and the real runs; on the tiny shape it costs no more
    than 32-true, the smoke default, which the suite's other tests cover), else 32-true."""
    out = tmp_path_factory.mktemp("gpu-check")
    precision = "bf16-mixed" if bf16_supported("cpu") else "32-true"
    code = main(["bench", "--gpu-check", str(out), "--smoke", f"training.precision={precision}"])
    report = json.loads((out / "gpu_check.json").read_text(encoding="utf-8"))
    compute = "bfloat16" if precision == "bf16-mixed" else "float32"
    return {"code": code, "out": out, "report": report, "precision": precision, "compute": compute}


def test_smoke_run_completes_every_part(smoke):
    r = smoke["report"]
    assert smoke["code"] == 0, r["parts"]
    assert PART_KEYS <= set(r) and r["complete"] and r["ok"] and r["mode"] == "smoke"
    assert list(r["parts"]) == list(gpu_check.PARTS)
    assert {p["status"] for p in r["parts"].values()} == {"ok"}, r["parts"]
    log = (smoke["out"] / "gpu_check.log").read_text(encoding="utf-8")
    assert "done in" in log and "sanity lora: gradient flow passed" in log
    assert r["model"]["precision"]["name"] == smoke["precision"]


def test_smoke_sanity_checks_pass_for_both_methods(smoke):
    sanity = smoke["report"]["sanity"]
    for method in ("lora", "full"):
        assert sanity[method]["gradient_flow"]["passed"], sanity[method]["gradient_flow"]
        assert sanity[method]["gradient_flow"]["precision"]["compute_dtype"] == smoke["compute"]
        over = sanity[method]["overfitting"]
        assert over["passed"] and over["steps"] <= over["cap_steps"] and over["loss"] < over["loss_target"]


def test_smoke_summary_is_what_plan_show_reads(smoke):
    r = smoke["report"]
    for method in ("lora", "full"):
        s = r["summary"][method]
        assert set(s) == {"mfu", "tokens_per_s", "peak_memory_bytes", "device_name", "tokens_per_s_by_task"}
        lengths = {task: row["seq_len"] for task, row in r["task_lengths"][method].items()}
        assert lengths == {"sst2": 16, "mrpc": 32, "rte": 32, "squad_v2": 32}    # mean length, within max_length
        assert s["tokens_per_s_by_task"] == {t: row["tokens_per_s"] for t, row in r["task_lengths"][method].items()}
        assert s["tokens_per_s"] > 0 and isinstance(s["peak_memory_bytes"], int) and s["mfu"] is None   # CPU: n/a
        t = r["throughput"][method]
        assert t["batch"] == 4 and t["seq_len"] == 32 and t["timed_steps"] == 3
        assert t["precision"]["trainable_dtype"] == "float32" and t["precision"]["compute_dtype"] == smoke["compute"]
        assert t["profile"]["backends"], t["profile"]            # the SDPA op of the profiled step was seen
    assert set(r["targets"]) == set(gpu_check.TARGETS)
    assert r["targets"]["full_mfu"]["met"] is None                 # no MFU on a CPU
    assert r["targets"]["lora_tokens_per_s_over_full"]["value"] > 0


def test_smoke_sdpa_search_and_variants_are_recorded(smoke):
    r = smoke["report"]
    probe = r["sdpa"]["probe"]
    assert "math" in probe["causal"]["runs"] and probe["causal"]["chosen"]
    assert probe["causal"]["efficient"]["ok"] is False             # a CUDA kernel: refused on the CPU, with why
    for method in ("lora", "full"):
        search = r["batch_search"][method]
        assert search["largest_fitting"] == 8 and search["stopped_by"] == "cap"
        assert search["tried"][0]["status"] == "ok" and search["at_largest"]["batch"] == 8
        for variant in ("deterministic", "gradient_checkpointing"):
            row = r["variants"][variant][method]
            assert row["works"] and row["step_time_ratio"] > 0 and {"true", "false"} <= set(row)
    if smoke["precision"] == "bf16-mixed":      # LoRA's frozen base in bf16: the memory the LoRA target asks about
        row = r["variants"]["frozen_bf16"]
        assert set(row) == {"lora"} and row["lora"]["works"] and {"auto", "bfloat16"} <= set(row["lora"])
    child = r["variants"]["torch_compile"]["lora"]
    assert child["child"]["tokens_per_s"] > 0 and child["torch_compile"] is False   # the harness, without compile


def test_smoke_real_run_trains_saves_and_reports(smoke):
    real = smoke["report"]["real_run"]
    assert real["model"] == "tiny" and real["data_source"] == "builtin"
    for method in ("lora", "full"):
        run = real["runs"][method]
        assert run["status"] == "ok" and run["steps"] == 10 and 0 <= run["test_metric"] <= 1
        assert run["precision_recorded"] and run["precision_as_policy"], run["precision"]
        assert run["precision"]["name"] == smoke["precision"] and run["precision"]["compute_dtype"] == smoke["compute"]
        assert set(run["precision"]) >= {"name", "trainable_dtype", "optimizer_state_dtype", "compute_dtype"}
        assert run["checks_passed"]
    assert real["runs"]["lora"]["adapter_saved"] is True
    report = real["report"]
    assert report["written"] and report["n_ok"] == 2
    html = smoke["out"] / "gpu_check_work" / "runs" / "gpu-check" / "report" / "report.html"
    assert html.is_file() and str(html) == report["html"]


def test_without_cuda_the_gpu_check_refuses_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "--gpu-check", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs a CUDA GPU" in err and "--smoke" in err
    assert not (tmp_path / "gpu_check.json").exists()


def test_gpu_check_flags_need_gpu_check(capsys):
    assert main(["bench", "--smoke"]) == 2
    assert "only with --gpu-check" in capsys.readouterr().err


def test_an_exhausted_budget_skips_every_part_and_still_writes_the_json(tmp_path):
    assert main(["bench", "--gpu-check", str(tmp_path), "--smoke", "--gpu-check-budget", "0"]) == 0
    r = json.loads((tmp_path / "gpu_check.json").read_text(encoding="utf-8"))
    assert r["complete"] and r["ok"] and {p["status"] for p in r["parts"].values()} == {"skipped"}
    assert all("time budget" in p["reason"] for p in r["parts"].values())
    assert r["summary"] == {} and r["targets"]["full_mfu"]["value"] is None


def test_a_work_folder_the_check_did_not_make_is_left_alone(tmp_path, capsys):
    (tmp_path / "gpu_check_work").mkdir()
    (tmp_path / "gpu_check_work" / "mine.txt").write_text("keep", encoding="utf-8")
    assert main(["bench", "--gpu-check", str(tmp_path), "--smoke", "--gpu-check-budget", "0"]) == 2
    assert "not made by the GPU check" in capsys.readouterr().err
    assert (tmp_path / "gpu_check_work" / "mine.txt").read_text(encoding="utf-8") == "keep"


def test_batch_search_stops_at_out_of_memory_and_at_the_time_budget():
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)

    def measure(b: int) -> dict:
        if b >= 32:
            raise oom("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {"batch": b, "tokens_per_s": 100.0 * b}

    res = search_batch(measure, 4, 64, lambda b: True)
    assert res["largest_fitting"] == 16 and res["stopped_by"] == "out of memory"
    assert [t["status"] for t in res["tried"]] == ["ok", "ok", "oom"] and res["at_largest"]["batch"] == 16
    res = search_batch(measure, 4, 64, lambda b: b <= 8)
    assert res["largest_fitting"] == 8 and res["stopped_by"] == "time budget"
    assert search_batch(measure, 4, 4, lambda b: True)["at_largest"] is None      # the cap is the start


def test_part_budget_records_what_it_skips():
    now = [0.0]
    budget = Budget(100.0, clock=lambda: now[0])
    part = budget.part(30.0)
    assert isinstance(part, PartBudget) and part.left() == 30.0
    assert part.fits(20.0, "a") and not part.fits(40.0, "b")
    assert len(part.skipped) == 1 and part.skipped[0].startswith("b: skipped, time budget")
    now[0] = 90.0
    assert budget.part(30.0).left() == 10.0                         # the total's remainder caps a part's share


def test_targets_are_evaluated_not_asserted():
    t = evaluate_targets({"full": {"mfu": 0.5, "tokens_per_s": 1000.0, "peak_memory_bytes": 100},
                          "lora": {"mfu": 0.3, "tokens_per_s": 1200.0, "peak_memory_bytes": 40}})
    assert t["full_mfu"]["met"] is True
    speed = t["lora_tokens_per_s_over_full"]
    assert speed["value"] == pytest.approx(1.2) and speed["met"] is False
    assert t["lora_peak_memory_over_full"]["value"] == pytest.approx(0.4) and t["lora_peak_memory_over_full"]["met"]
    assert evaluate_targets({})["full_mfu"]["met"] is None


def test_the_study_shape_comes_from_the_cost_table():
    assert study_shape() == {"hidden_size": 2048, "num_hidden_layers": 24, "num_attention_heads": 16,
                             "num_key_value_heads": 16, "intermediate_size": 5504, "vocab_size": 32000}


def test_a_child_that_outlasts_its_budget_is_killed(tmp_path):
    t0 = time.perf_counter()
    res = run_child({"config": {}, "device": "cpu"}, 1.0, tmp_path, "slow")
    assert res["status"] == "timed_out" and time.perf_counter() - t0 < 30
