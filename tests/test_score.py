"""`tunebench score`: pure scoring over records, and the command end to end with a patched test split."""

from __future__ import annotations

import json

import pytest

import tunebench.data
from tunebench.cli import main
from tunebench.commands.score import read_predictions, score_predictions
from tunebench.data.tasks import get_task
from tunebench.errors import TunebenchError

SST2_TEST = [
    {"idx": 0, "text_a": "great film", "text_b": None, "label": 1},
    {"idx": 1, "text_a": "dull", "text_b": None, "label": 0},
    {"idx": 2, "text_a": "fine", "text_b": None, "label": 1},
    {"idx": 3, "text_a": "bad", "text_b": None, "label": 0},
]
MRPC_TEST = [{**r, "text_b": "b"} for r in SST2_TEST]


def qa(qid: str, answers: list[str]) -> dict:
    return {"id": qid, "title": "t", "context": "The big black cat sat in Paris.", "question": "q?",
            "answers": {"text": answers, "answer_start": [0] * len(answers)}}


SQUAD_TEST = [qa("q1", ["big black cat"]), qa("q2", ["Paris"]), qa("q3", []), qa("q4", [])]


@pytest.fixture
def splits(monkeypatch):
    """Patch the data layer: load_task_splits(cfg, task) -> {"test": records}; records the calls."""
    calls = []
    tables = {"sst2": SST2_TEST, "mrpc": MRPC_TEST, "rte": SST2_TEST, "squad_v2": SQUAD_TEST}

    def fake_load_task_splits(cfg, task):
        calls.append((cfg, task))
        return {"train": [], "validation": [], "test": tables[task]}

    monkeypatch.setattr(tunebench.data, "load_task_splits", fake_load_task_splits, raising=False)
    return calls


