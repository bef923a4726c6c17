"""`tunebench plan seeds`: the seeds each task's equivalence test needs, from the committed study's runs.csv, from a
plan's (fake) results folder with its cost model, bad inputs as one line and exit 2, and --write-plan."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fake_results import write_fake_run
from plan_helpers import write_plan
from tunebench.cli import main
from tunebench.commands.plan_seeds import differences, pilot_from_csv, plan_hours_per_seed
from tunebench.plan.cost import load_measured
from tunebench.plan.spec import load_plan
from tunebench.report.power import describe, format_hours, plan_seeds, sd_upper_bound, seeds_for_power

ROOT = Path(__file__).resolve().parents[1]
STUDY_RUNS = ROOT / "docs" / "study-cpu" / "tables" / "runs.csv"

# the default family: alpha / 8 (the 4 tasks runs.csv lists, 2 hypotheses each in the report's Holm family: the
# difference and the equivalence test)
SST2_LINE = ("  to show ±1 point on sst2 at the observed spread (sd 2.58, bound 5.47) and a true difference of 0: "
             "431 seeds at 80% power (alpha 0.05/8), about 13.3 h measured on AMD EPYC (AVX2)")
FAMILY_OF_8 = ("(alpha 0.05/8 = 0.00625 per test: Bonferroni over the report's Holm family of 8 hypotheses, the least "
               "power it will have)")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["plan", "seeds", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(capsys, *argv: str) -> str:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------- the committed study's runs.csv


def test_committed_study_runs_csv(capsys):
    """docs/study-cpu: SST-2's LoRA - full over seeds 42-44 is -0.23, -4.82, -0.46 (sd 2.58, 80% bound 5.47):
    at alpha 0.05/8 (4 tasks listed, 2 hypotheses each: the default family) 431 seeds for 80% power, 517 for 90%,
    at 0.0308 h per seed pair (LoRA + full wall time) measured there."""
    code, out, _ = run_cli(capsys, "--runs", str(STUDY_RUNS))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].endswith("(headline setting per task x method: the report's, from settings.csv beside it)")
    assert f"within ±1 point at alpha 0.05 per one-sided test {FAMILY_OF_8}, at a true difference of 0," in lines[1]
    assert "does not adjust" not in out
    assert lines[3:7] == [
        "  sst2          3     -1.83   2.58      5.47        431        517        0.0308 h  13.3 h",
        "  mrpc          3     -0.43   0.36      0.77         12         14        0.0688 h  0.825 h",
        "  rte           3     +1.44   2.01      4.26        262        314        0.0481 h  12.6 h",
        "  squad_v2      3     +5.05   4.87     10.31      1,521      1,827         0.133 h  202 h"]
    assert SST2_LINE in lines
    assert ("  to show ±1 point on squad_v2 at the observed spread (sd 4.87, bound 10.31) and a true difference of 0: "
            "1,521 seeds at 80% power (alpha 0.05/8), about 202 h measured on AMD EPYC (AVX2)") in lines
    for task in ("mrpc", "rte"):
        assert any(line.startswith(f"  to show ±1 point on {task} ") and "at 80% power (alpha 0.05/8)" in line
                   for line in lines)


def test_committed_study_runs_csv_as_a_family_of_one(capsys):
    """--family-size 1: each task at the plain alpha 0.05, SST-2's 258 / 326 seeds (7.94 h at 80% power)."""
    code, out, _ = run_cli(capsys, "--runs", str(STUDY_RUNS), "--family-size", "1")
    assert code == 0
    lines = out.splitlines()
    assert "within ±1 point at alpha 0.05 per one-sided test (plain alpha), at a true difference" in lines[1]
    assert "  sst2          3     -1.83   2.58      5.47        258        326        0.0308 h  7.94 h" in lines
    assert ("  to show ±1 point on sst2 at the observed spread (sd 2.58, bound 5.47) and a true difference of 0: "
            "258 seeds at 80% power, about 7.94 h measured on AMD EPYC (AVX2)") in lines
    assert "alpha 0.05/" not in out


