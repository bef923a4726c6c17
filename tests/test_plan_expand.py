"""Run lists: stable unique ids, stages, and shards that partition the runs."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from plan_helpers import PLANS_DIR, write_plan
from tunebench.errors import TunebenchError
from tunebench.plan.expand import (
    expand_final,
    expand_grid_final,
    expand_sweep,
    parse_shard,
    shard_runs,
)
from tunebench.plan.spec import load_plan
from tunebench.results import run_id


@pytest.fixture(scope="module")
def phase2a():
    return load_plan(PLANS_DIR / "phase2a.yaml")


def test_run_ids_are_stable_unique_and_match_results(phase2a):
    runs = expand_sweep(phase2a) + expand_grid_final(phase2a)
    fresh = load_plan(PLANS_DIR / "phase2a.yaml")
    again = expand_sweep(fresh) + expand_grid_final(fresh)
    assert [r.run_id for r in runs] == [r.run_id for r in again]
    for stage_runs in (expand_sweep(phase2a), expand_grid_final(phase2a)):
        assert len({r.run_id for r in stage_runs}) == len(stage_runs)
    for r in runs:
        assert r.run_id == run_id(r.cfg)
        assert re.fullmatch(rf"{r.task}-{r.method}-s{r.seed}-[0-9a-f]{{8}}", r.run_id)


def test_runs_carry_their_grid_point_and_stage_folders(phase2a):
    sweep = expand_sweep(phase2a)
    assert len(sweep) == 4 * (3 + 3) * 1
    lora = [r for r in sweep if r.method == "lora" and r.task == "rte"]
    assert sorted(r.cfg.learning_rate for r in lora) == [1e-4, 2e-4, 5e-4]
    assert all(r.cfg.training.learning_rate == r.overrides["training.learning_rate"] for r in lora)
    assert {r.cfg.experiment for r in sweep} == {"phase2a-sweep"}
    assert all(r.run_dir.parts[-3:-1] == ("results", "phase2a-sweep") for r in sweep)


def test_final_stage_uses_the_selection(phase2a):
    pick = {t: {"lora": {"overrides": {"training.learning_rate": 5e-4}},
                "full": {"overrides": {"training.full_finetune_learning_rate": 1e-5}}} for t in phase2a.tasks}
    final = expand_final(phase2a, pick)
    assert len(final) == 4 * 2 * 5
    assert {r.cfg.learning_rate for r in final if r.method == "lora"} == {5e-4}
    assert {r.cfg.learning_rate for r in final if r.method == "full"} == {1e-5}
    assert {r.cfg.experiment for r in final} == {"phase2a"}
    # the same setting and seed trains the same model in both stages: same id, separate folders
    sweep_ids = {r.run_id for r in expand_sweep(phase2a)}
    assert {r.run_id for r in final if r.seed == 42} <= sweep_ids


def test_identical_grid_points_are_refused(tmp_path):
    path = write_plan(tmp_path, "name: d\ntasks: [rte]\nmethods: [lora]\n"
                                "grid: {training.deterministic: [true, 'yes']}\n")
    with pytest.raises(TunebenchError, match="give the same run"):
        expand_grid_final(load_plan(path))


@pytest.mark.parametrize("plan_name", ["phase2a", "rank_sweep", "demo"])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 100])
def test_shards_partition_the_runs(plan_name, n):
    plan = load_plan(PLANS_DIR / f"{plan_name}.yaml")
    runs = expand_sweep(plan) or expand_grid_final(plan)
    shards = [shard_runs(runs, k, n) for k in range(1, n + 1)]
    seen = Counter(r.run_id for shard in shards for r in shard)
    assert set(seen) == {r.run_id for r in runs} and set(seen.values()) == {1}  # each run exactly once
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1  # balanced
    for shard in shards:  # original order kept within a shard
        assert [r.run_id for r in shard] == [r.run_id for r in runs if r in shard]
    backwards = shard_runs(list(reversed(runs)), 1, n)  # the split depends on the ids, not the order
    assert [r.run_id for r in shard_runs(runs, 1, n)] == [r.run_id for r in reversed(backwards)]


def test_three_shards_share_each_task_evenly(phase2a):
    runs = expand_grid_final(phase2a)  # 4 tasks x 6 settings x 5 seeds
    for k in (1, 2, 3):
        per_task = Counter(r.task for r in shard_runs(runs, k, 3))
        assert set(per_task.values()) == {10}


@pytest.mark.parametrize("text,expected", [("1/3", (1, 3)), ("3/3", (3, 3)), ("1/1", (1, 1))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0", "-1/2", ""])
def test_parse_shard_rejects(text):
    with pytest.raises(TunebenchError, match="--shard"):
        parse_shard(text)
