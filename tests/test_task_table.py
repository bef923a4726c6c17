"""One task table: a GLUE task added as one entry of tunebench.tasks.TASKS (here a hypothetical QNLI-like one,
monkeypatched in) is picked up by config and plan validation, the CLI, the data sources, the plan's cost model
and the report -- with no other edit.

What an entry cannot carry is code, and is refused with one line: a builtin synthetic generator
(tunebench.data.builtin) and a classification metric other than accuracy, F1 and macro F1
(tunebench.metrics.classification)."""

from __future__ import annotations

import dataclasses
import re
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

from fake_results import classification_predictions, write_fake_run
from tunebench.cli import main
from tunebench.config import load_config
from tunebench.data import builtin, hub, sources
from tunebench.errors import TunebenchError
from tunebench.metrics.classification import classification_metrics
from tunebench.plan import cost
from tunebench.plan.spec import PlanSpec
from tunebench.tasks import TASKS, TaskSpec, get_task, task_names

QNLI = TaskSpec(
    name="qnli", family="classification", label_names=("entailment", "not_entailment"),
    metrics=("accuracy",), primary_metric="accuracy",
    official_counts={"train": 104_743, "test": 5_463},
    hub_id="nyu-mll/glue", hub_config="qnli",
    mean_tokens=50,                              # hypothetical
    hub_text_fields=("question", "sentence"),
    raw_text_fields=("question", "sentence"), raw_label_field="label",
    raw_dir="QNLI", raw_label_values=("entailment", "not_entailment"),
)


@pytest.fixture
def qnli(monkeypatch) -> TaskSpec:
    """The table with one more GLUE task; every consumer reads TASKS itself, so this is the only change."""
    monkeypatch.setitem(TASKS, "qnli", QNLI)
    return QNLI


# ---------------------------------------------------------------- config, plans, CLI


def test_config_refuses_a_task_outside_the_table_and_accepts_it_once_added(monkeypatch):
    allowed = "allowed: 'sst2', 'mrpc', 'rte' or 'squad_v2'"       # pydantic's Literal wording, as before
    with pytest.raises(TunebenchError, match=re.escape(f"override task=qnli: task = 'qnli': {allowed}")):
        load_config([], ["task=qnli"])
    monkeypatch.setitem(TASKS, "qnli", QNLI)
    cfg = load_config([], ["task=qnli", "model.max_length=64", "qa.doc_stride=128"])   # no QA windows to check
    assert cfg.task == "qnli"
    with pytest.raises(TunebenchError, match=re.escape("'rte', 'squad_v2' or 'qnli'")):
        load_config([], ["task=cola"])
    with pytest.raises(TunebenchError, match="qa.doc_stride = 128 must be below model.max_length = 64"):
        load_config([], ["task=squad_v2", "model.max_length=64", "qa.doc_stride=128"])    # the QA task still is


def test_plans_and_the_cli_take_the_added_task(qnli, monkeypatch):
    plan = PlanSpec.model_validate({"name": "p", "task_overrides": {"qnli": {"training.max_steps": 5}}})
    assert plan.tasks == list(task_names()) and plan.tasks[-1] == "qnli"       # the default: every task
    with pytest.raises(ValidationError, match=re.escape("allowed: 'sst2', 'mrpc', 'rte', 'squad_v2' or 'qnli'")):
        PlanSpec.model_validate({"name": "p", "tasks": ["cola"]})

    import tunebench.commands.run as run_cmd

    seen = {}
    monkeypatch.setattr(run_cmd, "expand_runs", lambda cfg, tasks, methods, seeds: seen.update(tasks=tasks) or [])
    monkeypatch.setattr(run_cmd, "print_results_table", lambda records: None)
    assert main(["run", "--tasks", "qnli"]) == 0 and seen["tasks"] == ["qnli"]


# ---------------------------------------------------------------- data sources


class FakeHubSplit(list):
    """What data.hub reads of a `datasets` split: rows, features["label"].names and a fingerprint."""

    def __init__(self, rows: list[dict], label_names: tuple[str, ...]):
        super().__init__(rows)
        self.features = {"label": SimpleNamespace(names=list(label_names))}
        self._fingerprint = "fake"


def qnli_rows(n: int, start: int = 0) -> list[dict]:
    return [{"idx": i, "question": f"what is thing {start + i} ?", "sentence": f"thing {start + i} is a noun .",
             "label": i % 2} for i in range(n)]


