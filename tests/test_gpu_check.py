"""`tunebench bench --gpu-check OUT_DIR`: the smoke run end to end on the CPU (the same code as on a GPU, tiny
shape), the refusal without a GPU, the time budget, the batch search's out-of-memory stop and the child
process's time limit; what benchmarks/gpu_check.sh and benchmarks/prepare_gpu_assets.sh check before anything
runs (the modules the check imports, the copied wheels' requirements), the scratch folder outside OUT_DIR, the
child that ends with its parent, the batch search's start from the memory estimate and the cuBLAS setting of
deterministic runs. No timing assertions: the figures of a shared CPU mean nothing."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
import torch

from tunebench.bench import child, gpu_check, gpu_stack
from tunebench.bench.gpu_check import (
    GPU,
    PARTS,
    SMOKE,
    Budget,
    PartBudget,
    evaluate_targets,
    memory_batch_plan,
    run_child,
    search_batch,
    study_shape,
)
from tunebench.cli import main
from tunebench.precision import bf16_supported

REPO = Path(__file__).resolve().parents[1]
OUT_FILES = {"gpu_check.json", "gpu_check.log", "report.html", "summary.md"}   # all the check writes into OUT_DIR

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
        plan = search["memory_plan"]                 # the tiny shape fits the CPU's memory: the cap sets the stop
        assert plan["largest"] == 8 and plan["limited_by"] == "cap" and set(plan["estimated_peak_bytes"]) == {"8"}
        assert [t["batch"] for t in search["tried"]] == [8]     # started where the estimate said, nothing else
        assert search["estimated_over_measured_peak"] > 0
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
    html = smoke["out"] / "report.html"                       # copied out of the scratch, which is gone
    assert html.is_file() and str(html) == report["html"] and "<html" in html.read_text(encoding="utf-8").lower()
    assert (smoke["out"] / "summary.md").is_file() and report["summary_md"] == str(smoke["out"] / "summary.md")


def test_smoke_scratch_lives_outside_out_dir_and_is_removed(smoke):
    assert {p.name for p in smoke["out"].iterdir()} == OUT_FILES       # no runs, no checkpoints beside the JSON
    scratch = Path(smoke["report"]["env"]["scratch"])
    assert scratch.name.startswith(gpu_check.SCRATCH_PREFIX) and smoke["out"] not in scratch.parents
    assert not scratch.exists()
    for method in ("lora", "full"):                             # the real runs trained in it all the same
        assert Path(smoke["report"]["real_run"]["runs"][method]["run_dir"]).is_relative_to(scratch)


def test_smoke_runs_deterministic_with_cublas_set_first(smoke):
    det = smoke["report"]["env"]["determinism"]
    assert det["cublas_workspace_config"] in (":4096:8", ":16:8") and det["set_before_cuda_init"]
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == det["cublas_workspace_config"]
    for method in ("lora", "full"):          # the study's default, in every part that trains
        assert smoke["report"]["sanity"][method]["deterministic"] is True
        assert "deterministic_failed" not in smoke["report"]["sanity"][method]
        assert smoke["report"]["throughput"][method]["switches"]["deterministic"] is True
    assert smoke["report"]["real_run"]["deterministic"] is True


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


def test_a_folder_in_out_dir_is_left_alone(tmp_path):
    (tmp_path / "gpu_check_work").mkdir()
    (tmp_path / "gpu_check_work" / "mine.txt").write_text("keep", encoding="utf-8")
    assert main(["bench", "--gpu-check", str(tmp_path), "--smoke", "--gpu-check-budget", "0"]) == 0
    assert (tmp_path / "gpu_check_work" / "mine.txt").read_text(encoding="utf-8") == "keep"
    assert {p.name for p in tmp_path.iterdir()} == {"gpu_check_work", "gpu_check.json", "gpu_check.log"}


OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def measure_until_32(b: int) -> dict:
    """A throughput measurement that runs out of memory from a batch of 32 on."""
    if b >= 32:
        raise OOM("CUDA out of memory. Tried to allocate 2.00 GiB")
    return {"batch": b, "tokens_per_s": 100.0 * b}


def test_batch_search_stops_at_out_of_memory_and_at_the_time_budget():
    measure = measure_until_32
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


# ---------------------------------------------------------------- before anything runs: imports and wheels


def _check_env(tmp_path: Path, **extra: str) -> dict:
    """The environment benchmarks/gpu_check.sh runs in here: this venv's python3 first, no copied wheels,
    a private TMPDIR (where the check's scratch goes)."""
    (tmp_path / "no-wheels").mkdir(exist_ok=True)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CUBLAS_WORKSPACE_CONFIG")}
    return {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
            "GPU_CHECK_WHEELS": str(tmp_path / "no-wheels"), "TMPDIR": str(tmp_path / "tmp"),
            "OUT": str(tmp_path / "out"), **extra}


def test_gpu_check_sh_names_a_missing_module_in_one_line_and_exits_2(tmp_path):
    blocked = tmp_path / "blocked"                  # xxhash made missing, as on a machine without it
    blocked.mkdir()
    (blocked / "xxhash.py").write_text('raise ModuleNotFoundError("No module named \'xxhash\'", name="xxhash")\n',
                                       encoding="utf-8")
    env = _check_env(tmp_path, PYTHONPATH=str(blocked))
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--smoke"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "cannot start" in line]
    assert lines == ["gpu check: cannot start: missing xxhash (imported by datasets): " + gpu_stack.WHEEL_HINT]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"console.log"}   # nothing was run
    assert lines[0] in (tmp_path / "out" / "console.log").read_text(encoding="utf-8")


