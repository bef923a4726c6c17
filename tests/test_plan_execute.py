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
    reused = [c for name, c in json_files(shared).items() if name.startswith("results/small/") and "reused_from" in c]
    assert len(reused) == 4       # each shard copied the seed-42 runs it owns


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
    # the final stage's seed-42 runs are the sweep's picked runs: copied, not trained (tunebench.plan.reuse)
    assert "final: 8 runs: 0 done, 0 failed, 0 interrupted, 8 pending (4 to copy from the sweep)" in status
    assert "selection (best mean validation" in status
    copied = {f.run_id for f, _ in _reused_pairs(small)}
    assert plan_main(["run", str(small.path), "--dry-run", "--stage", "final"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert len(rows) == 8 and {rid for state, rid, *_ in rows if state == "copy"} == copied
    assert {state for state, rid, *_ in rows if rid not in copied} == {"pending"}
    assert plan_main(["run", str(small.path), "--dry-run", "--stage", "final", "--shard", "1/2"]) == 0
    assert sum(line.split()[0] in ("pending", "copy") for line in capsys.readouterr().out.splitlines()[1:]) == 4


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


# ---------------------------------------------------------------- reusing sweep runs in the final stage


def _reused_pairs(plan) -> list[tuple]:
    """(final run, sweep run) with the same id: the final seed that is also a sweep seed."""
    sweep = {r.run_id: r for r in expand_sweep(plan)}
    return [(r, sweep[r.run_id]) for r in stage_runs(plan, "final", write=False) if r.run_id in sweep]


def _without_location(metrics: dict) -> dict:
    out = {k: v for k, v in metrics.items() if k not in ("experiment", "reused_from")}
    if "config" in out:
        out["config"] = {k: v for k, v in out["config"].items() if k != "experiment"}
    return out


def _leftovers(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*reuse-*"))


def test_final_stage_copies_the_sweep_runs_it_shares_instead_of_training_them(small, tmp_path):
    from tunebench.config import dump_yaml

    [sweep] = run_plan(small, "sweep", quiet(run_fn=fake_run))
    pairs = _reused_pairs(small)
    assert len(pairs) == 4 and {f.seed for f, _ in pairs} == {42}
    extra = {"predictions/test.jsonl": '{"idx": 0}\n', "log.jsonl": '{"step": 1}\n', ".lock": "pid 1 on host",
             "wandb/offline-run-x/run-x.wandb": "w", "checkpoints/state.json": "{}"}
    for _, src in pairs:
        for name, text in extra.items():
            (src.run_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (src.run_dir / name).write_text(text)
    counting, out = Counting(), io.StringIO()
    [final] = run_plan(small, "final", Options(run_fn=counting, stream=out, live=False))
    assert sorted(counting.calls) == sorted((t, m, 43, True) for t in ("mrpc", "rte") for m in ("lora", "full"))
    assert sorted(final.reused) == sorted(f.run_id for f, _ in pairs) and len(final.ran) == 8
    assert sorted(final.trained) == sorted(r.run_id for r in final.runs if r.seed == 43) and not final.failed
    for run, src in pairs:
        dst, theirs = run.run_dir, read_metrics(src.run_dir)
        assert dst == tmp_path / "results" / "small" / run.run_id
        mine = read_metrics(dst)
        assert mine["reused_from"] == f"small-sweep/{run.run_id}" and mine["status"] == "ok"
        assert mine["experiment"] == mine["config"]["experiment"] == "small" and theirs["experiment"] == "small-sweep"
        assert _without_location(mine) == _without_location(theirs) and final.results[run.run_id] == mine
        assert list(mine)[:4] == ["schema", "run_id", "experiment", "reused_from"]  # placed beside experiment
        assert (dst / "config.yaml").read_text() == dump_yaml(run.cfg)      # as if the final run had trained
        assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*")) == [
            "config.yaml", "log.jsonl", "metrics.json", "predictions", "predictions/test.jsonl"]
        for name in ("log.jsonl", "predictions/test.jsonl"):
            assert (dst / name).read_bytes() == (src.run_dir / name).read_bytes()
        assert dst.stat().st_mode == src.run_dir.stat().st_mode
        assert read_metrics(src.run_dir) == theirs and (src.run_dir / ".lock").exists()  # the sweep run untouched
    assert not _leftovers(tmp_path / "results" / "small")
    lines = out.getvalue().splitlines()
    reused = [line for line in lines if "reused sweep run small-sweep/" in line]
    assert len(reused) == 4 and all(line.startswith("[final] ok     ") for line in reused)
    assert sum(" start  " in line for line in lines) == 4      # only the trained runs start
    # a rerun of the whole plan runs nothing
    again = Counting()
    results = run_plan(small, "all", quiet(run_fn=again))
    assert again.calls == [] and all(not r.ran and not r.reused for r in results)


def test_reused_seeds_are_known_before_the_sweep(small, tmp_path):
    from tunebench.plan.reuse import reused_seeds

    assert reused_seeds(small) == (42,)
    one_stage = load_plan(write_plan(tmp_path, "name: one\ntasks: [rte]\nseeds: [42, 43]\n", "one.yaml"))
    assert reused_seeds(one_stage) == ()


def test_all_stages_in_one_go_reuse_too_and_match_training_them(tmp_path):
    """`plan run` (both stages): the reused folders hold what training the final runs would have written."""
    plan = load_plan(write_plan(tmp_path, SMALL_TWO_STAGE.format(out=tmp_path / "results")))
    counting = Counting()
    sweep, final = run_plan(plan, "all", quiet(run_fn=counting))
    assert len(counting.calls) == 8 + 4 and len(final.reused) == 4
    for run in final.runs:
        if run.run_id in final.reused:
            assert _without_location(read_metrics(run.run_dir)) == _without_location(fake_run(run.cfg))


def test_only_ok_sweep_runs_are_reused(small):
    from tunebench.plan.execute import execute_runs

    run_plan(small, "sweep", quiet(run_fn=fake_run))
    runs, pairs = stage_runs(small, "final"), _reused_pairs(small)  # selected, then the sweep runs change
    (_, failed), (_, running) = pairs[0], pairs[1]
    atomic_write_json(failed.run_dir / "metrics.json", {**read_metrics(failed.run_dir), "status": "failed",
                                                        "reason": "nan loss"})
    atomic_write_json(running.run_dir / "metrics.json", {**read_metrics(running.run_dir), "status": "running"})
    counting = Counting()
    result = execute_runs(runs, quiet(run_fn=counting), "final", sweep=expand_sweep(small))
    trained = {(t, m, s) for t, m, s, _ in counting.calls}
    assert {(r.task, r.method, r.seed) for r, _ in pairs[:2]} <= trained and len(trained) == 4 + 2
    assert len(result.reused) == 2 and not result.failed
    for run, _ in pairs[:2]:
        assert "reused_from" not in read_metrics(run.run_dir)


def test_an_unfinished_final_run_is_replaced_by_the_copy_a_done_one_is_kept(small):
    run_plan(small, "sweep", quiet(run_fn=fake_run))
    (done, _), (interrupted, _), (started, _), (failed, _) = _reused_pairs(small)
    fake_run(done.cfg)                      # trained by an earlier version of the plan: left alone
    for run, status in ((interrupted, "running"), (failed, "failed")):
        atomic_write_json(run.run_dir / "metrics.json", {"run_id": run.run_id, "status": status, "reason": "x"})
        (run.run_dir / "error.log").write_text("Traceback")
    atomic_write_json(interrupted.run_dir / "checkpoints" / "state.json", {"step": 4, "state": 1})
    started.run_dir.mkdir(parents=True)     # a runner killed before its first metrics.json: the lock file only
    (started.run_dir / ".lock").write_text("pid 1 on host")
    counting = Counting()
    [final] = run_plan(small, "final", quiet(run_fn=counting, retry_failed=False))
    assert sorted(final.reused) == sorted([interrupted.run_id, started.run_id]) and final.failed == [failed.run_id]
    assert len(counting.calls) == 4 and read_metrics(failed.run_dir)["status"] == "failed"  # kept: no retries
    for run in (interrupted, started):
        assert read_metrics(run.run_dir)["reused_from"] and not (run.run_dir / "error.log").exists()
        assert not (run.run_dir / "checkpoints").exists() and not (run.run_dir / ".lock").exists()
    assert "reused_from" not in read_metrics(done.run_dir) and read_metrics(done.run_dir)["status"] == "ok"
    [final] = run_plan(small, "final", quiet(run_fn=Counting()))
    assert final.reused == [failed.run_id] and not final.failed and not (failed.run_dir / "error.log").exists()
    assert not _leftovers(small.output_dir)


def test_status_tells_a_live_run_from_an_interrupted_one(small, capsys):
    """A sweep run that says running is `running` while a live process on this machine holds its lock (read
    from the lock file, not taken), and `interrupted` once that process is gone."""
    from tunebench.system import run_lock

    runs = expand_sweep(small)
    for run in runs[:2]:
        run.run_dir.mkdir(parents=True)
        atomic_write_json(run.run_dir / "metrics.json", {"run_id": run.run_id, "status": "running"})
    live, dead = runs[:2]
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (dead.run_dir / ".lock").write_text(f"pid {gone.stdout.strip()} on {os.uname().nodename}")
    with run_lock(live.run_dir) as holder:
        assert holder is None
        assert plan_main(["status", str(small.path)]) == 0
        assert "sweep: 8 runs: 0 done, 0 failed, 1 running, 1 interrupted, 6 pending" in capsys.readouterr().out
        assert plan_main(["run", str(small.path), "--dry-run", "--stage", "sweep"]) == 0
        states = dict(line.split()[1::-1] for line in capsys.readouterr().out.splitlines()[1:])
        assert states[live.run_id] == "running" and states[dead.run_id] == "interrupted"
    assert plan_main(["status", str(small.path)]) == 0       # the lock released: nobody runs it now
    assert "sweep: 8 runs: 0 done, 0 failed, 2 interrupted, 6 pending" in capsys.readouterr().out


@pytest.mark.parametrize("proc_locks", [True, False])
def test_live_holder_is_the_process_holding_the_lock_now(tmp_path, monkeypatch, proc_locks):
    """Linux: the lock table says who holds it (exact); elsewhere the pid the lock file names must be alive."""
    import tunebench.system as system

    if not proc_locks:
        monkeypatch.setattr(system, "PROC_LOCKS", tmp_path / "no-such-table")
    elif not system.PROC_LOCKS.exists():
        pytest.skip("no /proc/locks here")
    assert system.live_holder(tmp_path) is None                      # no lock file
    with system.run_lock(tmp_path) as holder:
        assert holder is None and system.live_holder(tmp_path) == f"pid {os.getpid()} on {os.uname().nodename}"
        # the table matches the pid the lock file names too: a flock on this inode number taken by another
        # process (another filesystem's file) is not this run's; the pid fallback sees a live pid and says held
        (tmp_path / ".lock").write_text(f"pid {os.getppid()} on {os.uname().nodename}")
        assert (system.live_holder(tmp_path) is None) == proc_locks
    # released by a process still alive: the lock table knows; the pid fallback cannot tell and says held
    assert (system.live_holder(tmp_path) is None) == proc_locks
    (tmp_path / ".lock").write_text(f"pid {os.getpid()} on another-host")
    assert system.live_holder(tmp_path) is None
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".lock").write_text(f"pid {gone.stdout.strip()} on {os.uname().nodename}")
    assert system.live_holder(tmp_path) is None                      # that process has ended


def test_a_failed_final_run_that_will_be_copied_shows_as_a_copy_unless_failures_are_kept(small, capsys):
    run_plan(small, "sweep", quiet(run_fn=fake_run))
    (run, _), *_ = _reused_pairs(small)
    run.run_dir.mkdir(parents=True)
    atomic_write_json(run.run_dir / "metrics.json", {"run_id": run.run_id, "status": "failed", "reason": "x"})
    assert plan_main(["status", str(small.path)]) == 0
    assert "final: 8 runs: 0 done, 1 failed, 0 interrupted, 7 pending (4 to copy from the sweep)" in \
        capsys.readouterr().out
    for flags, state in (([], "copy"), (["--no-retry-failed"], "failed")):
        assert plan_main(["run", str(small.path), "--dry-run", "--stage", "final", *flags]) == 0
        states = dict(line.split()[1::-1] for line in capsys.readouterr().out.splitlines()[1:])
        assert states[run.run_id] == state, flags


def test_a_final_run_held_by_another_process_is_left_alone(small):
    from tunebench.system import run_lock

    run_plan(small, "sweep", quiet(run_fn=fake_run))
    (run, _), *_ = _reused_pairs(small)
    run.run_dir.mkdir(parents=True)
    atomic_write_json(run.run_dir / "metrics.json", {"run_id": run.run_id, "status": "running"})
    with run_lock(run.run_dir) as holder:
        assert holder is None
        [final] = run_plan(small, "final", quiet(run_fn=fake_run))
    assert final.results[run.run_id]["status"] == "running" and "left alone" in final.results[run.run_id]["reason"]
    assert read_metrics(run.run_dir) == {"run_id": run.run_id, "status": "running"}
    assert not _leftovers(small.output_dir)


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_an_interrupted_copy_leaves_nothing_and_a_rerun_completes_it(small, monkeypatch, error):
    import shutil

    import tunebench.plan.reuse as reuse

    run_plan(small, "sweep", quiet(run_fn=fake_run))
    pairs = _reused_pairs(small)
    real_copytree = shutil.copytree

    def copy_then_fail(src, dst, **kw):
        real_copytree(src, dst, **kw)   # the temporary folder is full, the rename never comes
        raise error

    monkeypatch.setattr(reuse.shutil, "copytree", copy_then_fail)
    if isinstance(error, OSError):      # a failed verdict for the run, the plan goes on with the others
        [final] = run_plan(small, "final", quiet(run_fn=fake_run))
        assert sorted(final.failed) == sorted(r.run_id for r, _ in pairs) and not final.reused
        assert "No space left on device" in final.results[pairs[0][0].run_id]["reason"]
        assert len(list(small.output_dir.glob("*/metrics.json"))) == 4       # the trained seed-43 runs
    else:                               # Ctrl-C: the plan stops
        with pytest.raises(KeyboardInterrupt):
            run_plan(small, "final", quiet(run_fn=fake_run))
    for run, _ in pairs:
        assert not run.run_dir.exists()
    assert not _leftovers(small.output_dir)
    monkeypatch.setattr(reuse.shutil, "copytree", real_copytree)
    [final] = run_plan(small, "final", quiet(run_fn=fake_run))
    assert sorted(final.reused) == sorted(r.run_id for r, _ in pairs) and not final.failed
    assert all(read_metrics(r.run_dir)["reused_from"] for r, _ in pairs)


def test_an_interrupted_rename_and_a_dead_copy_leave_nothing_behind(small, monkeypatch):
    import tunebench.plan.reuse as reuse

    run_plan(small, "sweep", quiet(run_fn=fake_run))
    pairs = _reused_pairs(small)
    # what a copy killed with -9 leaves: a temporary folder that the next copy of that run removes
    dead = small.output_dir / f".{pairs[0][0].run_id}.reuse-dead"
    (dead / "predictions").mkdir(parents=True)
    (dead / "config.yaml").write_text("experiment: small\n")
    real_rename = os.rename

    def failing_rename(src, dst):
        if ".reuse-" in str(src):
            raise OSError(5, "Input/output error")
        real_rename(src, dst)

    monkeypatch.setattr(reuse.os, "rename", failing_rename)
    [final] = run_plan(small, "final", quiet(run_fn=fake_run))
    assert len(final.failed) == 4 and not any(r.run_dir.exists() for r, _ in pairs)
    assert not _leftovers(small.output_dir)
    monkeypatch.setattr(reuse.os, "rename", real_rename)
    counting = Counting()
    [final] = run_plan(small, "final", quiet(run_fn=counting))
    assert counting.calls == [] and len(final.reused) == 4 and not final.failed


def test_real_runner_final_stage_reuses_the_sweep_run(tmp_path, one_thread):
    """End to end with tunebench.runner.run_one (tiny model, builtin data, 2 steps): one sweep run, two final
    runs of which one is the sweep run's copy; every file but metrics.json and config.yaml byte for byte."""
    import functools

    from tunebench.runner import run_one

    plan = load_plan(write_plan(tmp_path, f"""
        name: e2e
        overrides:
          output_dir: {tmp_path / 'results'}
          model.name: tiny
          tracking.backend: none
          data.source: builtin
          data.builtin_train_size: 32
          data.builtin_test_size: 16
          data.validation_size: 8
          training.max_steps: 2
          training.eval_steps: 2
          training.per_device_train_batch_size: 8
          training.eval_train_examples: 8
          model.max_length: 64
        tasks: [rte]
        methods: [lora]
        seeds: [42, 43]
        sweep: {{seeds: [42]}}
        """))
    counting = Counting(functools.partial(run_one, preflight=False))
    sweep, final = run_plan(plan, "all", quiet(run_fn=counting))
    assert [c[2] for c in counting.calls] == [42, 43] and not sweep.failed and not final.failed
    [(run, src)] = _reused_pairs(plan)
    assert final.reused == [run.run_id]
    dst, theirs, mine = run.run_dir, read_metrics(src.run_dir), read_metrics(run.run_dir)
    assert mine["reused_from"] == f"e2e-sweep/{run.run_id}" and _without_location(mine) == _without_location(theirs)
    assert mine["config"]["experiment"] == "e2e" and mine["test"] == theirs["test"]
    files = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(src.run_dir).as_posix() for p in src.run_dir.rglob("*")
                           if p.is_file() and p.name != ".lock")
    assert "adapter/adapter_config.json" in files and "predictions/test.jsonl" in files
    for name in files:
        if name not in ("metrics.json", "config.yaml"):
            assert (dst / name).read_bytes() == (src.run_dir / name).read_bytes(), name
    ours, sweeps = (dst / "config.yaml").read_text(), (src.run_dir / "config.yaml").read_text()
    assert [(a, b) for a, b in zip(ours.splitlines(), sweeps.splitlines(), strict=True) if a != b] == [
        ("experiment: e2e", "experiment: e2e-sweep")]
    # the report's reader takes the reused run as an ordinary finished run of the final experiment
    from tunebench.report.collect import collect_runs

    table = collect_runs(plan.output_dir)
    assert len(table) == 2 and set(table["status"]) == {"ok"} and set(table["experiment"]) == {"e2e"}


def test_a_run_another_process_is_copying_is_left_alone(small):
    """Two final stages over one folder: the copy of a run holds `.<run_id>.reuse.lock`; the other process
    neither removes its temporary folder nor copies too, and reports the run running."""
    import fcntl

    run_plan(small, "sweep", quiet(run_fn=fake_run))
    run, _ = _reused_pairs(small)[0]
    small.output_dir.mkdir(parents=True, exist_ok=True)
    theirs = small.output_dir / f".{run.run_id}.reuse-theirs"      # the other copier's folder, mid-copy
    theirs.mkdir()
    with open(small.output_dir / f".{run.run_id}.reuse.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        [final] = run_plan(small, "final", quiet(run_fn=fake_run))
    assert final.results[run.run_id]["status"] == "running" and theirs.is_dir() and not run.run_dir.exists()
    [final] = run_plan(small, "final", quiet(run_fn=fake_run))        # lock released: copied, leftover removed
    assert read_metrics(run.run_dir)["status"] == "ok" and not theirs.exists() and not final.failed


def test_a_polled_start_is_one_line():
    """Ray's collector reports a running run at every poll; the log says `start` once per run."""
    import io

    from tunebench.plan.progress import Board, LineProgress, RunRow

    out = io.StringIO()
    progress = LineProgress(Board("final", [RunRow("a", "sst2/lora", 1.0), RunRow("b", "sst2/full", 1.0)]), out)
    for _ in range(3):
        progress.started("a")
    progress.started("b")
    progress.finished("a", True)
    assert [ln.split()[1:3] for ln in out.getvalue().splitlines()] == [["start", "a"], ["start", "b"], ["ok", "a"]]