def test_the_hub_source_reads_the_tables_hub_id_config_and_text_fields(qnli, monkeypatch, tmp_path):
    asked = []

    def fake_load(spec):
        asked.append((spec.hub_id, spec.hub_config))
        return {"train": FakeHubSplit(qnli_rows(20), spec.label_names),
                "validation": FakeHubSplit(qnli_rows(6, start=100), spec.label_names)}

    monkeypatch.setattr(hub, "load_hub_dataset", fake_load)
    monkeypatch.setattr(hub, "check_hub_reachable", lambda: None)
    [prepared] = sources.download_hub(tmp_path, ["qnli"])
    assert asked == [("nyu-mll/glue", "qnli")]
    assert [(i["split"], i["hub_id"], i["hub_config"], i["hub_split"]) for i in prepared.inputs] == [
        ("train", "nyu-mll/glue", "qnli", "train"), ("test", "nyu-mll/glue", "qnli", "validation")]
    assert prepared.splits["train"][1] == {"idx": 1, "text_a": "what is thing 1 ?", "text_b": "thing 1 is a noun .",
                                           "label": 1}
    assert prepared.warnings == ["qnli train: 20 rows, official 104,743", "qnli test: 6 rows, official 5,463"]
    cfg = load_config([], ["task=qnli", "data.source=hub", f"data.dir={tmp_path}"])
    assert sources.recovery_hint(cfg, qnli) == f"tunebench data download --tasks qnli data.dir={tmp_path}"


def test_the_local_source_reads_the_tables_glue_folder_and_columns(qnli, tmp_path):
    folder = tmp_path / "glue" / "QNLI"
    folder.mkdir(parents=True)
    for name, rows in (("train.tsv", qnli_rows(40)), ("dev.tsv", qnli_rows(10, start=100))):
        lines = ["index\tquestion\tsentence\tlabel"] + [
            f"{r['idx']}\t{r['question']}\t{r['sentence']}\t{QNLI.raw_label_values[r['label']]}" for r in rows]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    from tunebench.commands.data import default_import_tasks

    assert default_import_tasks(str(tmp_path / "glue"), None) == ["qnli"]
    cfg = load_config([], ["task=qnli", "data.source=local", f"data.dir={tmp_path / 'cache'}",
                           f"data.glue_dir={tmp_path / 'glue'}"])
    cached, splits = sources.load_split_records(cfg)            # imports first: the GLUE folder is configured
    assert cached.manifest["source"] == "local"
    assert {s: len(r) for s, r in splits.items()} == {"train": 36, "validation": 4, "test": 10}
    assert splits["test"][0]["text_a"] == "what is thing 100 ?" and splits["test"][0]["label"] == 0


def test_what_the_table_cannot_carry_is_refused_in_one_line(qnli, monkeypatch):
    with pytest.raises(TunebenchError, match="builtin qnli: no synthetic generator for this task"):
        builtin.generate("qnli", 10, seed=0)
    assert classification_metrics("qnli", [0, 1, 1, 0], [0, 1, 0, 0]) == {"accuracy": 0.75}
    monkeypatch.setitem(TASKS, "qnli", dataclasses.replace(QNLI, metrics=("mcc",), primary_metric="mcc"))
    with pytest.raises(ValueError, match="qnli: metric 'mcc' is not computed here"):
        classification_metrics("qnli", [0, 1], [0, 1])


# ---------------------------------------------------------------- the plan's cost model


def test_the_cost_model_reads_the_tables_length_and_train_size(qnli):
    cfg = load_config([], ["task=qnli", "data.source=local"])
    assert cost.mean_tokens(cfg) == 50 and cost.tokens_per_example(cfg) == 50.0
    assert TASKS["qnli"].mean_tokens == 50 and list(TASKS)[-1] == "qnli"
    assert cost.train_examples("qnli", cfg.data) == 104_743 - round(104_743 * 0.1)
    assert cost.mean_tokens(load_config([], ["task=qnli", "data.source=local", "model.max_length=32"])) == 32


def test_the_existing_tasks_keep_their_numbers():
    assert {t: spec.mean_tokens for t, spec in TASKS.items()} == {"sst2": 15, "mrpc": 62, "rte": 77, "squad_v2": 200}
    assert {t: get_task(t).hub_text_fields for t in ("sst2", "mrpc", "rte")} == {
        "sst2": ("sentence",), "mrpc": ("sentence1", "sentence2"), "rte": ("sentence1", "sentence2")}
    assert task_names() == ("sst2", "mrpc", "rte", "squad_v2")


# ---------------------------------------------------------------- the report


def test_the_report_compares_the_added_task_against_its_baseline(qnli, tmp_path):
    from tunebench.report.build import build_report

    labels = np.array([0] * 120 + [1] * 80)                    # test majority: class 0, 'entailment' (60%)
    rng = np.random.default_rng(0)
    for seed in (1, 2, 3):
        for method, acc in (("lora", 0.85), ("full", 0.86)):
            correct = rng.random(len(labels)) < acc
            write_fake_run(tmp_path, "qnli", method, seed, test=float(correct.mean()), validation=acc,
                           predictions=classification_predictions(labels, correct))
    report = build_report(tmp_path, with_figures=False, n_resamples=200)
    [row] = report.verdict_rows
    assert row["task"] == "qnli" and row["metric"] == "accuracy"
    assert row["baseline"] == {"name": "always the test split's majority class 'entailment'", "value": 60.0}
    assert row["learned"]["lora"]["state"] == "shown" and row["learned"]["full"]["state"] == "shown"
    assert list(report.comparison["task"]) == ["qnli"] and report.qa is None
