"""The report compares like with like (tunebench.report.groups / split): runs that differ in more than the method,
its own settings and the seed (model, precision, steps, ...) are never compared with each other."""

from __future__ import annotations

import json
import math
import shutil

import pandas as pd
import pytest

from fake_results import fake_config, write_fake_run, write_selection
from tunebench.cli import main
from tunebench.report.build import analyze, load_inputs
from tunebench.report.groups import (
    MixedResultsError,
    comparison_context,
    describe_context,
    group_inputs,
    restrict_inputs,
    slug,
    split_inputs,
)
from tunebench.report.split import build_reports, write_reports

SEEDS = (1, 2, 3)
FAST = {"with_figures": False, "n_resamples": 200}
SINGLE_REPORT_FILES = {"report.html", "summary.md", "verdicts.json", "tables"}


def config(task: str, method: str, seed: int, lr: float | None = None, r: int = 16, experiment: str = "demo",
           **keys) -> dict:
    """fake_config with the keys that make a context (model, precision, length, batch); `keys` as dotted
    overrides, e.g. **{"training.max_steps": 100}."""
    lr = lr if lr is not None else (2e-4 if method == "lora" else 5e-5)
    cfg = fake_config(task, method, seed, lr, r if method == "lora" else None, experiment)
    cfg["model"] = {"name": "tiny", "max_length": 128}
    cfg["training"] |= {"precision": "32-true", "per_device_train_batch_size": 16, "gradient_accumulation_steps": 1,
                        "num_train_epochs": 1, "max_steps": -1}
    for key, value in keys.items():
        section, name = key.split(".")
        cfg.setdefault(section, {})[name] = value
    return cfg


def run(root, task, method, seed, test, experiment="demo", lr=None, r=16, extra=None, validation=0.7, **keys):
    return write_fake_run(root, task, method, seed, test=test, validation=validation, experiment=experiment,
                          learning_rate=lr, lora_r=r, extra=extra,
                          config=config(task, method, seed, lr, r, experiment, **keys))


def score(method: str, seed: int, offset: float) -> float:
    """A test accuracy that tells the group (offset) and the arm apart, with some spread over seeds."""
    return offset + (0.02 if method == "lora" else 0.0) + [0.0, 0.013, -0.007][seed - 1]


def write_two(root, key: str, values: tuple, tasks=("sst2", "rte"), offsets=(0.60, 0.85)) -> None:
    """Both arms x 3 seeds per task under each value of `key`; the value's runs score around its offset."""
    for value, offset in zip(values, offsets, strict=True):
        for task in tasks:
            for method in ("lora", "full"):
                for seed in SEEDS:
                    run(root, task, method, seed, score(method, seed, offset), **{key: value})


def expected_mean(method: str, offset: float) -> float:
    return 100 * sum(score(method, s, offset) for s in SEEDS) / len(SEEDS)


# ---------------------------------------------------------------- mixed folders: one report per group


def test_two_models_get_one_report_each_and_an_index(tmp_path, capsys):
    write_two(tmp_path, "model.name", ("org/model-a", "org/model-b"))
    assert main(["report", str(tmp_path), "--bootstrap-resamples", "200"]) == 0
    printed = capsys.readouterr().out
    out = tmp_path / "report"
    assert "the runs differ in more than the method, its own settings and the seed: model.name (within sst2, " \
           "rte); 2 comparisons" in printed
    assert "[model.name=org/model-a] 12 runs, 12 ok: " in printed and "[model.name=org/model-b] 12 runs" in printed
    assert f"report: {out / 'report.html'} (the index of the 2 comparisons)" in printed
    index = json.loads((out / "groups.json").read_text())
    assert [g["name"] for g in index["groups"]] == ["model.name=org/model-a", "model.name=org/model-b"]
    assert [g["slug"] for g in index["groups"]] == ["model.name-org-model-a", "model.name-org-model-b"]
    assert index["differing_keys"] == {"model.name": ["sst2", "rte"]} and index["not_placed"] == []
    assert not (out / "verdicts.json").exists() and not (out / "tables").exists()   # no report across the groups
    for g, offset in zip(index["groups"], (0.60, 0.85), strict=True):
        folder = out / g["slug"]
        assert SINGLE_REPORT_FILES <= {p.name for p in folder.iterdir()}
        verdicts = json.loads((folder / "verdicts.json").read_text())
        assert set(verdicts) == {"sst2", "rte"}
        for row in verdicts.values():     # each group's numbers are its own runs' and nothing else
            assert row["lora"] == pytest.approx(expected_mean("lora", offset))
            assert row["full"] == pytest.approx(expected_mean("full", offset))
            assert row["difference"] == pytest.approx(2.0)
        runs = pd.read_csv(folder / "tables" / "runs.csv")
        assert set(runs["run_dir"]) == set(g["run_dirs"]) and len(runs) == 12
        summary = (folder / "summary.md").read_text()
        model = g["differing"]["model.name"]
        assert f"the runs with model.name={model}" in summary
        assert f"Compared under the same conditions: model {model}, precision 32-true, max_length 128, batch 16, " \
               "1 epoch." in summary
        assert f"model {model}, precision 32-true" in (folder / "report.html").read_text()
    summary = (out / "summary.md").read_text()
    assert "They form 2 comparisons" in summary and "[page](model.name-org-model-a/report.html)" in summary
    for g in index["groups"]:
        assert f"| {g['name']} | " in summary
        assert "; ".join(f"{task}: {word}" for task, word in g["verdicts"].items()) in summary
    assert 'href="model.name-org-model-b/report.html"' in (out / "report.html").read_text()


