"""Data checks (pure findings) and `data validate` exit codes on bad caches."""

from __future__ import annotations

import pytest

from tunebench import cli
from tunebench.config import DataConfig
from tunebench.data.cache import write_task_cache
from tunebench.data.splits import Carve
from tunebench.data.tasks import get_task
from tunebench.data.validate import (
    check_answers,
    check_carve,
    check_duplicates,
    check_empty,
    check_labels,
    check_overlap,
    check_rows,
    check_unanswerable,
    check_unique_ids,
    count_errors,
    validate_task,
    worst_level,
)

SST2, MRPC, SQUAD = get_task("sst2"), get_task("mrpc"), get_task("squad_v2")


def cls(idx: int, text: str, label: int = 0, text_b: str | None = None) -> dict:
    return {"idx": idx, "text_a": text, "text_b": text_b, "label": label}


def qa(qid: str, context: str = "the cat is red .", answer: str | None = "red", title: str = "t") -> dict:
    answers = {"text": [answer], "answer_start": [context.find(answer)]} if answer else {"text": [], "answer_start": []}
    return {"id": qid, "title": title, "context": context, "question": "what color is the cat ?", "answers": answers}


def test_labels():
    assert check_labels(SST2, "train", [cls(0, "a", 0), cls(1, "b", 1)]).level == "ok"
    assert check_labels(SST2, "train", [cls(0, "a", 1), cls(1, "b", 1)]).level == "warning"  # a class missing
    bad = check_labels(SST2, "train", [cls(0, "a", 0), cls(7, "b", 2)])
    assert (bad.level, bad.message) == ("error", "unknown label 2 at idx 7 (expected 0..1)")
    assert check_labels(SQUAD, "test", [qa("1"), qa("2", answer=None)]).message == "answerable 1, unanswerable 1"


def test_empty_texts():
    assert check_empty(SST2, "train", [cls(0, "fine")]).level == "ok"  # SST-2 has no text_b
    assert check_empty(MRPC, "train", [cls(3, "a", text_b="  ")]).message == "empty text_b at idx 3"
    assert check_empty(SST2, "test", []).message == "no rows"
    assert check_empty(SQUAD, "train", [dict(qa("q1"), question="")]).message == "empty question at question id q1"


def test_duplicates_are_warnings_with_conflicts_counted():
    records = [cls(0, "great", 1), cls(1, "great", 0), cls(2, "fine", 1), cls(3, "fine", 1), cls(4, "x", 0)]
    f = check_duplicates(SST2, "train", records)
    assert (f.level, f.message) == ("warning", "2 repeated texts (1 with conflicting labels)")
    assert check_duplicates(SST2, "train", records[2:3]).level == "ok"


def test_squad_ids_answers_and_unanswerable():
    assert check_unique_ids(SQUAD, "test", [qa("a"), qa("a")]).message == "question id a appears 2 times"
    shifted = qa("b")
    shifted["answers"]["answer_start"] = [1]
    f = check_answers(SQUAD, "train", [qa("a"), shifted])
    assert (f.level, f.message) == ("error", "question id b: answer 'red' at 1 does not match its context")
    assert check_answers(SQUAD, "train", [qa("a"), qa("c", answer=None)]).message == "1 answers match their context"
    records = [qa("a"), qa("b", answer=None), qa("c", answer=None)]
    assert check_unanswerable(SQUAD, "test", records, flagged=2, official=None).level == "ok"
    assert check_unanswerable(SQUAD, "test", records, flagged=3, official=None).message == \
        "2 questions without answers but 3 marked is_impossible"
    assert check_unanswerable(SQUAD, "test", records, flagged=2, official=5_945).level == "error"


def test_overlap_between_splits_is_an_error():
    splits = {"train": [cls(0, "a"), cls(1, "b")], "validation": [cls(2, "c")], "test": [cls(3, "b"), cls(4, "d")]}
    findings = {f.split: f for f in check_overlap(SST2, splits)}
    assert findings["train/test"].level == "error" and findings["train/test"].message == "1 texts in both"
    assert findings["train/validation"].level == findings["validation/test"].level == "ok"
    squad = {"train": [qa("a", title="x")], "validation": [qa("b", "the dog is blue .", "blue", "y")],
             "test": [qa("a", "the cow is pink .", "pink", "z")]}
    findings = {f.split: f for f in check_overlap(SQUAD, squad)}
    assert findings["train/test"].message == "0 contexts, 1 question ids in both"


def test_row_counts():
    data = DataConfig()
    exact = check_rows(SST2, {"train": 100, "test": 20}, {"train": 90, "validation": 10, "test": 20},
                       {"train": 100, "test": 20}, set(), data)
    assert worst_level(exact) == "ok"
    short = check_rows(SST2, {"train": 99, "test": 20}, {"train": 89, "validation": 10, "test": 20},
                       {"train": 100, "test": 20}, set(), data)
    assert [f.message for f in short if f.level == "error"] == ["99 rows, expected 100"]
    partial = check_rows(SQUAD, {"train": 4_719, "test": 11_873}, {"train": 3_930, "validation": 789, "test": 11_873},
                         {"train": 130_319, "test": 11_873}, {"train"}, data)
    not_ok = [(f.level, f.message) for f in partial if f.level != "ok"]
    assert not_ok == [("warning", "4,719 of 130,319 (partial file)")]
    subset = check_rows(SST2, {"train": 100, "test": 20}, {"train": 30, "validation": 5, "test": 5},
                        {"train": 100, "test": 20}, set(), DataConfig(max_train_examples=30, max_eval_examples=5))
    assert [f.split for f in subset if f.level == "warning"] == ["train", "validation", "test"]
    assert count_errors(subset) == 0


