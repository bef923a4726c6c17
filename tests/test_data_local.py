"""`data import` on the official files in ../shared/data, the loading API on the cache, and bad input."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tunebench import cli
from tunebench.config import load_config
from tunebench.data import load_task_splits
from tunebench.data.cache import read_task_cache
from tunebench.errors import TunebenchError
from tunebench.io import read_jsonl

# official figures (GLUE dev and SQuAD dev are our test splits)
OFFICIAL = {"sst2": (67_349, 872), "mrpc": (3_668, 408), "rte": (2_490, 277), "squad_v2": (4_719, 11_873)}
LABELS = {  # (train, test) label counts in label-id order
    "sst2": ({0: 29_780, 1: 37_569}, {0: 428, 1: 444}),
    "mrpc": ({0: 1_194, 1: 2_474}, {0: 129, 1: 279}),
    "rte": ({0: 1_249, 1: 1_241}, {0: 146, 1: 131}),
}


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = cli.main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def cache_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in data_dir.rglob("*") if p.is_file()) if data_dir.exists() else []


@pytest.fixture(scope="module")
def imported(shared_data: Path, tmp_path_factory) -> Path:
    """All four tasks imported once from the official files."""
    data_dir = tmp_path_factory.mktemp("cache") / "data"
    rc = cli.main(["data", "import", "--glue-dir", str(shared_data / "glue"),
                   "--squad-dir", str(shared_data / "squad_v2"), f"data.dir={data_dir}"])
    assert rc == 0
    return data_dir


def local_cfg(data_dir: Path, *overrides: str):
    return load_config([], ["data.source=local", f"data.dir={data_dir}", *overrides])


# ---------------------------------------------------------------- the official files


@pytest.mark.parametrize("task", list(OFFICIAL))
def test_import_gives_the_official_counts(imported, task):
    train, test = (read_jsonl(imported / task / f"{s}.jsonl") for s in ("train", "test"))
    assert (len(train), len(test)) == OFFICIAL[task]
    manifest = json.loads((imported / task / "manifest.json").read_text())
    assert manifest["rows"] == {"train": len(train), "test": len(test)}
    assert manifest["source"] == "local"
    assert "official dev split is the test split" in manifest["split_protocol"]
    if task in LABELS:
        assert (Counter(r["label"] for r in train), Counter(r["label"] for r in test)) == LABELS[task]
        assert train[0].keys() == {"idx", "text_a", "text_b", "label"}
        assert [r["idx"] for r in train[:3]] == [0, 1, 2]


def test_import_records_input_checksums(imported, shared_data):
    sums = dict(reversed(line.split("  ")) for line in (shared_data.parent / "SHA256SUMS").read_text().splitlines())
    for task, files in {"sst2": ("glue/SST-2/train.tsv", "glue/SST-2/dev.tsv"),
                        "squad_v2": ("squad_v2/train-v2.0.partial.json", "squad_v2/dev-v2.0.json")}.items():
        inputs = json.loads((imported / task / "manifest.json").read_text())["inputs"]
        assert [i["sha256"] for i in inputs] == [sums[f"data/{f}"] for f in files]


def test_squad_counts_and_layout(imported):
    train, test = (read_jsonl(imported / "squad_v2" / f"{s}.jsonl") for s in ("train", "test"))
    assert sum(not r["answers"]["text"] for r in test) == 5_945
    assert sum(not r["answers"]["text"] for r in train) == 348
    assert len({r["title"] for r in test}) == 35 and len({r["title"] for r in train}) == 10
    assert test[0].keys() == {"id", "title", "context", "question", "answers"}
    manifest = json.loads((imported / "squad_v2" / "manifest.json").read_text())
    assert manifest["unanswerable"] == {"train": 348, "test": 5_945}
    assert manifest["partial"] == ["train"]


def test_text_is_kept_verbatim(imported):
    """Quotes survive (QUOTE_NONE), MRPC's BOM is not part of a column name, SST-2 keeps its trailing space."""
    sst2 = read_jsonl(imported / "sst2" / "train.jsonl")
    mrpc = read_jsonl(imported / "mrpc" / "train.jsonl")
    rte = read_jsonl(imported / "rte" / "train.jsonl")
    assert sst2[0] == {"idx": 0, "text_a": "hide new secretions from the parental units ", "text_b": None, "label": 0}
    assert mrpc[0]["text_a"].startswith('Amrozi accused his brother , whom he called " the witness "')
    assert mrpc[0]["label"] == 1
    assert rte[0] == {"idx": 0, "text_a": "No Weapons of Mass Destruction Found in Iraq Yet.",
                      "text_b": "Weapons of Mass Destruction Found in Iraq.", "label": 1}