def test_committed_study_runs_csv_with_the_sd_itself(capsys):
    code, out, _ = run_cli(capsys, "--runs", str(STUDY_RUNS), "--no-bound", "--power", "0.8")
    assert code == 0
    assert ("  to show ±1 point on sst2 at the observed spread (sd 2.58) and a true difference of 0: 99 seeds at 80% "
            "power (alpha 0.05/8), about 3.05 h measured on AMD EPYC (AVX2)") in out.splitlines()
    assert "90% power" not in out
    code, out, _ = run_cli(capsys, "--runs", str(STUDY_RUNS), "--no-bound", "--power", "0.8", "--family-size", "1")
    assert code == 0
    assert ("  to show ±1 point on sst2 at the observed spread (sd 2.58) and a true difference of 0: 59 seeds at 80% "
            "power, about 1.82 h measured on AMD EPYC (AVX2)") in out.splitlines()


def test_default_family_is_the_tasks_listed(tmp_path, capsys):
    """No --family-size is `--family-size tasks`: alpha divided by 2 x the number of tasks listed (the report's Holm
    family holds each task's difference and equivalence test) -- 8 for the 4 tasks of the study's runs.csv (the same
    as --family-size 8, not 4), 4 for the 2 of the pilot plan (sst2 and rte: rte counts though its 2 seeds give no
    number), 8 with the pilot plan's cost model over the study's runs (the tasks of both)."""
    pilot = pilot_from_csv(STUDY_RUNS)
    assert pilot.tasks == ["sst2", "mrpc", "rte", "squad_v2"]
    k = 2 * len(pilot.tasks)
    assert k == 8
    default = run_cli(capsys, "--runs", str(STUDY_RUNS))
    assert default[0] == 0
    assert default == run_cli(capsys, "--runs", str(STUDY_RUNS), "--family-size", "tasks")
    assert default == run_cli(capsys, "--runs", str(STUDY_RUNS), "--family-size", str(k))
    for other in ("1", str(len(pilot.tasks))):                  # not the plain alpha, not alpha / (number of tasks)
        code, out, _ = run_cli(capsys, "--runs", str(STUDY_RUNS), "--family-size", other)
        assert code == 0 and out != default[1]
    lines = default[1].splitlines()
    assert FAMILY_OF_8 in lines[1]
    for row, task in zip(lines[3:7], pilot.tasks, strict=True):
        at_k = plan_seeds(task, differences(pilot.headline, task)[1], family_size=k)
        at_1 = plan_seeds(task, differences(pilot.headline, task)[1], family_size=1)
        assert at_k.alpha_per_test == 0.00625
        assert at_k.seeds == tuple(seeds_for_power(at_k.sd_bound, 1.0, 0.05 / k, p) for p in (0.8, 0.9))
        assert all(nk > n1 for nk, n1 in zip(at_k.seeds, at_1.seeds, strict=True))   # stricter alpha, more seeds
        assert row.split()[5:7] == [f"{n:,}" for n in at_k.seeds]
    assert default[1].count("at 80% power (alpha 0.05/8)") == 4

    plan_path = pilot_plan(tmp_path)
    code, out, _ = run_cli(capsys, str(plan_path))
    assert code == 0
    assert ("(alpha 0.05/4 = 0.0125 per test: Bonferroni over the report's Holm family of 4 hypotheses, the least "
            "power it will have)") in out.splitlines()[1]
    assert (code, out) == run_cli(capsys, str(plan_path), "--family-size", "tasks")[:2]
    assert (code, out) == run_cli(capsys, str(plan_path), "--family-size", "4")[:2]
    code, out, _ = run_cli(capsys, str(plan_path), "--runs", str(STUDY_RUNS), "--power", "0.8")
    assert code == 0
    assert FAMILY_OF_8 in out.splitlines()[1]


def test_runs_csv_without_settings_csv_uses_the_reports_rule(tmp_path, capsys):
    runs = tmp_path / "runs.csv"
    shutil.copy(STUDY_RUNS, runs)
    code, out, _ = run_cli(capsys, "--runs", str(runs))
    assert code == 0
    assert "no settings.csv beside it: the best mean validation score" in out.splitlines()[0]
    assert SST2_LINE in out.splitlines()                # one setting per task x method there: the same runs


