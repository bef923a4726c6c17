"""Two plan launches over one results folder: each run is trained once, and a run another launch holds is busy."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from plan_fake_runner import fake_run
from plan_helpers import json_files, write_plan
from tunebench.io import atomic_write_json
from tunebench.plan.execute import Options, run_plan, stage_runs
from tunebench.plan.run_fn import call_run_fn
from tunebench.plan.spec import load_plan
from tunebench.results import read_metrics, run_dir, run_id
from tunebench.system import run_lock

TESTS = Path(__file__).resolve().parent
TRAININGS = "trainings.log"      # beside the plan's runs: one line per call of the run function


def locking_run(cfg, *, resume=True, preflight=True):
    """fake_run under the run folder's lock, as tunebench.runner.run_one: status running back (nothing written)
    when another process holds it. Logs `<run_id> <first step>` per training (0: from scratch) into the
    experiment folder. Seed k first sleeps the k-th of the seconds FAKE_RUN_S lists (threads of one process
    share FAKE_STEP_S), and seed 1 waits until the file FAKE_GATE names exists, when it is set."""
    rdir = run_dir(cfg)
    rdir.mkdir(parents=True, exist_ok=True)
    with run_lock(rdir) as holder:
        if holder is not None:
            return {"run_id": run_id(cfg), "status": "running", "reason": f"being run by another process ({holder})"}
        first = _checkpoint_step(rdir) if resume else 0
        with open(rdir.parent / TRAININGS, "a") as f:
            f.write(f"{run_id(cfg)} {first}\n")
        while cfg.training.seed == 1 and os.environ.get("FAKE_GATE") and not Path(os.environ["FAKE_GATE"]).exists():
            time.sleep(0.01)
        seconds = [float(s) for s in os.environ.get("FAKE_RUN_S", "").split(",") if s]
        time.sleep(seconds[cfg.training.seed - 1] if cfg.training.seed <= len(seconds) else 0.0)
        return fake_run(cfg, resume=resume, preflight=preflight)


def _checkpoint_step(rdir: Path) -> int:
    """The step of fake_run's checkpoint in the run folder (0: none)."""
    try:
        return json.loads((rdir / "checkpoints" / "state.json").read_text())["step"]
    except (OSError, ValueError):
        return 0


def trainings(folder: Path) -> list[tuple[str, int]]:
    path = folder / TRAININGS
    lines = path.read_text().split("\n") if path.exists() else []
    return [(rid, int(step)) for rid, step in (line.split() for line in lines if line)]


def plan_file(folder: Path, seeds: list[int], out: str | Path = "results") -> Path:
    return write_plan(folder, f"""
        name: p
        overrides: {{model.name: tiny, tracking.backend: none, output_dir: {out}}}
        tasks: [rte]
        methods: [lora]
        seeds: {seeds}
        """)


