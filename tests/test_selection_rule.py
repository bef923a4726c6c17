"""One rank rule (tunebench.plan.select.setting_rank) for the plan's sweep selection and the report's headline
selection without selection.json: on the same run folders both pick the same setting, a failed seed included.

The rule: a setting counts only when every one of its seeds finished ok with a validation value; a setting with a
seed that did not ranks after every setting whose seeds all did, however well its other seeds scored. The plan
then never chooses it; the report falls back to it only when every setting has such a seed, and says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fake_results import write_fake_run
from tunebench.plan.select import complete, select_sweep, setting_rank
from tunebench.report.build import select_headline
from tunebench.report.collect import collect_runs
from tunebench.report.tables import add_primary_columns


def write_setting(root: Path, lr: float, validation: dict[int, float | None]) -> None:
    """mrpc LoRA runs at one learning rate: seed -> validation F1, None for a run that failed."""
    for seed, value in validation.items():
        if value is None:
            write_fake_run(root, "mrpc", "lora", seed, learning_rate=lr, status="failed", reason="nan loss at step 9")
        else:
            write_fake_run(root, "mrpc", "lora", seed, learning_rate=lr, validation=value, test=0.8)


def plan_pick(root: Path) -> dict:
    """The plan's selection over the same folders: each metrics.json as a sweep result of its grid point."""
    rows = [{**m, "overrides": {"training.learning_rate": m["learning_rate"]}}
            for m in (json.loads(p.read_text()) for p in sorted(root.rglob("metrics.json")))]
    return select_sweep(rows)["mrpc"]["lora"]


def report_pick(root: Path) -> tuple[float, list[str], dict[float, float]]:
    """The report's headline learning rate, its notes and each setting's mean validation (points)."""
    runs = add_primary_columns(collect_runs(root))
    _, settings, _, notes = select_headline(runs, {}, {})
    lora = settings[(settings["task"] == "mrpc") & (settings["method"] == "lora")]
    [lr] = lora.loc[lora["selected"], "learning_rate"]
    return lr, notes, dict(zip(lora["learning_rate"], lora["validation_mean"], strict=True))


def test_plan_and_report_pick_the_same_setting_when_one_has_a_failed_seed(tmp_path):
    write_setting(tmp_path, 1e-4, {1: 0.70, 2: 0.70, 3: 0.70})
    write_setting(tmp_path, 2e-4, {1: 0.75, 2: 0.75, 3: 0.75})
    write_setting(tmp_path, 3e-4, {1: 0.80, 2: 0.80, 3: None})     # the best ok seeds, but seed 3 failed
    plan = plan_pick(tmp_path)
    lr, notes, means = report_pick(tmp_path)
    assert plan["learning_rate"] == lr == 2e-4
    assert [c["learning_rate"] for c in plan["candidates"]] == [2e-4, 1e-4, 3e-4]
    assert means[3e-4] == pytest.approx(80.0)          # the report still shows its ok seeds' mean
    [note] = [n for n in notes if n.startswith("mrpc/lora:")]
    assert "learning_rate=0.0003" in note and "seed 3 did not count" in note
    assert "the headline is learning_rate=0.0002" in note


def test_when_every_setting_has_a_failed_seed_the_plan_chooses_none_and_the_report_says_so(tmp_path):
    write_setting(tmp_path, 1e-4, {1: 0.70, 2: None})
    write_setting(tmp_path, 3e-4, {1: 0.80, 2: None})
    assert plan_pick(tmp_path)["overrides"] is None          # unresolved: the plan stops before its final stage
    lr, notes, _ = report_pick(tmp_path)
    assert lr == 3e-4                                   # the same order: the best mean of the seeds that count
    [note] = [n for n in notes if n.startswith("mrpc/lora:")]
    assert "every setting has a seed that did not finish ok" in note and "would choose none" in note


def test_no_note_without_a_failed_seed_or_without_a_choice(tmp_path):
    write_setting(tmp_path, 1e-4, {1: 0.70, 2: 0.72})
    write_setting(tmp_path, 3e-4, {1: 0.80, 2: 0.82})
    lr, notes, _ = report_pick(tmp_path)
    assert lr == plan_pick(tmp_path)["learning_rate"] == 3e-4 and notes == []
    one = tmp_path / "one"
    write_setting(one, 1e-4, {1: 0.70, 2: None})        # one setting: nothing was chosen over anything
    assert report_pick(one)[:2] == (1e-4, [])


def test_the_rule_itself():
    assert complete([0.7, 0.8]) and not complete([0.7, None]) and not complete([])
    ranked = sorted([([0.9, None], 3e-4, "c"), ([0.7, 0.7], 1e-4, "a"), ([0.75], 2e-4, "b")],
                    key=lambda s: setting_rank(*s))
    assert [t for *_, t in ranked] == ["b", "a", "c"]   # complete first (best mean), the failed seed's last
    assert setting_rank([0.7, 0.7], 1e-4, "a") < setting_rank([0.7], 1e-4, "a")   # a tie: more seeds first