def test_observed_difference_beyond_the_margin_and_a_family(capsys):
    code, out, _ = run_cli(capsys, "--runs", str(STUDY_RUNS), "--true-diff", "observed")
    assert code == 0
    lines = out.splitlines()
    assert f"at alpha 0.05 per one-sided test {FAMILY_OF_8}, at a true difference of each task's observed mean" \
        in lines[1]
    assert "  sst2: at a true difference of -1.83 equivalence within ±1 point cannot be shown" in lines
    assert ("  to show ±1 point on mrpc at the observed spread (sd 0.36, bound 0.77) and a true difference of -0.43: "
            "24 seeds at 80% power (alpha 0.05/8), about 1.65 h measured on AMD EPYC (AVX2)") in lines
    assert "  mrpc          3     -0.43   0.36      0.77         24         30        0.0688 h  1.65 h" in lines
    code, out, _ = run_cli(capsys, "--runs", str(STUDY_RUNS), "--true-diff", "observed", "--family-size", "3")
    assert code == 0
    assert ("(alpha 0.05/3 = 0.01667 per test: Bonferroni over the report's Holm family of 3 hypotheses, the least "
            "power it will have)") in out.splitlines()[1]


# ---------------------------------------------------------------- a plan's results folder


def pilot_plan(tmp_path: Path) -> Path:
    """A tiny builtin plan whose results folder holds fake runs: SST-2 with 3 seed pairs (LoRA - full = -1, 0.5,
    2 points: sd 1.5) and a second LoRA setting with a worse validation score (not the headline); RTE with 2."""
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "extra.yaml").write_text("training:\n  num_train_epochs: 1\n", encoding="utf-8")
    out = tmp_path / "results"
    plan = write_plan(tmp_path, f"""
        name: pilot
        config: [cfg/extra.yaml]
        overrides: {{model.name: tiny, data.source: builtin, tracking.backend: none, output_dir: {out}}}
        tasks: [sst2, rte]
        methods: [lora, full]
        seeds: [42, 43, 44]
        """)
    for seed, lora, full in ((42, 0.80, 0.81), (43, 0.82, 0.815), (44, 0.85, 0.83)):
        write_fake_run(out, "sst2", "lora", seed, test=lora, validation=0.90, experiment="pilot")
        write_fake_run(out, "sst2", "full", seed, test=full, validation=0.90, experiment="pilot")
        write_fake_run(out, "sst2", "lora", seed, test=0.5 + seed / 100, validation=0.60, experiment="pilot",
                       learning_rate=1e-3)
    for seed in (42, 43):
        write_fake_run(out, "rte", "lora", seed, test=0.6, validation=0.6, experiment="pilot")
    for seed in (42, 43, 44):
        write_fake_run(out, "rte", "full", seed, test=0.61, validation=0.6, experiment="pilot")
    return plan


def test_plan_results_folder_with_the_plans_cost(tmp_path, capsys):
    plan_path = pilot_plan(tmp_path)
    code, out, _ = run_cli(capsys, str(plan_path))
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith(f"results: {tmp_path / 'results' / 'pilot'} (headline setting per task x method")
    assert ("(alpha 0.05/4 = 0.0125 per test: Bonferroni over the report's Holm family of 4 hypotheses, the least "
            "power it will have)") in lines[1]
    expected = plan_seeds("sst2", [-1.0, 0.5, 2.0], family_size=4)      # the plan lists 2 tasks: sst2 and rte
    assert expected.sd == pytest.approx(1.5) and expected.sd_bound == pytest.approx(sd_upper_bound(1.5, 3))
    assert expected.seeds == (seeds_for_power(expected.sd_bound, 1, 0.05 / 4, 0.8),
                              seeds_for_power(expected.sd_bound, 1, 0.05 / 4, 0.9)) == (128, 155)
    hours = plan_hours_per_seed(load_plan(plan_path))
    assert hours["sst2"] is not None and hours["sst2"] > 0
    assert f"  {describe(expected, hours['sst2'], 'H100-h')}" in lines
    assert (f"  sst2          3     +0.50   1.50      3.18 {expected.seeds[0]:>10} {expected.seeds[1]:>10}  "
            f"{format_hours(hours['sst2']) + ' H100-h':>14}  {format_hours(expected.seeds[0] * hours['sst2'])} H100-h"
            ) in lines
    assert ("  rte: a pilot of 2 seeds is too small to estimate the spread: run at least 3 seeds per method"
            in lines)
    assert "cost: the plan's cost model, H100-h at an assumed 40%" in lines[1]


