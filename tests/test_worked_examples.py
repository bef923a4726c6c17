"""The committed worked example (docs/study-cpu/, made by `make study-cpu`) against the plan that made it and
the report's current schema: a change to either that the example does not follow fails here, and says to
regenerate it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from fake_results import write_fake_run
from tunebench.plan import load_plan
from tunebench.report.build import build_report
from tunebench.report.render import TABLES, write_report
from tunebench.report.verdict import VERDICT_WORDS

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "docs" / "study-cpu"
REGENERATE = "regenerate with `make study-cpu` and copy results/study-cpu/report to docs/study-cpu (README)"


@pytest.fixture(scope="module")
def plan():
    return load_plan(ROOT / "configs" / "plans" / "study_cpu.yaml")


@pytest.fixture(scope="module")
def committed() -> dict:
    return json.loads((EXAMPLE / "verdicts.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def fresh(tmp_path_factory, plan) -> tuple[dict, set[str]]:
    """verdicts.json and the files (relative paths) the current report code writes for the plan's tasks,
    methods and seeds (fake runs: no analysis; figures depend on the data, so only their folder is compared)."""
    root = tmp_path_factory.mktemp("results")
    rng = np.random.default_rng(0)
    for task in plan.tasks:
        for method in plan.methods:
            for seed in plan.seeds:
                score = float(rng.uniform(60, 80)) if task == "squad_v2" else float(rng.uniform(0.6, 0.8))
                write_fake_run(root, task, method, seed, test=score, validation=score)
    out = root / "report"
    written = write_report(build_report(root / "demo", out_dir=out, n_resamples=50), out)
    files = {p.relative_to(out).as_posix() for p in written.values() if p.parent.name != "plots"}
    return json.loads(written["verdicts.json"].read_text(encoding="utf-8")), files


def test_one_verdict_row_per_planned_task_in_the_reports_schema(plan, committed, fresh):
    fresh_rows, _ = fresh
    assert set(committed) == set(plan.tasks), REGENERATE
    for task, row in committed.items():
        assert set(row) == set(fresh_rows[task]), f"{task}: verdicts.json fields differ from the report's; {REGENERATE}"
        assert row["task"] == task and row["word"] in VERDICT_WORDS
        assert row["n_seeds"] == len(plan.seeds)
        assert {int(s) for s in row["seed_differences"]} == set(plan.seeds)
        assert row["difference"] == pytest.approx(np.mean(list(row["seed_differences"].values())), abs=1e-9)
        assert row["difference"] == pytest.approx(row["lora"] - row["full"], abs=1e-9)
        assert row["baseline"] is not None and row["sentence"]


def test_the_example_holds_the_report_not_the_checkpoints(fresh):
    _, files = fresh
    present = {p.relative_to(EXAMPLE).as_posix() for p in EXAMPLE.rglob("*") if p.is_file()}
    assert files <= present, f"missing {sorted(files - present)}; {REGENERATE}"
    assert {f"tables/{t}.csv" for t in TABLES if t != "failed"} <= present
    assert "tables/squad_v2_breakdown.csv" in present and "plots/verdict.png" in present
    assert any(p.startswith("tables/analysis_") for p in present)          # `tunebench analyze` ran
    heavy = [p for p in present if p.endswith((".safetensors", ".bin", ".pt")) or "checkpoint" in p]
    assert not heavy and sum(p.stat().st_size for p in EXAMPLE.rglob("*") if p.is_file()) < 5_000_000


def test_the_readme_shows_the_committed_verdicts(committed):
    """The README's table of the worked example states the committed figures: the word and both means."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/study-cpu/" in readme
    for task, row in committed.items():
        line = next((ln for ln in readme.splitlines() if ln.startswith("| ") and f"`{task}`" in ln), None)
        assert line is not None, f"README: no row for `{task}` in the worked example's verdict table"
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert row["word"] in cells, (task, cells)
        numbers = {float(x) for c in cells for x in re.findall(r"-?\d+\.\d+", c)}
        assert round(row["lora"], 1) in numbers and round(row["full"], 1) in numbers, (task, cells)