def test_gpu_check_sh_sets_cublas_before_python_and_leaves_only_its_files(tmp_path):
    env = _check_env(tmp_path)
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--smoke", "--gpu-check-budget", "0"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {"console.log", "gpu_check.json", "gpu_check.log"}
    console = (out / "console.log").read_text(encoding="utf-8")
    assert "CUBLAS_WORKSPACE_CONFIG=:4096:8" in console and "every module the check needs imports" in console
    det = json.loads((out / "gpu_check.json").read_text(encoding="utf-8"))["env"]["determinism"]
    assert det == {"cublas_workspace_config": ":4096:8", "was": ":4096:8", "set_before_cuda_init": True}
    assert list((tmp_path / "tmp").iterdir()) == []                         # the scratch is gone


def test_import_problems_name_the_missing_module_and_who_imports_it(tmp_path, monkeypatch):
    pkg = tmp_path / "copied_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import tunebench_absent_dependency\n", encoding="utf-8")
    (tmp_path / "broken_pkg.py").write_text("raise AttributeError('module has no attribute x')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    problems = gpu_stack.import_problems(["json", "copied_pkg", "tunebench_absent_top", "copied_pkg",
                                          "broken_pkg", "yaml"])
    assert problems == ["missing tunebench_absent_dependency (imported by copied_pkg)",
                        "missing tunebench_absent_top",
                        "broken_pkg: AttributeError: module has no attribute x"]
    line = gpu_stack.cannot_start_line(problems)
    assert len(line.splitlines()) == 1 and "missing tunebench_absent_dependency" in line


def test_the_import_list_covers_every_third_party_import_of_tunebench():
    """A module tunebench imports (at the top or inside a function) is tried before the check starts, unless
    it belongs to a feature the check does not use (gpu_stack.OPTIONAL)."""
    tried = {m.split(".")[0] for m in gpu_stack.THIRD_PARTY}
    found: dict[str, str] = {}
    for path in (REPO / "src" / "tunebench").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                     else [])
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "tunebench":
                    found.setdefault(top, str(path.relative_to(REPO)))
    missing = {top: where for top, where in found.items() if top not in tried | gpu_stack.OPTIONAL}
    assert not missing, missing


def _wheel(folder: Path, name: str, version: str, requires: list[str]) -> Path:
    path = folder / f"{name}-{version}-py3-none-any.whl"
    meta = "\n".join(["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
                      *(f"Requires-Dist: {r}" for r in requires)]) + "\n\nA description.\nRequires-Dist: not-this\n"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}-{version}.dist-info/METADATA", meta)
    return path


def test_the_copied_wheels_requirements_must_be_copied_or_on_the_target(tmp_path):
    wheels = tmp_path / "whl"
    wheels.mkdir()
    _wheel(wheels, "datasets", "5.2.0", ["xxhash", "dill<0.4.2,>=0.3.0", "fsspec<=2026.9.0", "numpy>=1.17",
                                         'tzdata; sys_platform == "win32"', 'pytest; extra == "tests"',
                                         'oldlib; python_version < "3.10"'])
    _wheel(wheels, "dill", "0.4.1", [])
    stack = tmp_path / "stack.txt"
    stack.write_text("# the target\nnumpy==2.5.2; python_version >= '3.12'\nnumpy<2.5; python_version < '3.12'\n"
                     "fsspec==2026.10.0  # newer than datasets allows\n", encoding="utf-8")
    problems = gpu_stack.uncovered_requirements(sorted(wheels.glob("*.whl")),
                                                gpu_stack.stack_requirements(stack, "3.12"), "3.12")
    assert problems == ["fsspec 2026.10.0 on the target (required by datasets as <=2026.9.0)",
                        "xxhash (required by datasets: neither among the wheels nor on the target)"]
    _wheel(wheels, "xxhash", "4.1.0", [])
    stack.write_text("numpy\nfsspec\n", encoding="utf-8")
    assert gpu_stack.check_wheels(wheels, stack, "3.12") == 0