def test_plan_write_plan(tmp_path, capsys):
    plan_path = pilot_plan(tmp_path)
    out_file = tmp_path / "more" / "deeper" / "pilot_more.yaml"
    code, out, _ = run_cli(capsys, str(plan_path), "--write-plan", str(out_file))
    assert code == 0, out
    need = plan_seeds("sst2", [-1.0, 0.5, 2.0], family_size=4).most_seeds   # the 90% power level's, alpha / 4
    assert need == 155
    written = load_plan(out_file)                                   # config: resolved from the copy's folder
    assert written.name == "pilot" and written.seeds == tuple(range(42, 42 + need))
    assert written.base.training.num_train_epochs == 1 and written.output_dir == load_plan(plan_path).output_dir
    assert f"wrote {out_file}: seeds 42..{41 + need} ({need} seeds: sst2 needs {need})" in out
    assert not [p for p in out_file.parent.iterdir() if p.name != out_file.name]   # no temp file left
    # again over the copy: fine (it is not the plan itself)
    assert run_cli(capsys, str(plan_path), "--write-plan", str(out_file), "--power", "0.8")[0] == 0
    assert load_plan(out_file).seeds == tuple(range(42, 42 + 128))     # 80% power at alpha / 4
    # a family of one: fewer seeds (111 for 90% power at the plain alpha)
    assert run_cli(capsys, str(plan_path), "--write-plan", str(out_file), "--family-size", "1")[0] == 0
    assert load_plan(out_file).seeds == tuple(range(42, 42 + 111))


def test_write_plan_extends_each_tasks_own_seeds_too(tmp_path, capsys):
    plan_path = pilot_plan(tmp_path)
    plan_path.write_text(plan_path.read_text().replace("seeds: [42, 43, 44]\n",
                                                       "seeds: [42, 43, 44]\ntask_seeds: {rte: [7, 8]}\n"))
    out_file = tmp_path / "pilot_more.yaml"
    code, out, _ = run_cli(capsys, str(plan_path), "--write-plan", str(out_file), "--power", "0.8")
    assert code == 0, out
    written = load_plan(out_file)
    assert written.seeds == tuple(range(42, 42 + 128))
    assert written.task_seeds == {"rte": (7, 8, *range(9, 9 + 126))}      # its own seeds, then the next ones


def test_write_plan_refuses_the_plan_itself(tmp_path, capsys):
    plan_path = pilot_plan(tmp_path)
    before = plan_path.read_text()
    message = one_line_error(capsys, str(plan_path), "--write-plan", str(plan_path))
    assert "that is the plan file itself" in message and str(plan_path) in message
    assert plan_path.read_text() == before


def test_write_plan_with_no_number_to_plan_for(tmp_path, capsys):
    plan_path = pilot_plan(tmp_path)
    message = one_line_error(capsys, str(plan_path), "--true-diff", "5", "--write-plan", str(tmp_path / "x.yaml"))
    assert "no task has a number of seeds to plan for" in message
    assert not (tmp_path / "x.yaml").exists()


# ---------------------------------------------------------------- bad inputs


