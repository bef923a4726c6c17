"""A run that finished ok but collapsed (every test prediction one class, or a final gradient norm of zero) says
so in metrics.json's findings, and the report lists it."""

from __future__ import annotations

import json

import pytest

from fake_results import classification_predictions, write_fake_run
from tunebench.config import load_config
from tunebench.findings import findings_text, run_findings
from tunebench.results import run_dir

CLASSES = [{"idx": i, "label": i % 2, "prediction": p} for i, p in enumerate([1, 0, 1, 1])]
ONE_CLASS = [{**r, "prediction": 1} for r in CLASSES]
LOG = [{"step": 10, "loss": 1e6, "grad_norm": 3e5}, {"step": 20, "eval_loss": 0.69},
       {"step": 20, "loss": 0.6931, "grad_norm": 0.4}]
DEAD_LOG = [*LOG[:2], {"step": 20, "loss": 0.6931, "grad_norm": 0.0}]


def test_a_healthy_run_has_no_findings():
    assert run_findings(False, CLASSES, LOG) == []
    assert run_findings(False, ONE_CLASS[:1], []) == []              # one example says nothing


def test_one_class_and_a_zero_final_gradient_are_a_collapse():
    assert run_findings(False, ONE_CLASS, LOG) == [
        {"kind": "collapse", "detail": "every test prediction is class 1 (4 examples)"}]
    assert run_findings(False, CLASSES, DEAD_LOG) == [
        {"kind": "collapse", "detail": "final gradient norm 0 at step 20: no update moves any weight"}]
    assert len(run_findings(False, ONE_CLASS, DEAD_LOG)) == 2
    abstains = [{"id": f"q{i}", "prediction": ""} for i in range(3)]
    assert run_findings(True, abstains, LOG)[0]["detail"] == "every test prediction is no answer (3 examples)"


@pytest.fixture
def collapsed_engine(monkeypatch):
    """A fake engine: the loss blew up, then sat at ln 2 with zero gradients, predicting class 1 throughout."""
    import tunebench.train as train
    from tunebench.io import atomic_write_jsonl

    def collapsed(cfg, rdir, tracker, resume=True):
        atomic_write_jsonl(rdir / "log.jsonl", DEAD_LOG)
        metrics = {"accuracy": 0.5, "loss": 0.6931}
        fields = {"test": metrics, "validation": metrics, "best_validation": {"step": 20, "value": 0.5},
                  "params": {"trainable": 10, "trainable_share": 0.01}, "timing": {"wall_s": 1.0}, "memory": {},
                  "tokens": {"tokens_per_s": 100.0}, "train_loss": 0.6931, "steps": 20}
        return train.EngineResult(fields, {"validation": ONE_CLASS, "test": ONE_CLASS})

    monkeypatch.setattr(train, "train_and_evaluate", collapsed)


def test_the_runner_records_a_collapse_in_metrics_json(tmp_path, collapsed_engine):
    from tunebench.runner import run_one

    cfg = load_config([], ["model.name=tiny", "tracking.backend=none", f"output_dir={tmp_path}", "experiment=c"])
    rec = run_one(cfg, preflight=False)
    assert rec["status"] == "ok"                                      # still ok: a finding, not a failure
    saved = json.loads((run_dir(cfg) / "metrics.json").read_text())
    assert saved["findings"] == rec["findings"] == [
        {"kind": "collapse", "detail": "every test prediction is class 1 (4 examples)"},
        {"kind": "collapse", "detail": "final gradient norm 0 at step 20: no update moves any weight"}]


def test_tunebench_run_says_so_beside_ok(tmp_path, collapsed_engine, capsys):
    from tunebench.cli import main

    assert main(["run", "model.name=tiny", "tracking.backend=none", f"output_dir={tmp_path}", "--skip-preflight"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "ok; collapse: every test prediction is class 1 (4 examples); collapse: final gradient norm 0" in err


def test_the_report_lists_the_findings_of_ok_runs(tmp_path):
    from tunebench.report.build import build_report

    finding = [{"kind": "collapse", "detail": "every test prediction is class 1 (4 examples)"}]
    for seed in (1, 2, 3):
        for method in ("lora", "full"):
            collapsed = method == "full" and seed == 2
            write_fake_run(tmp_path, "sst2", method, seed, test=0.75 if collapsed else 0.8, validation=0.8,
                           predictions=classification_predictions([1, 0, 1, 0], [True, not collapsed, True, True]),
                           extra={"findings": finding if collapsed else []})
    report = build_report(tmp_path, with_figures=False, n_resamples=100)
    flagged = report.runs[report.runs["findings"].notna()]
    assert list(flagged["run_dir"].str.contains("sst2-full-s2")) == [True]
    assert flagged["findings"].tolist() == ["collapse: every test prediction is class 1 (4 examples)"]
    notes = [n for n in report.notes if "collapse" in n]
    assert notes == [f"{flagged['run_dir'].iloc[0]}: collapse: every test prediction is class 1 (4 examples) "
                     "(finished ok: averaged with the other runs)"]


@pytest.mark.parametrize("value", [None, [], "collapse", [{"nothing": 1}], [{"kind": "collapse"}]])
def test_findings_text_of_older_or_odd_records(value):
    expected = {"[{'kind': 'collapse'}]": "collapse"}.get(str(value))
    assert findings_text(value) == expected