def test_validate_passes_on_the_official_data(imported, capsys):
    rc, out, err = run_cli(capsys, "data", "validate", "data.source=local", f"data.dir={imported}")
    assert rc == 0, out + err
    assert "0 error(s)" in out


def test_load_task_splits_from_the_cache(imported):
    splits = load_task_splits(local_cfg(imported), "sst2")
    assert {s: len(splits[s]) for s in splits} == {"train": 60_614, "validation": 6_735, "test": 872}
    train, val = set(splits["train"]["text_a"]), set(splits["validation"]["text_a"])
    assert not train & val  # SST-2's repeated sentences stay on one side
    assert Counter(splits["validation"]["label"]) == {0: 2_977, 1: 3_758}  # proportional: 2,977.97 : 3,757.03

    squad = load_task_splits(local_cfg(imported, "data.max_eval_examples=500"), "squad_v2")
    # the partial train file's 10 articles cannot balance unanswerable questions: carved by context instead
    assert not set(squad["train"]["context"]) & set(squad["validation"]["context"])
    assert len(squad["test"]) == 500
    assert sum(not a["text"] for a in squad["test"]["answers"]) == 250  # 5,945 / 11,873 of 500, stratified
    assert sum(not a["text"] for a in squad["validation"]["answers"]) > 0


def test_subsets_are_seeded_and_stratified(imported):
    cfg = local_cfg(imported, "data.max_train_examples=1000", "data.max_eval_examples=100")
    a, b = load_task_splits(cfg, "mrpc"), load_task_splits(cfg, "mrpc")
    assert [len(a[s]) for s in ("train", "validation", "test")] == [1_000, 100, 100]
    assert a["train"]["idx"] == b["train"]["idx"]
    assert Counter(a["train"]["label"]) == {1: 674, 0: 326}   # 2,226 : 1,075 of the carved train
    assert Counter(a["test"]["label"]) == {1: 68, 0: 32}      # 279 : 129


# ---------------------------------------------------------------- sources and the missing cache


def test_missing_cache_names_the_command(tmp_path):
    with pytest.raises(TunebenchError, match=r"no sst2 data cache; run `tunebench data download --tasks sst2"):
        load_task_splits(load_config([], ["data.source=hub", f"data.dir={tmp_path}"]), "sst2")
    with pytest.raises(TunebenchError, match=r"manifest.json: .*tunebench data import --squad-dir DIR"):
        load_task_splits(local_cfg(tmp_path), "squad_v2")


def test_local_source_imports_automatically(shared_data, tmp_path):
    cfg = local_cfg(tmp_path / "data", f"data.glue_dir={shared_data / 'glue'}")
    splits = load_task_splits(cfg, "rte")
    assert len(splits["train"]) + len(splits["validation"]) == 2_490
    assert (tmp_path / "data" / "rte" / "manifest.json").is_file()


def test_a_torn_cache_is_detected(imported, tmp_path):
    shutil.copytree(imported / "rte", tmp_path / "rte")
    (tmp_path / "rte" / "test.jsonl").write_text("")
    with pytest.raises(TunebenchError, match="test.jsonl: does not match its manifest"):
        read_task_cache(tmp_path, "rte", "tunebench data import")


# ---------------------------------------------------------------- bad input


def glue_copy(shared_data: Path, root: Path, folder: str, rows: int = 20) -> Path:
    """The first `rows` data lines of a GLUE task's train.tsv and dev.tsv (MRPC keeps its BOM)."""
    (root / folder).mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        lines = (shared_data / "glue" / folder / name).read_bytes().split(b"\n")[: rows + 1]
        (root / folder / name).write_bytes(b"\n".join(lines) + b"\n")
    return root