def write(tmp_path, obj, name="pred.json") -> str:
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return str(path)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["score", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- pure scoring ---------------------------------------------------------------------------------------------

def test_classification_ids_and_names():
    preds = {"0": 1, "1": "negative", "2": 0, "3": "positive"}
    metrics, warnings = score_predictions(get_task("sst2"), SST2_TEST, preds)
    assert warnings == []
    assert metrics == {"accuracy": 0.5, "macro_f1": 0.5}


def test_classification_mrpc_positive_f1():
    metrics, _ = score_predictions(get_task("mrpc"), MRPC_TEST, {"0": "equivalent", "1": 1, "2": 1, "3": 0})
    # labels 1 0 1 0 vs preds 1 1 1 0: positive class tp 2, fp 1, fn 0 -> F1 4/5
    assert metrics == {"f1": pytest.approx(0.8), "accuracy": 0.75}


@pytest.mark.parametrize("preds, message", [
    ({"0": 1, "1": 0, "2": 1}, "missing predictions for 1 of 4 sst2 examples: 3"),
    ({"0": 1, "1": 0, "2": 1, "3": 0, "9": 1}, "1 unknown example index(es) for sst2: 9"),
    ({"0": 1, "1": 0, "2": 1, "3": "neutral"}, "unknown label 'neutral' for example 3"),
    ({"0": 1, "1": 0, "2": 1, "3": 2}, "unknown label 2"),
    ({"0": 1, "1": 0, "2": 1, "3": True}, "unknown label True"),
    ({"0": 1, "1": 0, "2": 1, "x": 0}, "key 'x' is not an example index"),
    ({"0": 1, "1": 0, "2": 1, "3": 0, "03": 0}, "example index 3 appears twice"),
])
def test_classification_bad_predictions(preds, message):
    with pytest.raises(TunebenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        score_predictions(get_task("sst2"), SST2_TEST, preds, source="p.json")


def test_squad_official_metrics():
    preds = {"q1": "the big cat", "q2": "paris.", "q3": "", "q4": "London"}
    metrics, warnings = score_predictions(get_task("squad_v2"), SQUAD_TEST, preds)
    assert warnings == []
    assert metrics == {"exact": 50.0, "f1": pytest.approx(70.0), "total": 4,
                       "HasAns_exact": 50.0, "HasAns_f1": pytest.approx(90.0), "HasAns_total": 2,
                       "NoAns_exact": 50.0, "NoAns_f1": 50.0, "NoAns_total": 2}


def test_squad_missing_ids_warn_and_score_as_no_answer():
    metrics, warnings = score_predictions(get_task("squad_v2"), SQUAD_TEST, {"q1": "big black cat"}, "p.json")
    assert warnings == ["p.json: missing predictions for 3 of 4 questions, scored as no answer: 'q2', 'q3', 'q4'"]
    assert metrics["total"] == 4 and metrics["exact"] == 75.0


@pytest.mark.parametrize("preds, message", [
    ({"q1": "x", "nope": "y"}, "1 unknown question id(s): 'nope'"),
    ({"q1": 3}, "answers must be strings"),
    ({"q1": None}, "answers must be strings"),
])
def test_squad_bad_predictions(preds, message):
    with pytest.raises(TunebenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        score_predictions(get_task("squad_v2"), SQUAD_TEST, preds, source="p.json")


def test_read_predictions_errors(tmp_path):
    with pytest.raises(TunebenchError, match="no such predictions file"):
        read_predictions(tmp_path / "absent.json")
    with pytest.raises(TunebenchError, match="invalid JSON"):
        read_predictions(write(tmp_path, "{not json"))
    with pytest.raises(TunebenchError, match="expected a JSON object .* got list"):
        read_predictions(write(tmp_path, [1, 2]))


# -- the command ----------------------------------------------------------------------------------------------

def test_cli_scores_glue(tmp_path, capsys, splits):
    path = write(tmp_path, {"0": 1, "1": 0, "2": 1, "3": 1})
    code, out, err = run_cli(capsys, "--task", "rte", "--predictions", path)
    assert code == 0, err
    assert json.loads(out) == {"accuracy": 0.75, "macro_f1": pytest.approx((2 / 3 + 0.8) / 2)}
    assert [task for _, task in splits] == ["rte"]


def test_cli_scores_squad_and_passes_config_overrides(tmp_path, capsys, splits):
    path = write(tmp_path, {"q1": "big black cat", "q2": "Paris", "q3": "", "q4": ""})
    code, out, err = run_cli(capsys, "--task", "squad_v2", "--predictions", path, "training.seed=7")
    assert code == 0, err
    metrics = json.loads(out)
    assert list(metrics)[:3] == ["exact", "f1", "total"]
    assert metrics["exact"] == metrics["f1"] == 100.0 and metrics["NoAns_total"] == 2
    cfg, task = splits[0]
    assert task == "squad_v2" and cfg.training.seed == 7


def test_cli_squad_missing_ids_warns_on_stderr(tmp_path, capsys, splits):
    path = write(tmp_path, {"q1": "big black cat"})
    code, out, err = run_cli(capsys, "--task", "squad_v2", "--predictions", path)
    assert code == 0
    assert json.loads(out)["exact"] == 75.0
    assert err.startswith("tunebench: warning: ") and "missing predictions for 3 of 4" in err


@pytest.mark.parametrize("content, needle", [
    (None, "no such predictions file"),
    ("[1, 2]", "expected a JSON object"),
    ("{bad", "invalid JSON"),
    ('{"0": 1, "1": 0, "2": 1, "3": "maybe"}', "unknown label 'maybe'"),
])
def test_cli_bad_input_one_line_exit_2(tmp_path, capsys, splits, content, needle):
    path = str(tmp_path / "pred.json") if content is None else write(tmp_path, content)
    code, out, err = run_cli(capsys, "--task", "sst2", "--predictions", path)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("tunebench: error: ")
    assert path in err and needle in err


def test_cli_unknown_task(tmp_path, capsys, splits):
    code, _, err = run_cli(capsys, "--task", "cola", "--predictions", write(tmp_path, {}))
    assert code == 2 and "unknown task 'cola'" in err and err.count("\n") == 1
    assert splits == []


def test_cli_reads_a_datasets_test_split(tmp_path, capsys, monkeypatch):
    """The real loader returns a datasets.DatasetDict; rows come back as plain dicts with nested answers."""
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict({"test": datasets.Dataset.from_list(SQUAD_TEST)})
    monkeypatch.setattr(tunebench.data, "load_task_splits", lambda cfg, task: dd, raising=False)
    path = write(tmp_path, {"q1": "the big cat", "q2": "paris.", "q3": "", "q4": "London"})
    code, out, err = run_cli(capsys, "--task", "squad_v2", "--predictions", path)
    assert code == 0, err
    assert json.loads(out)["f1"] == pytest.approx(70.0)