def test_validate_task_collects_everything():
    splits = {"train": [qa("a", title="x"), qa("b", answer=None, title="x")],
              "validation": [qa("c", "the dog is blue .", "blue", "y")],
              "test": [qa("d", "the cow is pink .", "pink", "z"), qa("e", "the cow is pink .", None, "z")]}
    findings = validate_task(SQUAD, {"train": 3, "test": 2}, splits, {"train": 3, "test": 2},
                             {"source": "builtin"}, DataConfig())
    assert count_errors(findings) == 0
    assert {f.check for f in findings} == {"rows", "labels", "empty", "ids", "answers", "duplicates",
                                           "unanswerable", "overlap"}
    carve = Carve("article", {"train": [1, 2], "validation": [0, 1]})
    with_carve = validate_task(SQUAD, {"train": 3, "test": 2}, splits, {"train": 3, "test": 2},
                               {"source": "builtin"}, DataConfig(), carve)
    assert [f for f in with_carve if f not in findings] == [check_carve(SQUAD, carve)]


def test_carve_finding_names_the_grouping_and_both_shares():
    balanced = Carve("context", {"train": [317, 4_245], "validation": [31, 474]},
                     {"train": [160, 3_930], "validation": [188, 789]})
    f = check_carve(SQUAD, balanced)
    assert (f.split, f.check, f.level) == ("validation", "carve", "ok")
    assert f.message == ("grouped by context (paragraph), not article: the article carve left validation 23.8% "
                         "(188/789) unanswerable against train's 4.1% (160/3,930), more than 5 points apart; "
                         "unanswerable: validation 6.5% (31/474), train 7.5% (317/4,245)")
    apart = check_carve(SQUAD, Carve("context", {"train": [1, 100], "validation": [7, 100]},
                                     {"train": [0, 100], "validation": [8, 100]}))
    assert apart.level == "warning"   # 1% against 7%: still more than 5 points apart


def test_validate_shows_the_real_partial_train_carve(shared_data, tmp_path, capsys):
    squad = shared_data / "squad_v2"
    assert cli.main(["data", "import", "--squad-dir", str(squad), "--tasks", "squad_v2", f"data.dir={tmp_path}"]) == 0
    rc = cli.main(["data", "validate", "--tasks", "squad_v2", "data.source=local", f"data.dir={tmp_path}"])
    out = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert rc == 0
    assert "carve: grouped by context (paragraph), not article" in out
    assert "unanswerable: validation 6.5% (31/474), train 7.5% (317/4,245)" in out


@pytest.fixture
def leaky_cache(tmp_path):
    """A cache whose test split repeats a train text: loads fine, fails validation."""
    train = [cls(i, f"text {i}", i % 2, "h") for i in range(40)]
    test = [cls(0, "text 3", 1, "h"), cls(1, "other", 0, "h")]
    write_task_cache(tmp_path, "rte", {"train": train, "test": test}, "local", inputs=[])
    return tmp_path


def test_validate_exits_1_on_errors(leaky_cache, capsys):
    rc = cli.main(["data", "validate", "--tasks", "rte", "data.source=local", f"data.dir={leaky_cache}", "-v"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "1 texts in both" in out
    assert "40 rows, expected 2,490" in out and "2 rows, expected 277" in out
    assert "data validate: 3 error(s), 0 warning(s)" in out


def test_validate_bad_task_and_missing_cache_exit_2(tmp_path, capsys):
    assert cli.main(["data", "validate", "--tasks", "cola"]) == 2
    assert "unknown task 'cola'" in capsys.readouterr().err
    assert cli.main(["data", "validate", "data.source=hub", f"data.dir={tmp_path}"]) == 2
    assert "no data cache for source hub" in capsys.readouterr().err


def test_validate_builtin_passes(capsys):
    rc = cli.main(["data", "validate", "data.builtin_train_size=200", "data.builtin_test_size=40"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "0 error(s), 0 warning(s)" in out


def test_task_lists_accept_commas_and_give_back_overrides():
    from tunebench.commands.data import parse_tasks
    from tunebench.errors import TunebenchError

    assert parse_tasks(["sst2,rte", "mrpc", "data.dir=x", "rte"]) == (["sst2", "rte", "mrpc"], ["data.dir=x"])
    with pytest.raises(TunebenchError, match="unknown task 'qnli'"):
        parse_tasks(["qnli"])


def test_the_table_shows_the_datas_own_brackets(capsys):
    """The console renders markup: text from the data (`[neutral]`) would be read as a style tag and vanish."""
    from tunebench.commands.data import _print_findings
    from tunebench.data.validate import Finding

    _print_findings([Finding("rte", "train", "labels", "error", "label [neutral] is not a label")], "[caption]",
                    verbose=True)
    out = capsys.readouterr().out
    assert "[neutral]" in out and "[caption]" in out
