"""Executing plans with fake runners: stages, selection.json, resume, retries, shards, kill -9, progress."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import plan_fake_runner
from plan_fake_runner import fake_run, fake_value
from plan_helpers import SMALL_TWO_STAGE, json_files, write_plan
from tunebench.errors import TunebenchError
from tunebench.io import atomic_write_json
from tunebench.plan.__main__ import main as plan_main
from tunebench.plan.execute import Options, run_plan, stage_runs
from tunebench.plan.expand import expand_grid_final, expand_sweep
from tunebench.plan.progress import Board, RunRow, make_progress
from tunebench.plan.spec import load_plan
from tunebench.results import read_metrics

TESTS = Path(__file__).resolve().parent
FAKE = "plan_fake_runner:fake_run"


class Counting:
    """A run function that counts its calls and records the resume flag."""

    def __init__(self, fn=fake_run):
        self.fn, self.calls = fn, []

    def __call__(self, cfg, *, resume=True, preflight=True):
        self.calls.append((cfg.task, cfg.method, cfg.training.seed, resume))
        return self.fn(cfg, resume=resume, preflight=preflight)


def quiet(**kw) -> Options:
    return Options(stream=io.StringIO(), live=False, **kw)


@pytest.fixture
def small(tmp_path):
    return load_plan(write_plan(tmp_path, SMALL_TWO_STAGE.format(out=tmp_path / "results")))


def test_two_stage_plan_selects_on_validation_and_runs_the_choice(small, tmp_path):
    sweep, final = run_plan(small, "all", quiet(run_fn=fake_run))
    assert (len(sweep.runs), len(final.runs)) == (8, 8) and not sweep.failed and not final.failed
    assert "selection written" in sweep.note
    assert len(list((tmp_path / "results" / "small-sweep").glob("*/metrics.json"))) == 8
    assert len(list((tmp_path / "results" / "small").glob("*/metrics.json"))) == 8
    selection = json.loads((tmp_path / "results" / "small" / "selection.json").read_text())
    for task in ("mrpc", "rte"):
        for method in ("lora", "full"):
            entry = selection[task][method]
            cands = [r for r in expand_sweep(small) if r.task == task and r.method == method]
            best = max(cands, key=lambda r: fake_value(r.cfg))
            assert entry["overrides"] == best.overrides and entry["learning_rate"] == best.cfg.learning_rate
            assert entry["validation_value"] == fake_value(best.cfg)
            assert len(entry["candidates"]) == 2 and all(len(c["run_ids"]) == 1 for c in entry["candidates"])
            chosen = {r.cfg.learning_rate for r in final.runs if r.task == task and r.method == method}
            assert chosen == {best.cfg.learning_rate}


def test_rerun_skips_finished_runs(small):
    run_plan(small, "all", quiet(run_fn=fake_run))
    counting = Counting()
    results = run_plan(small, "all", quiet(run_fn=counting))
    assert counting.calls == [] and all(not r.ran for r in results)


def test_failed_runs_are_retried_unless_told_not_to(tmp_path):
    path = write_plan(tmp_path, f"""
        name: f
        overrides: {{model.name: tiny, output_dir: {tmp_path / 'results'}}}
        tasks: [rte]
        methods: [lora]
        seeds: [1, 2]
        grid: {{lora: {{training.learning_rate: [1.0e-4, {plan_fake_runner.FAIL_AT_LR}]}}}}
        """)
    plan = load_plan(path)
    [first] = run_plan(plan, "final", quiet(run_fn=fake_run))
    assert len(first.failed) == 2
    keep = Counting()
    [kept] = run_plan(plan, "final", quiet(run_fn=keep, retry_failed=False))
    assert keep.calls == [] and len(kept.failed) == 2
    retry = Counting()
    run_plan(plan, "final", quiet(run_fn=retry))
    assert sorted(retry.calls) == [("rte", "lora", 1, True), ("rte", "lora", 2, True)]


def test_stale_running_status_is_resumed_from_its_checkpoint(small, monkeypatch):
    run = expand_sweep(small)[0]
    reference = fake_run(run.cfg)  # what an uninterrupted run records
    # a process killed after step 4: metrics.json still "running", the step-4 checkpoint on disk
    monkeypatch.setenv("FAKE_STEPS", "4")
    state = fake_run(run.cfg, resume=False)["state"]
    monkeypatch.delenv("FAKE_STEPS")
    atomic_write_json(run.run_dir / "checkpoints" / "state.json", {"step": 4, "state": state})
    atomic_write_json(run.run_dir / "metrics.json", {"run_id": run.run_id, "status": "running"})
    counting = Counting()
    [sweep] = run_plan(small, "sweep", quiet(run_fn=counting))
    assert (run.task, run.method, run.seed, True) in counting.calls
    assert (run.run_dir / "resumed.txt").read_text() == "4\n"
    assert read_metrics(run.run_dir) == reference
    assert sweep.results[run.run_id] == reference


def test_final_stage_refuses_an_incomplete_sweep_then_shards_match_one_machine(tmp_path, capsys):
    shared, single = tmp_path / "shared", tmp_path / "single"
    shared_plan = write_plan(tmp_path, SMALL_TWO_STAGE.format(out=shared / "results"), "shared.yaml")
    single_plan = write_plan(tmp_path, SMALL_TWO_STAGE.format(out=single / "results"), "single.yaml")
    run = ["run", "--runner", FAKE]
    assert plan_main([*run, str(shared_plan), "--stage", "sweep", "--shard", "1/2"]) == 0
    assert "selection not written" in capsys.readouterr().out
    assert plan_main([*run, str(shared_plan), "--stage", "final", "--shard", "1/2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs every sweep result: 4 of 8 sweep runs are not finished" in err
    assert plan_main([*run, str(shared_plan), "--stage", "all", "--shard", "2/2"]) == 2
    assert "--stage sweep` on every shard" in capsys.readouterr().err
    assert plan_main([*run, str(shared_plan), "--stage", "sweep", "--shard", "2/2"]) == 0
    assert "selection written" in capsys.readouterr().out
    for k in ("1/2", "2/2"):
        assert plan_main([*run, str(shared_plan), "--stage", "final", "--shard", k]) == 0
    assert plan_main([*run, str(single_plan)]) == 0
    assert "next: tunebench report" in capsys.readouterr().out
    assert _same_but_output_dir(json_files(shared)) == _same_but_output_dir(json_files(single))


def _same_but_output_dir(files: dict) -> dict:
    for content in files.values():
        content.get("config", {}).pop("output_dir", None)
    return files


def test_sweep_stage_needs_a_sweep_section(tmp_path):
    plan = load_plan(write_plan(tmp_path, "name: one\ntasks: [rte]\n"))
    with pytest.raises(TunebenchError, match="no `sweep:` section"):
        stage_runs(plan, "sweep")


def test_a_runner_that_raises_is_recorded_and_the_plan_goes_on(tmp_path):
    plan = load_plan(write_plan(tmp_path, f"name: r\ntasks: [rte, mrpc]\nmethods: [lora]\nseeds: [1]\n"
                                          f"overrides: {{output_dir: {tmp_path}}}\n"))
    [stage] = run_plan(plan, "final", quiet(run_fn=plan_fake_runner.raising_run))
    assert len(stage.ran) == 2 and len(stage.failed) == 2
    assert {m["reason"] for m in stage.results.values()} == {"RuntimeError: boom"}


def test_unknown_runner_is_a_one_line_error(small):
    with pytest.raises(TunebenchError, match="cannot import no_such_module"):
        run_plan(small, "sweep", quiet(run_fn="no_such_module:run"))


def test_plain_progress_lines_and_status(small, tmp_path, capsys):
    out = io.StringIO()
    run_plan(small, "sweep", Options(run_fn=fake_run, stream=out, live=False))
    lines = out.getvalue().splitlines()
    assert lines[0] == "[sweep] 8 runs: 8 to run, 0 already done, 0 failed and kept"
    assert sum(" start  " in line for line in lines) == 8 and sum(" ok     " in line for line in lines) == 8
    assert "elapsed" in lines[-2] and "left" in lines[-2] and lines[-1].startswith("[sweep] finished: done 8")
    assert plan_main(["status", str(small.path)]) == 0
    status = capsys.readouterr().out
    assert "sweep: 8 runs: 8 done, 0 failed, 0 interrupted, 0 pending" in status
    assert "final: 8 runs: 0 done" in status and "selection (best mean validation" in status
    assert plan_main(["run", str(small.path), "--dry-run", "--stage", "final", "--shard", "1/2"]) == 0
    assert capsys.readouterr().out.count("pending") == 4


def test_live_table_renders():
    board = Board("sweep", [RunRow("rte-lora-s1-abc", "rte/lora", 1.0), RunRow("rte-full-s1-def", "rte/full", 2.0)])
    out = io.StringIO()
    with make_progress(board, out, live=True) as progress:
        progress.started("rte-lora-s1-abc")
        progress.finished("rte-lora-s1-abc", ok=True)
        progress.started("rte-full-s1-def")
    text = out.getvalue()
    assert "task/method" in text and "rte/full" in text and "running rte-full-s1-def" in text


# ---------------------------------------------------------------- kill -9


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _mid_run(folder: Path, min_ok: int) -> bool:
    """True when >= min_ok runs are ok and another is running with a checkpoint past step 2."""
    ok = mid = 0
    for metrics_file in folder.glob("*/metrics.json"):
        status = _read_json(metrics_file).get("status")
        step = _read_json(metrics_file.parent / "checkpoints" / "state.json").get("step", 0)
        ok += status == "ok"
        mid += status == "running" and step >= 2
    return ok >= min_ok and mid >= 1


def test_kill_9_and_resume_gives_the_uninterrupted_results(tmp_path):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    for d in (ref, killed):
        d.mkdir()
        write_plan(d, SMALL_TWO_STAGE.format(out="results"))  # relative: both trees record identical configs
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "FAKE_STEPS": "10"}
    cmd = [sys.executable, "-m", "tunebench.plan", "run", "plan.yaml", "--runner", FAKE]
    subprocess.run(cmd, cwd=ref, env={**env, "FAKE_STEP_S": "0"}, check=True, capture_output=True, timeout=120)

    for experiment in ("small-sweep", "small"):  # once in each stage, in the middle of a run
        proc = subprocess.Popen(cmd, cwd=killed, env={**env, "FAKE_STEP_S": "0.05"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        try:
            while not _mid_run(killed / "results" / experiment, min_ok=2):
                assert proc.poll() is None, "the plan finished before it could be killed"
                assert time.monotonic() < deadline, "no run reached the middle in time"
                time.sleep(0.01)
        finally:
            proc.kill()  # SIGKILL: no cleanup, no handler
            proc.wait()
        assert proc.returncode == -9

    subprocess.run(cmd, cwd=killed, env={**env, "FAKE_STEP_S": "0"}, check=True, capture_output=True, timeout=120)
    resumed = sorted(killed.rglob("resumed.txt"))
    assert len(resumed) >= 2 and all(int(p.read_text().split()[0]) >= 2 for p in resumed)
    assert not list(ref.rglob("resumed.txt"))
    assert json_files(killed) == json_files(ref)  # every JSON parses, and each equals the uninterrupted one
    assert len(json_files(ref)) == 8 + 8 + 1


def test_full_cli_registers_plan(tmp_path, capsys):
    from tunebench.cli import main

    plan = write_plan(tmp_path, f"name: c\ntasks: [rte]\nmethods: [full]\nseeds: [1]\n"
                                f"overrides: {{output_dir: {tmp_path}}}\n")
    assert main(["plan", "run", str(plan), "--runner", FAKE]) == 0
    assert "final: 1 runs, 1 run now, 0 not ok" in capsys.readouterr().out
    assert len(expand_grid_final(load_plan(plan))) == 1
