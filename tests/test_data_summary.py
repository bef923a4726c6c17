"""Split statistics (pure) and `data summary`."""

from __future__ import annotations

import pytest

from shared_assets import STORIES
from tunebench import cli
from tunebench.config import load_config
from tunebench.data.summary import label_distribution, length_percentiles, summarize_split, token_lengths
from tunebench.data.tasks import get_task

SST2, MRPC, SQUAD = get_task("sst2"), get_task("mrpc"), get_task("squad_v2")


def test_percentiles_are_nearest_rank():
    assert length_percentiles(list(range(1, 101))) == {"p50": 50, "p90": 90, "p99": 99, "max": 100}
    assert length_percentiles([7]) == {"p50": 7, "p90": 7, "p99": 7, "max": 7}
    assert length_percentiles([3, 1, 2, 10]) == {"p50": 2, "p90": 10, "p99": 10, "max": 10}
    assert length_percentiles([]) == {"p50": 0, "p90": 0, "p99": 0, "max": 0}


def test_label_distribution():
    records = [{"label": 1}, {"label": 1}, {"label": 0}]
    assert label_distribution(SST2, records) == {"negative": 1, "positive": 2}
    squad = [{"answers": {"text": ["x"]}}, {"answers": {"text": []}}, {"answers": {"text": []}}]
    assert label_distribution(SQUAD, squad) == {"answerable": 1, "unanswerable": 2}


def tiny_tokenizer():
    model = pytest.importorskip("tunebench.model", reason="tunebench.model not built yet")
    return model.load_tokenizer(load_config([], ["model.name=tiny"]))


def test_token_lengths_with_the_tiny_tokenizer():
    tok = tiny_tokenizer()
    single = [{"idx": 0, "text_a": "a good movie .", "text_b": None, "label": 1}]
    pair = [{"idx": 0, "text_a": "the cat is red .", "text_b": "the cat is red .", "label": 0}]
    qa = [{"id": "q", "title": "t", "context": "the cat is red .", "question": "what color is the cat ?",
           "answers": {"text": ["red"], "answer_start": [11]}}]
    assert token_lengths(SST2, single, tok) == [5]          # <s> + 4 words
    assert token_lengths(MRPC, pair, tok) == [12]           # <s> a <s> b
    assert token_lengths(SQUAD, qa, tok) == [13]
    row = summarize_split(SST2, "train", single * 3, token_lengths(SST2, single * 3, tok), max_length=4)
    assert row == {"task": "sst2", "split": "train", "rows": 3, "labels": {"negative": 0, "positive": 3},
                   "tokens": {"p50": 5, "p90": 5, "p99": 5, "max": 5}, "over_max_length": 3}


def test_summary_command_builtin(capsys):
    tiny_tokenizer()
    rc = cli.main(["data", "summary", "--tasks", "sst2", "squad_v2", "model.name=tiny",
                   "data.builtin_train_size=100", "data.builtin_test_size=20"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "sst2" in out and "squad_v2" in out and "p99" in out


def test_summary_with_a_real_tokenizer(capsys):
    model_dir = STORIES
    if not model_dir.is_dir():
        pytest.skip(f"{model_dir} not available")
    tiny_tokenizer()
    rc = cli.main(["data", "summary", "--tasks", "rte", f"model.name={model_dir}",
                   "data.builtin_train_size=50", "data.builtin_test_size=10"])
    assert rc == 0
    assert "rte" in capsys.readouterr().out


def test_summary_without_lengths_needs_no_tokenizer(capsys):
    rc = cli.main(["data", "summary", "--no-lengths", "--tasks", "mrpc", "model.name=/nonexistent",
                   "data.builtin_train_size=100", "data.builtin_test_size=20"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "p50" not in out and "not_equivalent" in out
