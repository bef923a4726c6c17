"""GLUE classification metrics from per-example predictions, as fractions in [0, 1] (scikit-learn).

SST-2 and RTE: accuracy and macro F1. MRPC: accuracy and F1 of the positive class 1 ("equivalent"), as GLUE
reports it (run_glue / the GLUE `compute_metrics` use sklearn `f1_score` with the default pos_label=1).
`zero_division=0`: a class that is never predicted gets precision 0 (hence F1 0) instead of a warning.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from sklearn.metrics import accuracy_score, f1_score

from tunebench.data.tasks import get_task

CLASSIFICATION_METRICS = ("accuracy", "f1", "macro_f1")   # what a classification task's `metrics` may name


def classification_metrics(task: str, labels: Sequence[int], predictions: Sequence[int]) -> dict[str, float]:
    """Metrics named as in the task table (`TaskSpec.metrics`), e.g. {"accuracy": 0.91, "macro_f1": 0.90}.

    Macro F1 averages over the classes present in labels or predictions (scikit-learn's default): a class
    absent from both has no defined F1 and is not averaged in as 0.
    """
    spec = get_task(task)
    if spec.is_qa:
        raise ValueError(f"{task} is not a classification task")
    unknown = [name for name in spec.metrics if name not in CLASSIFICATION_METRICS]
    if unknown:   # a task table entry may name only the metrics computed here
        raise ValueError(f"{task}: metric {unknown[0]!r} is not computed here "
                         f"(known: {', '.join(CLASSIFICATION_METRICS)})")
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    if len(labels) == 0:
        raise ValueError("no examples to score")
    y_true, y_pred = [int(v) for v in labels], [int(v) for v in predictions]
    values = {"accuracy": float(accuracy_score(y_true, y_pred))}
    if "f1" in spec.metrics:
        values["f1"] = float(f1_score(y_true, y_pred, pos_label=1, average="binary", zero_division=0))
    if "macro_f1" in spec.metrics:
        values["macro_f1"] = float(f1_score(y_true, y_pred, average="macro", zero_division=0))
    return {name: values[name] for name in spec.metrics}


def majority_label(labels: Iterable[int]) -> int | None:
    """The most frequent label (the lower label id on a tie); None without labels. Runs record train's
    (metrics.json data.train_majority_label); the report's baseline is test's, the best constant predictor there."""
    counts = Counter(int(label) for label in labels)
    return min(counts, key=lambda label: (-counts[label], label)) if counts else None