def test_lora_in_one_precision_is_never_compared_with_full_in_another(tmp_path):
    for seed in SEEDS:   # the mix the report once compared: 32-true LoRA against bf16-mixed full fine-tuning
        run(tmp_path, "sst2", "lora", seed, 0.80, **{"training.precision": "32-true"})
        run(tmp_path, "sst2", "full", seed, 0.86, **{"training.precision": "bf16-mixed"})
    reports = build_reports(tmp_path, **FAST)
    assert reports.mixed and [i.group.name for i in reports.items] == [
        "training.precision=32-true", "training.precision=bf16-mixed"]
    for item in reports.items:
        (row,) = item.report.verdict_rows
        assert row["word"] == "no comparison" and math.isnan(row["difference"])
        assert len(set(item.report.runs["method"])) == 1
    assert reports.items[0].report.context.startswith("model tiny, precision 32-true")


def test_the_precision_a_run_resolved_counts_not_auto(tmp_path):
    """training.precision auto is bf16-mixed on a GPU and 32-true on a CPU: metrics.json's precision.name decides."""
    for seed in SEEDS:
        for method in ("lora", "full"):
            for device, name in (("gpu", "bf16-mixed"), ("cpu", "32-true")):
                run(tmp_path, "rte", method, seed, score(method, seed, 0.6), experiment=device,
                    extra={"precision": {"name": name}}, **{"training.precision": "auto"})
    grouping = group_inputs(load_inputs(tmp_path))
    assert [g.name for g in grouping.groups] == ["training.precision=32-true", "training.precision=bf16-mixed"]
    assert all({rd.split("/")[0] for rd in g.run_dirs} == {"cpu" if "32" in g.name else "gpu"}
               for g in grouping.groups)


def test_two_step_counts_are_two_comparisons(tmp_path):
    write_two(tmp_path, "training.max_steps", (200, 50), tasks=("mrpc",))
    reports = build_reports(tmp_path, **FAST)
    assert [i.group.name for i in reports.items] == ["training.max_steps=50", "training.max_steps=200"]  # numeric
    assert reports.grouping.differing_keys == {"training.max_steps": ["mrpc"]}
    for item, offset in zip(reports.items, (0.85, 0.60), strict=True):
        (row,) = item.report.verdict_rows
        assert row["lora"] == pytest.approx(expected_mean("lora", offset))
        assert row["full"] == pytest.approx(expected_mean("full", offset))
        assert item.report.context.endswith(f"{item.group.differing['training.max_steps']} steps")


def test_analyze_refuses_mixed_inputs(tmp_path):
    write_two(tmp_path, "model.max_length", (128, 256), tasks=("rte",))
    inputs = load_inputs(tmp_path)
    with pytest.raises(MixedResultsError, match=r"model\.max_length \(within rte\)"):
        analyze(inputs, **FAST)
    parts = split_inputs(inputs)
    assert [g.name for g, _ in parts] == ["model.max_length=128", "model.max_length=256"]
    for group, sub in parts:
        assert set(sub.runs["run_dir"]) == set(group.run_dirs) == set(sub.configs) == set(sub.curves["run_dir"])
        assert analyze(sub, **FAST).verdict_rows[0]["task"] == "rte"