def test_prepare_gpu_assets_downloads_every_requirement_the_target_stack_lacks():
    """The packages prepare_gpu_assets.sh downloads, with the target's stack file, leave none of the downloaded
    packages' requirements out (read from the installed distributions' metadata here: the same Requires-Dist
    as the wheels of constraints.txt's versions, which the script checks again on the wheels themselves)."""
    text = (REPO / "benchmarks" / "prepare_gpu_assets.sh").read_text(encoding="utf-8")
    downloaded = text.split("PACKAGES=(", 1)[1].split(")", 1)[0].split()
    assert "xxhash" in downloaded
    stack = gpu_stack.stack_requirements(REPO / "benchmarks" / "gpu_target_stack.txt", "3.12")
    assert not {"pydantic", "datasets", "wandb", "xxhash"} & set(stack)
    from packaging.requirements import Requirement

    env = gpu_stack.marker_environment("3.12")
    have = {gpu_stack.normalize(n) for n in downloaded} | set(stack)
    lacking = set()
    for name in downloaded:
        for text in _requires(name):
            req = Requirement(text)
            if (req.marker is None or req.marker.evaluate(env)) and gpu_stack.normalize(req.name) not in have:
                lacking.add(f"{req.name} (required by {name})")
    assert not lacking, lacking


def _requires(name: str) -> list[str]:
    import importlib.metadata as md

    return md.requires(name) or []


# ---------------------------------------------------------------- the time budget's shares


@pytest.mark.parametrize("mode", [GPU, SMOKE], ids=["gpu", "smoke"])
def test_the_shares_fit_the_total_and_compile_tries_lora_first(mode):
    assert set(mode.part_budget_s) == set(PARTS) == set(mode.min_start_s)
    assert sum(mode.part_budget_s.values()) <= mode.total_budget_s
    assert PARTS[-1] == "torch_compile" and mode.compile_methods[0] == "lora"
    assert all(mode.min_start_s[p] <= mode.part_budget_s[p] for p in PARTS)   # each part can start on its share


def test_the_last_part_gets_all_that_is_left():
    now = [0.0]
    budget = Budget(255.0, clock=lambda: now[0])
    now[0] = 100.0                                    # the parts before used less than their shares
    assert budget.part(40.0).left() == 40.0
    assert budget.part(40.0, rest=True).left() == 155.0
    now[0] = 250.0
    assert budget.part(40.0, rest=True).left() == 5.0
    now[0] = 300.0
    assert budget.part(40.0, rest=True).left() == 0.0


# ---------------------------------------------------------------- scratch outside OUT_DIR


def test_the_scratch_is_removed_when_the_check_fails(tmp_path, monkeypatch):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmp))
    stale = tmp / f"{gpu_check.SCRATCH_PREFIX}{2**22 + 5}-old"        # a pid no process can have: a killed check's
    stale.mkdir()
    (stale / gpu_check.MARKER).write_text("", encoding="utf-8")
    foreign = tmp / f"{gpu_check.SCRATCH_PREFIX}{2**22 + 6}-mine"      # not marked: not the check's
    foreign.mkdir()
    out = tmp_path / "out"
    assert main(["bench", "--gpu-check", str(out), "--smoke", "training.optim=adamw_8bit"]) == 2
    assert sorted(p.name for p in tmp.iterdir()) == [foreign.name]
    assert not out.exists() or not any(out.iterdir())


# ---------------------------------------------------------------- a child ends with its parent


FAKE_CHILD = textwrap.dedent("""
    import os, subprocess, sys, time
    from pathlib import Path
    from tunebench.bench.child import die_with_parent
    die_with_parent()
    # in its process group, as TorchInductor's compile workers are
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    Path(sys.argv[-1]).with_suffix(".pids").write_text(f"{os.getpid()} {grandchild.pid}")
    time.sleep(120)
""")
PARENT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from tunebench.bench.child import ending_children_on_signals, run_child    # what gpu_check.run_child runs
    with ending_children_on_signals():
        run_child([sys.executable, "-c", sys.argv[2]], {}, 120, Path(sys.argv[1]), "fake")
