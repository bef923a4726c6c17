"""`data download` without network fails fast; hub rows convert to canonical records with checked labels."""

from __future__ import annotations

import time

import pytest
from datasets import ClassLabel, Dataset, Features, List, Value

from tunebench import cli
from tunebench.data.hub import convert_hub_split, probe_hub
from tunebench.data.tasks import get_task
from tunebench.errors import TunebenchError


@pytest.fixture
def no_hub(monkeypatch):
    """Point the hub at a closed local port, so the test is the same with or without network."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")


def test_download_without_network_fails_fast_and_points_to_import(no_hub, tmp_path, capsys):
    start = time.monotonic()
    rc = cli.main(["data", "download", "--tasks", "sst2", f"data.dir={tmp_path / 'data'}"])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert elapsed < 10
    assert len(err) == 1 and "hub is unreachable: cannot reach 127.0.0.1:9" in err[0]
    assert "tunebench data import --glue-dir DIR --squad-dir DIR" in err[0]
    assert not (tmp_path / "data").exists()


def test_probe_reports_the_reason(no_hub):
    assert probe_hub(timeout=2).startswith("cannot reach 127.0.0.1:9")


def glue_dataset(label_names: list[str], rows: list[tuple[str, str, int]]) -> Dataset:
    features = Features({"sentence1": Value("string"), "sentence2": Value("string"),
                         "label": ClassLabel(names=label_names), "idx": Value("int32")})
    return Dataset.from_list([{"sentence1": a, "sentence2": b, "label": y, "idx": i}
                              for i, (a, b, y) in enumerate(rows)], features=features)


def test_hub_glue_rows_become_canonical_records():
    # nyu-mll/glue rte: 0 = entailment, 1 = not_entailment (the order in tasks.py)
    ds = glue_dataset(["entailment", "not_entailment"], [("p one", "h one", 0), ("p two", "h two", 1)])
    assert convert_hub_split(get_task("rte"), ds, "nyu-mll/glue/rte/train") == [
        {"idx": 0, "text_a": "p one", "text_b": "h one", "label": 0},
        {"idx": 1, "text_a": "p two", "text_b": "h two", "label": 1},
    ]


def test_hub_label_order_is_checked():
    ds = glue_dataset(["not_entailment", "entailment"], [("p", "h", 0)])
    with pytest.raises(TunebenchError, match="hub label names .* differ from"):
        convert_hub_split(get_task("rte"), ds, "nyu-mll/glue/rte/train")


def test_hidden_test_labels_are_refused():
    features = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"]),
                         "idx": Value("int32")})
    ds = Dataset.from_list([{"sentence": "x", "label": -1, "idx": 0}], features=features)
    with pytest.raises(TunebenchError, match="idx 0: label -1"):
        convert_hub_split(get_task("sst2"), ds, "nyu-mll/glue/sst2/test")


def test_hub_squad_rows_keep_the_layout():
    features = Features({"id": Value("string"), "title": Value("string"), "context": Value("string"),
                         "question": Value("string"),
                         "answers": {"text": List(Value("string")), "answer_start": List(Value("int32"))}})
    rows = [{"id": "a", "title": "T", "context": "the cat is red .", "question": "q ?",
             "answers": {"text": ["red"], "answer_start": [11]}},
            {"id": "b", "title": "T", "context": "the cat is red .", "question": "q2 ?",
             "answers": {"text": [], "answer_start": []}}]
    ds = Dataset.from_list(rows, features=features)
    assert convert_hub_split(get_task("squad_v2"), ds, "rajpurkar/squad_v2/validation") == rows