def test_failed_runs_join_their_group_and_runs_without_config_join_none(tmp_path):
    write_two(tmp_path, "training.precision", ("32-true", "bf16-mixed"), tasks=("rte",))
    write_fake_run(tmp_path, "rte", "full", 9, status="failed", reason="out of memory",
                   config=config("rte", "full", 9, **{"training.precision": "bf16-mixed"}))
    old = write_fake_run(tmp_path, "rte", "lora", 9, test=0.5, validation=0.5)
    metrics = json.loads((old / "metrics.json").read_text())
    del metrics["config"]
    (old / "metrics.json").write_text(json.dumps(metrics))
    reports = build_reports(tmp_path, **FAST)
    rel = old.relative_to(tmp_path).as_posix()
    assert reports.grouping.not_placed == [rel]
    bf16, fp32 = (i.report for i in reports.items[::-1])
    assert list(bf16.failed["reason"]) == ["out of memory"] and fp32.failed.empty
    assert rel not in set(bf16.runs["run_dir"]) | set(fp32.runs["run_dir"])
    written = write_reports(reports, tmp_path / "report")
    assert "1 run is in no comparison" in written["summary.md"].read_text()


# ---------------------------------------------------------------- one group: the report as before


def test_a_task_specific_override_is_not_a_mix(tmp_path):
    for seed in SEEDS:
        for method in ("lora", "full"):
            run(tmp_path, "sst2", method, seed, score(method, seed, 0.7), **{"training.max_steps": 100})
            run(tmp_path, "rte", method, seed, score(method, seed, 0.6), **{"training.max_steps": 50})
    out = tmp_path / "report"
    assert main(["report", str(tmp_path), "--out", str(out), "--bootstrap-resamples", "200"]) == 0
    assert not (out / "groups.json").exists() and SINGLE_REPORT_FILES | {"plots"} == {p.name for p in out.iterdir()}
    assert set(json.loads((out / "verdicts.json").read_text())) == {"sst2", "rte"}
    line = ("Compared under the same conditions: model tiny, precision 32-true, max_length 128, batch 16, "
            "sst2: 100 steps; rte: 50 steps.")
    assert line in (out / "summary.md").read_text()


def test_method_keys_are_not_context(tmp_path):
    """LoRA at r 8 and r 16, each method at its own learning rates: one comparison (select picks the headline)."""
    for seed in SEEDS:
        for r, val in ((8, 0.70), (16, 0.75)):
            write_fake_run(tmp_path, "mrpc", "lora", seed, test=0.8, validation=val, lora_r=r,
                           config=config("mrpc", "lora", seed, r=r))
        for lr in (1e-5, 5e-5):
            write_fake_run(tmp_path, "mrpc", "full", seed, test=0.8, validation=0.7, learning_rate=lr,
                           config=config("mrpc", "full", seed, lr=lr, **{"training.save_full_model": True}))
    reports = build_reports(tmp_path, **FAST)
    assert not reports.mixed and reports.items[0].group.name == ""
    report = reports.single
    assert sorted(report.settings["lora_r"].dropna().astype(int)) == [8, 16]
    assert report.settings.query("selected and method == 'lora'")["lora_r"].item() == 16   # best validation
    assert report.context == "model tiny, precision 32-true, max_length 128, batch 16, 1 epoch"


def test_runs_without_config_stay_in_the_one_group_with_a_note(tmp_path):
    for seed in SEEDS:
        write_fake_run(tmp_path, "rte", "lora", seed, test=0.6, validation=0.6, config=config("rte", "lora", seed))
        folder = write_fake_run(tmp_path, "rte", "full", seed, test=0.6, validation=0.6)
        metrics = json.loads((folder / "metrics.json").read_text())
        (folder / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k != "config"}))
    report = build_reports(tmp_path, **FAST).single
    assert report.verdict_rows[0]["full"] == pytest.approx(60.0)
    assert any(n.startswith("3 ok runs record no config") for n in report.notes)


def test_switching_between_one_and_several_groups_leaves_no_stale_report(tmp_path):
    results, out = tmp_path / "results", tmp_path / "out"
    write_two(results, "training.max_steps", (100,), tasks=("rte",), offsets=(0.6,))
    write_reports(build_reports(results, out, **FAST), out)
    assert (out / "verdicts.json").is_file() and (out / "tables" / "runs.csv").is_file()
    write_two(results, "training.max_steps", (200,), tasks=("rte",), offsets=(0.8,))
    write_reports(build_reports(results, out, **FAST), out)
    assert not (out / "verdicts.json").exists() and not (out / "tables").exists()   # no comparison across
    assert (out / "training.max_steps-200" / "verdicts.json").is_file() and (out / "groups.json").is_file()
    for folder in list((results / "demo").iterdir()):
        if json.loads((folder / "metrics.json").read_text())["config"]["training"]["max_steps"] == 200:
            shutil.rmtree(folder)
    write_reports(build_reports(results, out, **FAST), out)
    assert {p.name for p in out.iterdir()} == SINGLE_REPORT_FILES
    assert json.loads((out / "verdicts.json").read_text())["rte"]["lora"] == pytest.approx(expected_mean("lora", 0.6))