def edit_line(path: Path, line: int, edit) -> None:
    """Apply edit(list of fields) to a 1-based line of a TSV file."""
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[line - 1] = "\t".join(edit(lines[line - 1].split("\t")))
    path.write_text("\n".join(lines), encoding="utf-8")


def squad_copy(shared_data: Path, root: Path, train_name: str = "train-v2.0.partial.json") -> Path:
    """Two paragraphs of the first article of each official file."""
    root.mkdir(parents=True)
    for src, dst in (("train-v2.0.partial.json", train_name), ("dev-v2.0.json", "dev-v2.0.json")):
        data = json.loads((shared_data / "squad_v2" / src).read_text(encoding="utf-8"))
        article = data["data"][0]
        small = {"version": data["version"], "data": [{**article, "paragraphs": article["paragraphs"][:2]}]}
        (root / dst).write_text(json.dumps(small), encoding="utf-8")
    return root


def edit_squad(path: Path, edit) -> str:
    """Apply edit(first qa with an answer, its paragraph) and return the question id."""
    data = json.loads(path.read_text(encoding="utf-8"))
    paragraph, qa = next((p, q) for p in data["data"][0]["paragraphs"] for q in p["qas"] if q["answers"])
    edit(qa, paragraph)
    path.write_text(json.dumps(data), encoding="utf-8")
    return qa["id"]


def import_args(tmp_path: Path, *args: str) -> list[str]:
    return ["data", "import", *args, f"data.dir={tmp_path / 'data'}"]


def test_small_copies_import_cleanly(shared_data, tmp_path, capsys):
    """The positive control for the cases below; a full-named SQuAD train file is not treated as partial."""
    glue = glue_copy(shared_data, tmp_path / "glue", "MRPC")
    squad = squad_copy(shared_data, tmp_path / "squad", train_name="train-v2.0.json")
    rc, out, err = run_cli(capsys, *import_args(tmp_path, "--glue-dir", str(glue), "--squad-dir", str(squad),
                                                "--tasks", "mrpc", "squad_v2"))
    assert rc == 0, err
    assert "mrpc: 20 train / 20 test" in out
    assert "warning: squad_v2 train:" in err and "official 130,319" in err  # counts differ: a warning only
    manifest = json.loads((tmp_path / "data" / "squad_v2" / "manifest.json").read_text())
    assert manifest["partial"] == [] and manifest["inputs"][0]["path"].endswith("train-v2.0.json")


def test_config_keys_give_the_folders(shared_data, tmp_path, capsys):
    glue = glue_copy(shared_data, tmp_path / "glue", "RTE")
    rc, out, _ = run_cli(capsys, *import_args(tmp_path, f"data.glue_dir={glue}"))
    assert rc == 0
    assert out.startswith("rte: 20 train / 20 test")  # by default, the GLUE tasks whose folder is there
    assert [p.name for p in cache_files(tmp_path / "data")] == ["manifest.json", "test.jsonl", "train.jsonl"]


def case_columns(shared_data, tmp_path):
    glue = glue_copy(shared_data, tmp_path / "glue", "SST-2")
    edit_line(glue / "SST-2" / "train.tsv", 5, lambda f: [*f, "extra"])
    return ["--glue-dir", str(glue), "--tasks", "sst2"], \
        r"SST-2/train.tsv:5: expected 2 tab-separated columns \(sentence, label\), found 3$"


def case_label(shared_data, tmp_path):
    glue = glue_copy(shared_data, tmp_path / "glue", "RTE")
    edit_line(glue / "RTE" / "dev.tsv", 3, lambda f: [*f[:-1], "maybe"])
    return ["--glue-dir", str(glue), "--tasks", "rte"], \
        r"RTE/dev.tsv:3: unknown label 'maybe' \(expected entailment or not_entailment\)$"


def case_empty_text(shared_data, tmp_path):
    glue = glue_copy(shared_data, tmp_path / "glue", "SST-2")
    edit_line(glue / "SST-2" / "train.tsv", 4, lambda f: [" ", f[1]])
    return ["--glue-dir", str(glue), "--tasks", "sst2"], r"SST-2/train.tsv:4: empty text in column sentence$"


