"""The committed worked examples (docs/study-cpu/ made by `make study-cpu`, docs/study-smollm2/ made by
`make study-smollm2`) against the plans that made them and the report's current schema: a change to either that
an example does not follow fails here, and says to regenerate it."""

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
EXAMPLES = {"study-cpu": "study_cpu", "study-smollm2": "study_smollm2"}   # docs/<folder>: configs/plans/<plan>.yaml


@pytest.fixture(scope="module", params=sorted(EXAMPLES))
def example(request) -> str:
    return request.param


def folder(example: str) -> Path:
    return ROOT / "docs" / example


def regenerate(example: str) -> str:
    return (f"regenerate with `make {example}` and copy results/{example}/report to docs/{example} "
            f"(docs/{example}/README.md)")


@pytest.fixture(scope="module")
def plan(example):
    return load_plan(ROOT / "configs" / "plans" / f"{EXAMPLES[example]}.yaml")


@pytest.fixture(scope="module")
def committed(example) -> dict:
    return json.loads((folder(example) / "verdicts.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def fresh(tmp_path_factory, plan) -> tuple[dict, set[str]]:
    """verdicts.json and the files (relative paths) the current report code writes for the plan's tasks,
    methods and seeds (fake runs: no analysis; figures depend on the data, so only their folder is compared)."""
    root = tmp_path_factory.mktemp("results")
    rng = np.random.default_rng(0)
    for task in plan.tasks:
        for method in plan.methods:
            for seed in plan.seeds_of(task):
                score = float(rng.uniform(60, 80)) if task == "squad_v2" else float(rng.uniform(0.6, 0.8))
                write_fake_run(root, task, method, seed, test=score, validation=score)
    out = root / "report"
    written = write_report(build_report(root / "demo", out_dir=out, n_resamples=50), out)
    files = {p.relative_to(out).as_posix() for p in written.values() if p.parent.name != "plots"}
    return json.loads(written["verdicts.json"].read_text(encoding="utf-8")), files


def test_one_verdict_row_per_planned_task_in_the_reports_schema(example, plan, committed, fresh):
    fresh_rows, _ = fresh
    assert set(committed) == set(plan.tasks), regenerate(example)
    for task, row in committed.items():
        assert set(row) == set(fresh_rows[task]), \
            f"{task}: verdicts.json fields differ from the report's; {regenerate(example)}"
        assert row["task"] == task and row["word"] in VERDICT_WORDS
        assert row["n_seeds"] == len(plan.seeds_of(task))
        assert {int(s) for s in row["seed_differences"]} == set(plan.seeds_of(task))
        assert row["difference"] == pytest.approx(np.mean(list(row["seed_differences"].values())), abs=1e-9)
        assert row["difference"] == pytest.approx(row["lora"] - row["full"], abs=1e-9)
        assert row["baseline"] is not None and row["sentence"]


def test_the_example_holds_the_report_not_the_checkpoints(example, plan, fresh):
    _, files = fresh
    root = folder(example)
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert files <= present, f"missing {sorted(files - present)}; {regenerate(example)}"
    assert {f"tables/{t}.csv" for t in TABLES if t != "failed"} <= present
    assert "plots/verdict.png" in present and "selection.json" in present and "README.md" in present
    assert ("tables/squad_v2_breakdown.csv" in present) == ("squad_v2" in plan.tasks)
    assert any(p.startswith("tables/analysis_") for p in present)          # `tunebench analyze` ran
    heavy = [p for p in present if p.endswith((".safetensors", ".bin", ".pt")) or "checkpoint" in p]
    assert not heavy and sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 5_000_000


def test_the_readme_shows_the_committed_verdicts(example, committed):
    """The README's table of each worked example (the first table after the first link to its folder) states
    the committed figures: the word and both means."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = next((i for i, ln in enumerate(lines) if f"docs/{example}/" in ln), None)
    assert start is not None, f"README: no link to docs/{example}/"
    for task, row in committed.items():
        line = next((ln for ln in lines[start:] if ln.startswith("| ") and f"`{task}`" in ln), None)
        assert line is not None, f"README: no row for `{task}` in the verdict table of docs/{example}/"
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert row["word"] in cells, (task, cells)
        numbers = {float(x) for c in cells for x in re.findall(r"-?\d+\.\d+", c)}
        assert round(row["lora"], 1) in numbers and round(row["full"], 1) in numbers, (task, cells)


def test_the_real_model_learns_the_tasks_and_says_what_it_is():
    """docs/study-smollm2: on every task of its plan both arms beat the best constant predictor significantly and
    by more than 10 points, each verdict carries its interval (and the seeds it would take when inconclusive),
    SST-2 has 5 seeds or more and every other task 3 or more, and every place that shows its figures says the
    model is the Instruct model's Q4_1 quantization (a lower bound for SmolLM2-135M)."""
    plan = load_plan(ROOT / "configs" / "plans" / "study_smollm2.yaml")
    rows = json.loads((folder("study-smollm2") / "verdicts.json").read_text(encoding="utf-8"))
    assert list(rows) == list(plan.tasks) and "sst2" in rows
    for task, row in rows.items():
        for arm in ("lora", "full"):
            assert row["learned"][arm]["state"] == "shown" and row["learned"][arm]["p_adjusted"] < 0.05, task
            assert row[arm] > row["baseline"]["value"] + 10, task
        assert row["ci_low"] <= row["difference"] <= row["ci_high"], task
        assert row["n_seeds"] >= (5 if task == "sst2" else 3), task
        assert (row["word"] != "inconclusive") or row["seeds_needed"]["seeds"] > row["n_seeds"], task
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    at = readme.index("docs/study-smollm2/")
    section = readme[max(0, at - 2000):at + 1500]
    for text in (section, (folder("study-smollm2") / "README.md").read_text(encoding="utf-8"),
                 (ROOT / "configs" / "plans" / "study_smollm2.yaml").read_text(encoding="utf-8")):
        assert "Q4_1" in text and "lower bound" in text