# ---------------------------------------------------------------- pieces


def test_each_group_keeps_the_selection_of_its_own_plan(tmp_path):
    """Two plans on two models, each with a selection.json: each group follows its own, not the last one read
    (validation prefers the rate the other plan chose)."""
    for experiment, model, chosen in (("plan-a", "a", 1e-4), ("plan-b", "b", 3e-4)):
        for seed in SEEDS:
            for lr in (1e-4, 3e-4):
                run(tmp_path, "rte", "lora", seed, 0.6, experiment=experiment, lr=lr, validation=0.8 if lr != chosen
                    else 0.7, **{"model.name": model})
            run(tmp_path, "rte", "full", seed, 0.6, experiment=experiment, **{"model.name": model})
        write_selection(tmp_path, experiment, {"rte": {"lora": {"learning_rate": chosen}}})
    reports = build_reports(tmp_path, **FAST)
    chosen = {i.group.name: i.report.settings.query("selected and method == 'lora'")["learning_rate"].item()
              for i in reports.items}
    assert chosen == {"model.name=a": 1e-4, "model.name=b": 3e-4}
    sources = {i.group.name: i.report.settings.query("selected and method == 'lora'")["selection"].item()
               for i in reports.items}
    assert sources == {"model.name=a": "selection.json (plan-a/selection.json)",
                       "model.name=b": "selection.json (plan-b/selection.json)"}


def test_comparison_context_leaves_out_the_method_its_keys_and_the_seed():
    lora = comparison_context(config("sst2", "lora", 1, r=8))
    full = comparison_context(config("sst2", "full", 2, lr=1e-5, **{"training.save_full_model": True}))
    assert lora == full == {"model.name": "tiny", "model.max_length": 128, "training.precision": "32-true",
                            "training.per_device_train_batch_size": 16, "training.gradient_accumulation_steps": 1,
                            "training.num_train_epochs": 1, "training.max_steps": -1}
    assert comparison_context(config("sst2", "lora", 1), precision="bf16-mixed")["training.precision"] == "bf16-mixed"
    assert comparison_context(config("sst2", "lora", 1, **{"training.num_train_epochs": 1.0})) == lora


def test_describe_context_gives_task_specific_values_per_task():
    configs = {f"r{i}": config(task, "lora", 1, **{"training.max_steps": steps, "data.max_train_examples": cap})
               for i, (task, steps, cap) in enumerate((("sst2", -1, 8000), ("mrpc", -1, None), ("rte", -1, None),
                                                         ("squad_v2", 100, None)))}
    configs["r9"] = config("rte", "full", 2, **{"training.gradient_accumulation_steps": 4})
    del configs["r2"]
    text = describe_context(configs, {"r0": "bf16-mixed", "r1": "bf16-mixed", "r9": "bf16-mixed",
                                      "r3": "bf16-mixed"})
    assert text == ("model tiny, precision bf16-mixed, max_length 128, batch 16 (rte: batch 16 x 4 accumulated), "
                    "1 epoch (squad_v2: 100 steps), at most 8000 train examples (sst2 only)")
    assert describe_context({}) == ""


def test_restrict_inputs_keeps_only_the_groups_runs(tmp_path):
    write_two(tmp_path, "model.name", ("a", "b"), tasks=("sst2",))
    inputs = load_inputs(tmp_path)
    group = group_inputs(inputs).groups[1]
    sub = restrict_inputs(inputs, group)
    assert len(sub.runs) == 6 and set(sub.precisions) <= set(group.run_dirs)
    assert {c["model"]["name"] for c in sub.configs.values()} == {"b"}
    assert len(inputs.runs) == 12   # the original is untouched


def test_slugs_are_folder_names():
    assert slug("model.name=org/model-a, training.precision=bf16-mixed") == \
        "model.name-org-model-a__training.precision-bf16-mixed"
    long = slug("model.name=" + "x" * 200)
    assert len(long) <= 80 and long != slug("model.name=" + "x" * 199)