def case_header(shared_data, tmp_path):
    glue = glue_copy(shared_data, tmp_path / "glue", "MRPC")
    edit_line(glue / "MRPC" / "train.tsv", 1, lambda f: ["\ufeffLabel", *f[1:]])
    return ["--glue-dir", str(glue), "--tasks", "mrpc"], r"MRPC/train.tsv:1: missing column\(s\) Quality in the header"


def case_missing_file(shared_data, tmp_path):
    glue = glue_copy(shared_data, tmp_path / "glue", "MRPC")
    (glue / "MRPC" / "dev.tsv").unlink()
    return ["--glue-dir", str(glue), "--tasks", "mrpc"], r"MRPC/dev.tsv: mrpc file not found$"


def case_missing_folder(shared_data, tmp_path):
    return ["--glue-dir", str(tmp_path / "nowhere"), "--tasks", "rte"], r"nowhere: GLUE folder not found"


def case_no_squad_train(shared_data, tmp_path):
    squad = squad_copy(shared_data, tmp_path / "squad")
    (squad / "train-v2.0.partial.json").unlink()
    return ["--squad-dir", str(squad)], r"squad: no SQuAD v2 train file \(train-v2.0.json or train-v2.0.partial.json\)$"


def case_invalid_json(shared_data, tmp_path):
    squad = squad_copy(shared_data, tmp_path / "squad")
    path = squad / "dev-v2.0.json"
    path.write_text(path.read_text(encoding="utf-8")[:5000], encoding="utf-8")
    return ["--squad-dir", str(squad)], r"dev-v2.0.json: invalid JSON at line 1 column \d+ \(Unterminated string"


def case_answer_mismatch(shared_data, tmp_path):
    squad = squad_copy(shared_data, tmp_path / "squad")
    qid = edit_squad(squad / "train-v2.0.partial.json",
                     lambda qa, _: qa["answers"][0].update(answer_start=qa["answers"][0]["answer_start"] + 1))
    pattern = rf"train-v2.0.partial.json: question id {qid}: answer .* does not match its context"
    return ["--squad-dir", str(squad)], pattern


def case_impossible_with_answers(shared_data, tmp_path):
    squad = squad_copy(shared_data, tmp_path / "squad")
    qid = edit_squad(squad / "dev-v2.0.json", lambda qa, _: qa.update(is_impossible=True))
    return ["--squad-dir", str(squad)], rf"dev-v2.0.json: question id {qid}: is_impossible but has answers$"


def case_duplicate_id(shared_data, tmp_path):
    squad = squad_copy(shared_data, tmp_path / "squad")
    qid = edit_squad(squad / "dev-v2.0.json",
                     lambda qa, paragraph: paragraph["qas"].append(dict(qa)))
    return ["--squad-dir", str(squad)], rf"dev-v2.0.json: question id {qid} appears 2 times$"


def case_unknown_task(shared_data, tmp_path):
    return ["--glue-dir", str(shared_data / "glue"), "--tasks", "sst3"], r"unknown task 'sst3'; known tasks: "


def case_one_bad_task_writes_nothing(shared_data, tmp_path):
    glue = glue_copy(shared_data, tmp_path / "glue", "SST-2")
    glue_copy(shared_data, tmp_path / "glue", "RTE")
    edit_line(glue / "RTE" / "train.tsv", 21, lambda f: f[:2])  # the last task read, after a good one
    return ["--glue-dir", str(glue), "--tasks", "sst2", "rte"], r"RTE/train.tsv:21: expected 4 tab-separated"


BAD_INPUT = [case_columns, case_label, case_empty_text, case_header, case_missing_file, case_missing_folder,
             case_no_squad_train, case_invalid_json, case_answer_mismatch, case_impossible_with_answers,
             case_duplicate_id, case_unknown_task, case_one_bad_task_writes_nothing]


@pytest.mark.parametrize("case", BAD_INPUT, ids=lambda c: c.__name__.removeprefix("case_"))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, shared_data, tmp_path, capsys):
    args, pattern = case(shared_data, tmp_path)
    rc, out, err = run_cli(capsys, *import_args(tmp_path, *args))
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tunebench: error: ")
    assert re.search(pattern, lines[0]), lines[0]
    assert cache_files(tmp_path / "data") == []
