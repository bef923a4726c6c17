"""`--backend ray`: a small plan on a local 2-CPU Ray cluster, and the one-line error without Ray."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from plan_fake_runner import fake_run
from plan_helpers import SMALL_TWO_STAGE, json_files, write_plan
from tunebench.errors import TunebenchError
from tunebench.plan.execute import Options, run_plan
from tunebench.plan.ray_backend import task_resources
from tunebench.plan.spec import load_plan

TESTS = Path(__file__).resolve().parent


def test_task_resources():
    assert task_resources({"CPU": 16.0, "GPU": 4.0}) == {"num_gpus": 1}
    assert task_resources({"CPU": 2.0}) == {"num_cpus": 1}


def test_missing_ray_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    plan = load_plan(write_plan(tmp_path, SMALL_TWO_STAGE.format(out=tmp_path / "results")))
    with pytest.raises(TunebenchError, match=r"^--backend ray needs Ray: pip install 'tunebench\[ray\]'$"):
        run_plan(plan, "sweep", Options(backend="ray", run_fn=fake_run, stream=io.StringIO(), live=False))


def test_plan_runs_on_a_local_ray_cluster(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")  # reported by -ra, not silent
    # workers import the fake runner by name ("module:function"), as they would tunebench.runner
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "ray"
        plan = load_plan(write_plan(tmp_path, SMALL_TWO_STAGE.format(out=out / "results"), "ray.yaml"))
        progress = io.StringIO()
        sweep, final = run_plan(plan, "all", Options(backend="ray", run_fn="plan_fake_runner:fake_run",
                                                     stream=progress, live=False))
    finally:
        ray.shutdown()
    assert (len(sweep.ran), len(final.ran)) == (8, 8) and not sweep.failed and not final.failed
    # the drivers got each run's metrics back, and the workers wrote the same files a local run writes
    assert all(final.results[r.run_id]["status"] == "ok" for r in final.runs)
    local = tmp_path / "local"
    run_plan(load_plan(write_plan(tmp_path, SMALL_TWO_STAGE.format(out=local / "results"), "local.yaml")), "all",
             Options(run_fn=fake_run, stream=io.StringIO(), live=False))
    assert _strip(json_files(out)) == _strip(json_files(local))
    assert progress.getvalue().count(" ok     ") == 16


def _strip(files: dict) -> dict:
    for content in files.values():
        content.get("config", {}).pop("output_dir", None)
    return files
