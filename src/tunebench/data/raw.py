"""Readers for the official raw formats: GLUE TSV (glue_data layout) and SQuAD v2.0 JSON.

Pure of side effects apart from reading the given file; every problem is one TunebenchError line naming
the file and the TSV line (1-based, header = line 1) or the SQuAD question id.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tunebench.data.tasks import TaskSpec
from tunebench.errors import TunebenchError

# official dev -> our "test" split: GLUE test labels are hidden, so dev is what everyone reports on.
GLUE_FILES = {"train": "train.tsv", "test": "dev.tsv"}
# the full official train file wins over the partial one when both are present.
SQUAD_TRAIN_FILES = ("train-v2.0.json", "train-v2.0.partial.json")
SQUAD_TEST_FILE = "dev-v2.0.json"


def find_glue_files(spec: TaskSpec, glue_dir: str | Path) -> dict[str, Path]:
    """{"train": .../SST-2/train.tsv, "test": .../SST-2/dev.tsv}; TunebenchError naming what is missing."""
    root = Path(glue_dir)
    if not root.is_dir():
        raise TunebenchError(f"{root}: GLUE folder not found (expected {spec.raw_dir}/train.tsv and dev.tsv in it)")
    folder = root / spec.raw_dir
    if not folder.is_dir():
        raise TunebenchError(f"{folder}: {spec.name} folder not found in the GLUE folder {root}")
    files = {split: folder / name for split, name in GLUE_FILES.items()}
    for path in files.values():
        if not path.is_file():
            raise TunebenchError(f"{path}: {spec.name} file not found")
    return files


def find_squad_files(squad_dir: str | Path) -> dict[str, Path]:
    root = Path(squad_dir)
    if not root.is_dir():
        raise TunebenchError(f"{root}: SQuAD folder not found (expected {SQUAD_TRAIN_FILES[0]} and {SQUAD_TEST_FILE})")
    train = next((root / n for n in SQUAD_TRAIN_FILES if (root / n).is_file()), None)
    if train is None:
        raise TunebenchError(f"{root}: no SQuAD v2 train file ({' or '.join(SQUAD_TRAIN_FILES)})")
    test = root / SQUAD_TEST_FILE
    if not test.is_file():
        raise TunebenchError(f"{test}: SQuAD v2 dev file not found")
    return {"train": train, "test": test}


def is_partial_file(path: Path) -> bool:
    """The offline copy of SQuAD train holds only its first articles; its counts are expected to differ."""
    return ".partial." in path.name


# ---------------------------------------------------------------- GLUE TSV


def read_glue_tsv(path: str | Path, spec: TaskSpec) -> list[dict]:
    """Canonical classification records from a GLUE train/dev TSV.

    Tab-separated with quoting disabled (the text contains quote characters); utf-8-sig because MRPC's
    header starts with a BOM. `idx` is the 0-based data row, as in the Hugging Face glue loader.
    """
    path = Path(path)
    rows = _read_tsv_rows(path)
    if not rows:
        raise TunebenchError(f"{path}: empty file (expected a header line)")
    (_, header), body = rows[0], rows[1:]
    columns = _column_positions(path, header, (*spec.raw_text_fields, spec.raw_label_field))
    records = []
    for line, row in body:
        if len(row) != len(header):
            raise TunebenchError(
                f"{path}:{line}: expected {len(header)} tab-separated columns ({', '.join(header)}), "
                f"found {len(row)}"
            )
        records.append(_glue_record(path, line, row, columns, spec, idx=len(records)))
    return records


def _read_tsv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) for each non-blank line."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            return [(reader.line_num, row) for row in reader if row]
    except FileNotFoundError:
        raise TunebenchError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise TunebenchError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except csv.Error as e:
        raise TunebenchError(f"{path}: cannot parse as TSV ({e})") from None


def _column_positions(path: Path, header: list[str], wanted: tuple[str, ...]) -> list[int]:
    missing = [c for c in wanted if c not in header]
    if missing:
        raise TunebenchError(
            f"{path}:1: missing column(s) {', '.join(missing)} in the header ({', '.join(header)})"
        )
    return [header.index(c) for c in wanted]


def _glue_record(path: Path, line: int, row: list[str], columns: list[int], spec: TaskSpec, idx: int) -> dict:
    *text_cols, label_col = columns
    texts = [row[c] for c in text_cols]
    for name, text in zip(spec.raw_text_fields, texts, strict=True):
        if not text.strip():
            raise TunebenchError(f"{path}:{line}: empty text in column {name}")
    raw_label = row[label_col]
    if raw_label not in spec.raw_label_values:
        raise TunebenchError(
            f"{path}:{line}: unknown label {raw_label!r} (expected {' or '.join(spec.raw_label_values)})"
        )
    return {
        "idx": idx,
        "text_a": texts[0],
        "text_b": texts[1] if len(texts) > 1 else None,
        "label": spec.raw_label_values.index(raw_label),
    }


# ---------------------------------------------------------------- SQuAD JSON


def read_squad_json(path: str | Path) -> tuple[list[dict], int]:
    """Canonical QA records (the HF squad_v2 layout) and the number of questions marked is_impossible.

    Every answer must equal context[answer_start:answer_start + len(text)], and is_impossible must agree with
    an empty answer list: either mismatch would silently train or score on the wrong span.
    """
    path = Path(path)
    data = _load_json(path)
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        raise TunebenchError(f"{path}: not a SQuAD file (no top-level 'data' list)")
    records: list[dict] = []
    unanswerable = 0
    for a, article in enumerate(articles):
        title = _field(path, f"article {a}", article, "title", str)
        for p, paragraph in enumerate(_field(path, f"article {title!r}", article, "paragraphs", list)):
            where = f"article {title!r} paragraph {p}"
            context = _field(path, where, paragraph, "context", str)
            for qa in _field(path, where, paragraph, "qas", list):
                record, impossible = _squad_record(path, where, title, context, qa)
                records.append(record)
                unanswerable += impossible
    return records, unanswerable


def _load_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise TunebenchError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise TunebenchError(f"{path}: invalid JSON at line {e.lineno} column {e.colno} ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise TunebenchError(f"{path}: not UTF-8 text (byte {e.start})") from None


def _field(path: Path, where: str, obj, key: str, kind: type):
    if not isinstance(obj, dict) or not isinstance(obj.get(key), kind):
        raise TunebenchError(f"{path}: {where}: missing or invalid {key!r} (expected {kind.__name__})")
    return obj[key]


def _squad_record(path: Path, where: str, title: str, context: str, qa) -> tuple[dict, bool]:
    qid = _field(path, where, qa, "id", str)
    at = f"question id {qid}"
    question = _field(path, at, qa, "question", str)
    if not question.strip():
        raise TunebenchError(f"{path}: {at}: empty question")
    answers = _field(path, at, qa, "answers", list)
    impossible = qa.get("is_impossible", not answers)  # SQuAD v1 files have no flag
    if bool(impossible) != (not answers):
        state = "is_impossible but has answers" if impossible else "has no answers but is not is_impossible"
        raise TunebenchError(f"{path}: {at}: {state}")
    texts, starts = [], []
    for answer in answers:
        text = _field(path, at, answer, "text", str)
        start = _field(path, at, answer, "answer_start", int)
        if not text or start < 0 or context[start:start + len(text)] != text:
            found = context[start:start + len(text)]
            raise TunebenchError(
                f"{path}: {at}: answer {text!r} at {start} does not match its context ({found!r})"
            )
        texts.append(text)
        starts.append(start)
    record = {"id": qid, "title": title, "context": context, "question": question,
              "answers": {"text": texts, "answer_start": starts}}
    return record, bool(impossible)