""")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")          # a zombie no one reaped holds no memory


def _start_parent(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path), FAKE_CHILD], env=env)
    pids_file = tmp_path / "fake.spec.pids"
    deadline = time.monotonic() + 120
    while not pids_file.is_file() or len(pids_file.read_text().split()) < 2:
        assert time.monotonic() < deadline and parent.poll() is None, "the fake child did not start"
        time.sleep(0.2)
    return parent, [int(p) for p in pids_file.read_text().split()]


def _gone(pids: list[int], within_s: float = 20.0) -> bool:
    deadline = time.monotonic() + within_s
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _kill_left(pids: list[int]) -> None:
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups and PR_SET_PDEATHSIG: Linux")
def test_a_child_and_its_group_end_when_the_parent_is_terminated(tmp_path):
    parent, pids = _start_parent(tmp_path)
    try:
        assert all(_alive(p) for p in pids)
        parent.send_signal(signal.SIGTERM)               # a time limit's first signal
        assert parent.wait(timeout=30) == 128 + signal.SIGTERM
        assert _gone(pids), "the child or its group outlived the parent"
    finally:
        _kill_left(pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups and PR_SET_PDEATHSIG: Linux")
def test_a_child_ends_when_the_parent_is_killed_with_sigkill(tmp_path):
    parent, pids = _start_parent(tmp_path)
    try:
        parent.kill()                                    # nothing of the parent runs: the kernel ends the child
        parent.wait(timeout=30)
        assert _gone(pids[:1]), "the child outlived its parent"
    finally:
        _kill_left(pids)


# ---------------------------------------------------------------- the batch search starts from the memory estimate


def _study_cfg(method: str):
    from tunebench.config import Config, with_overrides

    updates = {"model.name": "tiny", "task": "rte", "method": method, "training.precision": "bf16-mixed",
               **{f"model.tiny.{k}": v for k, v in study_shape().items()}}
    return with_overrides(Config(), updates)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_the_batch_search_starts_and_stops_where_the_memory_estimate_says(method):
    from tunebench.plan.cost import tiny_size
    from tunebench.plan.memory import GPU_MEMORY, RESERVE_BYTES, estimate_memory
    from tunebench.precision import build_policy

    cfg = _study_cfg(method)
    policy = build_policy("bf16-mixed", cfg.model.dtype, "cuda")
    usable = GPU_MEMORY[80] - 600 * 2**20                # an H100 80GB less its CUDA context
    plan = memory_batch_plan(cfg, 32000, policy, usable, 4, 64)

    def peak(b: int) -> int:
        return estimate_memory(tiny_size(cfg.model, 32000), method, cfg.lora, "rte", policy, cfg.training.optim, b,
                               512).peak(False)

    b = plan["largest"]
    assert plan["estimated_peak_bytes"][str(b)] == peak(b) and peak(b) + RESERVE_BYTES <= usable
    # 80 GB: 32 x 512 fits both methods (estimated 58 GiB full, 51 GiB LoRA), 64 x 512 neither (100, 95 GiB)
    assert b == 32 and plan["limited_by"] == "memory estimate" and peak(64) + RESERVE_BYTES > usable
    assert set(plan["estimated_peak_bytes"]) == {"8", "16", "32", "64"}
    small = memory_batch_plan(cfg, 32000, policy, peak(8) + RESERVE_BYTES - 1, 4, 64)
    assert small["largest"] == 4 and small["limited_by"] == "memory estimate"        # nothing above the study's

    tried = []

    def measure(batch: int) -> dict:
        tried.append(batch)
        return {"batch": batch, "tokens_per_s": 1.0}

    res = search_batch(measure, 4, plan["largest"], lambda _: True, first=plan["largest"],
                       cap_reason=plan["limited_by"])
    assert tried == [b] and res["largest_fitting"] == b and res["stopped_by"] == plan["limited_by"]
    res = search_batch(measure, 4, small["largest"], lambda _: True, first=small["largest"],
                       cap_reason=small["limited_by"])
    assert res["tried"] == [] and res["largest_fitting"] == 4 and res["stopped_by"] == "memory estimate"


def test_an_estimate_that_was_too_high_halves_down_to_what_fits():
    measure = measure_until_32
    res = search_batch(measure, 4, 64, lambda b: True, first=64, cap_reason="memory estimate")
    assert [(t["batch"], t["status"]) for t in res["tried"]] == [(64, "oom"), (32, "oom"), (16, "ok")]
    assert res["largest_fitting"] == 16 and res["stopped_by"] == "out of memory"
    res = search_batch(lambda b: (_ for _ in ()).throw(OOM("out of memory")), 4, 16, lambda b: True, first=16)
    assert [t["batch"] for t in res["tried"]] == [16, 8] and res["largest_fitting"] == 4 and res["at_largest"] is None


# ---------------------------------------------------------------- determinism on CUDA


def test_cublas_workspace_is_set_before_cuda_starts_or_the_record_says_why(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    rec = gpu_check.set_cublas_workspace()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and rec["set_before_cuda_init"] and "note" not in rec
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")           # the other valid value is kept
    assert gpu_check.set_cublas_workspace()["cublas_workspace_config"] == ":16:8"
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)   # something started CUDA first
    rec = gpu_check.set_cublas_workspace()
    assert not rec["set_before_cuda_init"] and "deterministic" in rec["note"]


def test_deterministic_algorithms_are_restored_after_the_sanity_checks():
    before = torch.are_deterministic_algorithms_enabled()
    with gpu_check.deterministic_algorithms(True):
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() == before
    assert child.PARENT_ENV