def test_bad_inputs_are_one_line(tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    assert one_line_error(capsys, "--runs", str(missing)) == f"tunebench: error: --runs {missing}: no such file"
    partial = tmp_path / "partial.csv"
    partial.write_text("task,method,seed,status\nsst2,lora,42,ok\n", encoding="utf-8")
    message = one_line_error(capsys, "--runs", str(partial))
    assert message.startswith(f"tunebench: error: --runs {partial}: no columns setting_id, run_dir")
    assert "test_primary" in message
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    assert "empty file" in one_line_error(capsys, "--runs", str(empty))
    for margin in ("0", "-1"):
        assert f"--margin {margin}: expected a positive number" in one_line_error(
            capsys, "--runs", str(STUDY_RUNS), "--margin", margin)
    assert "--alpha 0.5" in one_line_error(capsys, "--runs", str(STUDY_RUNS), "--alpha", "0.5")
    assert "--power 1" in one_line_error(capsys, "--runs", str(STUDY_RUNS), "--power", "1")
    assert "--true-diff mean" in one_line_error(capsys, "--runs", str(STUDY_RUNS), "--true-diff", "mean")
    assert "--family-size 0" in one_line_error(capsys, "--runs", str(STUDY_RUNS), "--family-size", "0")
    assert "give PLAN" in one_line_error(capsys)
    assert "--write-plan x.yaml: needs PLAN" in one_line_error(capsys, "--runs", str(STUDY_RUNS), "--write-plan",
                                                               "x.yaml")
    assert "give PLAN" in one_line_error(capsys, "--runs", str(STUDY_RUNS), "training.seed=1")


def test_plan_without_results_yet(tmp_path, capsys):
    plan = write_plan(tmp_path, f"""
        name: fresh
        overrides: {{model.name: tiny, data.source: builtin, tracking.backend: none, output_dir: {tmp_path / 'r'}}}
        tasks: [sst2]
        """)
    message = one_line_error(capsys, str(plan))
    assert f"no results folder {tmp_path / 'r' / 'fresh'} yet" in message
    missing = tmp_path / "missing.yaml"
    assert str(missing) in one_line_error(capsys, str(missing))


def test_plan_cost_at_a_measured_mfu(tmp_path, capsys):
    plan_path = pilot_plan(tmp_path)
    device = "NVIDIA H100 80GB HBM3"
    measured = tmp_path / "gpu_check.json"
    measured.write_text(json.dumps({"summary": {"lora": {"mfu": 0.25, "device_name": device},
                                                "full": {"mfu": 0.5, "device_name": device}}}))
    code, out, _ = run_cli(capsys, str(plan_path), "--measured", str(measured), "--power", "0.8")
    assert code == 0
    hours = plan_hours_per_seed(load_plan(plan_path), load_measured(measured))["sst2"]
    assert hours is not None and hours != plan_hours_per_seed(load_plan(plan_path))["sst2"]
    expected = plan_seeds("sst2", [-1.0, 0.5, 2.0], family_size=4, powers=(0.8,))
    assert expected.seeds == (128,)
    assert f"  {describe(expected, hours, f'{device}-h')}" in out.splitlines()
    assert f"128 seeds at 80% power (alpha 0.05/4), about {format_hours(128 * hours)} {device}-h" in out
    assert "--measured" in one_line_error(capsys, "--runs", str(STUDY_RUNS), "--measured", str(measured))


def test_plan_with_another_runs_table_costs_it_with_the_plan(tmp_path, capsys):
    """PLAN and --runs: the runs' numbers, the plan's cost model (tasks of both listed)."""
    plan_path = pilot_plan(tmp_path)
    code, out, _ = run_cli(capsys, str(plan_path), "--runs", str(STUDY_RUNS), "--power", "0.8")
    assert code == 0
    lines = out.splitlines()
    hours = plan_hours_per_seed(load_plan(plan_path))
    assert ("  to show ±1 point on sst2 at the observed spread (sd 2.58, bound 5.47) and a true difference of 0: "
            f"431 seeds at 80% power (alpha 0.05/8), about {format_hours(431 * hours['sst2'])} H100-h") in lines
    assert ("  to show ±1 point on mrpc at the observed spread (sd 0.36, bound 0.77) and a true difference of 0: "
            "12 seeds at 80% power (alpha 0.05/8)") in lines          # not in the plan: no cost
