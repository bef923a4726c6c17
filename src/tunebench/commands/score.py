"""`tunebench score`: score an official-format predictions file against a task's test split (official dev).

SQuAD v2: {question_id: answer_text} ("" = no answer) -> the official SQuAD 2.0 metrics (0-100).
GLUE:     {idx: label} (idx = the example's row in the official dev file; label = int id or label name)
          -> the task's metrics (fractions in [0, 1]).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tunebench.commands._common import add_config_args, config_from_args
from tunebench.data.tasks import TaskSpec, get_task
from tunebench.errors import TunebenchError
from tunebench.metrics.squad import missing_prediction_ids, squad_v2_scores
from tunebench.tasks import task_names

_SHOW_IDS = 3  # ids quoted in an error or warning line


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score", help="score an official-format predictions file on a task's test split",
        description="Score PRED.json against the task's test split (the official dev set) and print the "
        "metrics as JSON. SQuAD v2: {question_id: answer} with \"\" for no answer, official SQuAD 2.0 metrics. "
        "GLUE: {idx: label} with the label id or name.",
    )
    names = task_names()
    p.add_argument("--task", required=True, help=f"{', '.join(names[:-1])} or {names[-1]}")
    p.add_argument("--predictions", required=True, metavar="PRED.json", help="predictions in the official format")
    add_config_args(p)
    p.set_defaults(func=_score)


def _score(args: argparse.Namespace) -> int:
    spec = get_task(args.task)
    predictions = read_predictions(args.predictions)
    cfg = config_from_args(args)
    from tunebench.data import load_task_splits  # heavy (datasets); only when scoring

    records = load_task_splits(cfg, spec.name)["test"]
    metrics, warnings = score_predictions(spec, list(records), predictions, source=args.predictions)
    for line in warnings:
        print(f"tunebench: warning: {line}", file=sys.stderr)
    print(json.dumps(metrics, indent=2))
    return 0


def read_predictions(path: str | Path) -> dict[str, Any]:
    """The predictions file as a JSON object; TunebenchError (one line naming the file) otherwise."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TunebenchError(f"{path}: no such predictions file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TunebenchError(f"{path}: cannot read predictions file ({e})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise TunebenchError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise TunebenchError(f"{path}: expected a JSON object {{id: prediction}}, got {type(obj).__name__}")
    return obj


def score_predictions(
    spec: TaskSpec, records: list[Mapping], predictions: Mapping[str, Any], source: str = "predictions"
) -> tuple[dict, list[str]]:
    """(metrics, warnings) for parsed predictions over the task's canonical test records; pure."""
    if spec.is_qa:
        return score_squad_predictions(records, predictions, source)
    return score_classification_predictions(spec, records, predictions, source), []


def score_squad_predictions(
    records: list[Mapping], predictions: Mapping[str, Any], source: str = "predictions"
) -> tuple[dict, list[str]]:
    """Official SQuAD 2.0 metrics; a question without a prediction is a warning and scored as "" (no answer)."""
    known = {r["id"] for r in records}
    unknown = [qid for qid in predictions if qid not in known]
    if unknown:
        raise TunebenchError(f"{source}: {len(unknown)} unknown question id(s): {_quote(unknown)}")
    not_text = [qid for qid, v in predictions.items() if not isinstance(v, str)]
    if not_text:
        raise TunebenchError(f"{source}: answers must be strings (\"\" = no answer); not for {_quote(not_text)}")
    warnings = []
    missing = missing_prediction_ids(records, predictions)
    if missing:
        # The official script prints "Missing prediction for <id>"; we warn once and score them as no answer.
        warnings.append(f"{source}: missing predictions for {len(missing)} of {len(records)} questions, "
                        f"scored as no answer: {_quote(missing)}")
    metrics, _ = squad_v2_scores(records, predictions)
    return metrics, warnings


def score_classification_predictions(
    spec: TaskSpec, records: list[Mapping], predictions: Mapping[str, Any], source: str = "predictions"
) -> dict[str, float]:
    """The task's metrics; every test example needs exactly one prediction (no "no answer" in GLUE)."""
    by_idx = _parse_indexed_labels(spec, predictions, source)
    known = {int(r["idx"]) for r in records}
    unknown = [i for i in by_idx if i not in known]
    if unknown:
        raise TunebenchError(f"{source}: {len(unknown)} unknown example index(es) for {spec.name}: "
                             f"{_quote(unknown)} (test has {len(records)} examples)")
    missing = [int(r["idx"]) for r in records if int(r["idx"]) not in by_idx]
    if missing:
        raise TunebenchError(f"{source}: missing predictions for {len(missing)} of {len(records)} "
                             f"{spec.name} examples: {_quote(missing)}")
    from tunebench.metrics.classification import classification_metrics  # sklearn: ~3 s import, keep CLI fast

    labels = [int(r["label"]) for r in records]
    return classification_metrics(spec.name, labels, [by_idx[int(r["idx"])] for r in records])


def _parse_indexed_labels(spec: TaskSpec, predictions: Mapping[str, Any], source: str) -> dict[int, int]:
    by_idx: dict[int, int] = {}
    for key, value in predictions.items():
        idx = _parse_index(key, source)
        if idx in by_idx:
            raise TunebenchError(f"{source}: example index {idx} appears twice ({key!r})")
        by_idx[idx] = _parse_label(spec, value, source, key)
    return by_idx


def _parse_index(key: str, source: str) -> int:
    if not (key.isascii() and key.isdigit()):
        raise TunebenchError(f"{source}: key {key!r} is not an example index (expected {{idx: label}})")
    return int(key)


def _parse_label(spec: TaskSpec, value: Any, source: str, key: str) -> int:
    # bool is an int subclass: true/false are not label ids.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < spec.num_labels:
        return value
    if isinstance(value, str) and value in spec.label_names:
        return spec.label_names.index(value)
    allowed = ", ".join(f"{i}/{name}" for i, name in enumerate(spec.label_names))
    raise TunebenchError(f"{source}: unknown label {value!r} for example {key} ({spec.name} labels: {allowed})")


def _quote(ids: Iterable) -> str:
    ids = list(ids)
    shown = ", ".join(repr(i) if isinstance(i, str) else str(i) for i in ids[:_SHOW_IDS])
    return shown + (f", ... ({len(ids) - _SHOW_IDS} more)" if len(ids) > _SHOW_IDS else "")