def test_two_launches_at_once_train_each_run_once_and_report_busy_runs_as_busy(tmp_path, monkeypatch):
    """Two long runs, then two short ones, started by two launches at once: the second launch finds the first
    long run held (busy) and takes the second, longer one; the first launch trains the short runs meanwhile,
    and the second finds them finished. Every run is trained once; no launch calls a held run failed."""
    monkeypatch.setenv("FAKE_RUN_S", "0.5,2.0,0.05,0.05")
    monkeypatch.setenv("FAKE_STEP_S", "0")
    plan = load_plan(plan_file(tmp_path, [1, 2, 3, 4], tmp_path / "results"))
    streams, results, errors = [io.StringIO(), io.StringIO()], [None, None], []

    def launch(i: int) -> None:
        try:
            [results[i]] = run_plan(plan, "final", Options(run_fn=locking_run, stream=streams[i], live=False))
        except BaseException as e:  # noqa: BLE001 -- reported by the test thread
            errors.append(e)

    threads = [threading.Thread(target=launch, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join(60)
    assert not errors
    runs = stage_runs(plan, "final")
    trained = trainings(plan.output_dir)
    assert Counter(rid for rid, _ in trained) == {r.run_id: 1 for r in runs}
    assert all(step == 0 for _, step in trained)
    assert all(read_metrics(r.run_dir)["status"] == "ok" for r in runs)
    lines = [line for s in streams for line in s.getvalue().splitlines()]
    assert not [line for line in lines if "FAILED" in line]
    busy = [line for line in lines if "] busy   " in line]
    assert busy and all("another process" in line for line in busy)
    for stream, result in zip(streams, results, strict=True):
        assert not result.failed
        finished = stream.getvalue().splitlines()[-1]
        assert ", failed 0," in finished and finished.count("busy") == (len(result.busy) > 0)
        assert not result.busy or f"busy {len(result.busy)}," in finished
        still_running = [rid for rid in result.busy if result.results[rid]["status"] == "running"]
        assert ("1 run busy: left to another process" in result.note) == bool(still_running)
    assert any(result.note for result in results)      # the launch that ended first left the long run to the other
    # each run trained by exactly one launch: what one trained, the other did not
    assert sorted(results[0].trained + results[1].trained) == sorted(r.run_id for r in runs)


def test_a_launch_killed_half_way_beside_another_leaves_every_run_trained_once(tmp_path):
    """Six runs, two `plan run` processes: the first holds run 1 (until the test lets it go) while the second,
    finding run 1 busy, trains runs 2 and 3 and is killed with -9 in the middle of run 4. The first then finds
    runs 2 and 3 finished, resumes run 4 from its checkpoint and trains 5 and 6: no run is trained from scratch
    twice, and the results are those of one uninterrupted launch."""
    ref, shared = tmp_path / "ref", tmp_path / "shared"
    for d in (ref, shared):
        d.mkdir()
        plan_file(d, [1, 2, 3, 4, 5, 6])
    gate = tmp_path / "let-run-1-finish"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "FAKE_STEP_S": "0.05", "FAKE_GATE": str(gate)}
    cmd = [sys.executable, "-m", "tunebench.plan", "run", "plan.yaml", "--runner", f"{__name__}:locking_run"]
    subprocess.run(cmd, cwd=ref, env={**env, "FAKE_STEP_S": "0", "FAKE_GATE": ""}, check=True,
                   capture_output=True, timeout=120)
    folder = shared / "results" / "p"
    first = _launch(cmd, shared, env)
    second = None
    try:
        _wait(lambda: _held_by(folder, first.pid, "s1"), first)
        second = _launch(cmd, shared, env)
        _wait(lambda: _ok(folder, "s2", "s3") and _held_by(folder, second.pid, "s4", past_step=2), second)
        second.kill()
        second.wait()
        gate.touch()
        out, _ = first.communicate(timeout=120)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    fresh = Counter(rid for rid, step in trainings(folder) if step == 0)
    assert sorted(fresh.values()) == [1] * 6, fresh
    assert sorted(step for _, step in trainings(folder) if step) == [_step_of(folder, "s4")]  # one resume
    assert first.returncode == 0 and "FAILED" not in out, out
    assert sum("finished by another process" in line for line in out.splitlines()) == 2
    killed = second.stdout.read()
    assert "FAILED" not in killed and [line for line in killed.splitlines() if "] busy   rte-lora-s1-" in line]
    assert json_files(shared) == json_files(ref)


def _launch(cmd: list[str], cwd: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(condition, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None, "the launch ended too early"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _run_folder(folder: Path, seed: str) -> Path | None:
    return next(iter(folder.glob(f"rte-lora-{seed}-*")), None)


def _ok(folder: Path, *seeds: str) -> bool:
    return all((d := _run_folder(folder, s)) and (read_metrics(d) or {}).get("status") == "ok" for s in seeds)


def _held_by(folder: Path, pid: int, seed: str, past_step: int = 0) -> bool:
    """Process `pid` holds the run (its lock file names it), and has trained it past `past_step` when given."""
    d = _run_folder(folder, seed)
    return bool(d) and _text(d / ".lock").startswith(f"pid {pid} on") and (
        not past_step or (read_metrics(d) or {}).get("status") == "running" and _checkpoint_step(d) >= past_step)


def _step_of(folder: Path, seed: str) -> int:
    """The step the resumed training of a run started from (resumed.txt, written by fake_run)."""
    return int(_text(_run_folder(folder, seed) / "resumed.txt").split()[0])


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


# ---------------------------------------------------------------- the state re-read under the lock


class Finishing:
    """A run function that, while it trains the first run, lets "another process" finish the others first."""

    def __init__(self, others: list[tuple]):
        self.others, self.calls = others, []

    def __call__(self, cfg, *, resume=True, preflight=True):
        self.calls.append(cfg.training.seed)
        for other_cfg, status in self.others if len(self.calls) == 1 else ():
            record = fake_run(other_cfg)
            if status == "failed":
                atomic_write_json(run_dir(other_cfg) / "metrics.json", {**record, "status": "failed",
                                                                        "reason": "nan loss at step 3"})
        return fake_run(cfg, resume=resume, preflight=preflight)


@pytest.mark.parametrize("retry_failed", [True, False])
def test_a_run_found_finished_once_its_lock_is_taken_is_not_run_again(tmp_path, retry_failed):
    plan = load_plan(plan_file(tmp_path, [1, 2, 3], tmp_path / "results"))
    first, done, failed = stage_runs(plan, "final")
    fn = Finishing([(done.cfg, "ok"), (failed.cfg, "failed")])
    out = io.StringIO()
    [stage] = run_plan(plan, "final", Options(run_fn=fn, stream=out, live=False, retry_failed=retry_failed))
    assert fn.calls == ([1, 3] if retry_failed else [1])
    assert stage.trained == [first.run_id, *([failed.run_id] if retry_failed else [])]
    assert read_metrics(done.run_dir)["status"] == "ok" and not (done.run_dir / "resumed.txt").exists()
    assert stage.failed == ([] if retry_failed else [failed.run_id])
    lines = out.getvalue().splitlines()
    assert sum(" start  " in line for line in lines) == len(fn.calls)
    assert [line for line in lines if done.run_id in line and "finished by another process" in line]


def test_call_run_fn_skips_a_finished_run_and_leaves_a_held_one_alone(tmp_path):
    plan = load_plan(plan_file(tmp_path, [1], tmp_path / "results"))
    [run] = stage_runs(plan, "final")
    record = fake_run(run.cfg)
    calls = []

    def counting(cfg, *, resume=True, preflight=True):
        calls.append(cfg)
        return fake_run(cfg, resume=resume)

    found = call_run_fn(counting, run.cfg)
    assert calls == [] and found["status"] == "ok" and found["test"] == record["test"]
    atomic_write_json(run.run_dir / "metrics.json", {**record, "status": "failed", "reason": "x"})
    assert call_run_fn(counting, run.cfg, retry_failed=False)["status"] == "failed" and calls == []
    holder = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with run_lock(run.run_dir):
            holder.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert holder.wait(10)
        busy = call_run_fn(counting, run.cfg)
        assert calls == [] and busy["status"] == "running" and "another process" in busy["reason"]
    finally:
        release.set()
        t.join()
    assert call_run_fn(counting, run.cfg)["status"] == "ok" and len(calls) == 1   # failed: retried
