"""GLUE classification metrics against hand computation."""

from __future__ import annotations

import warnings

import pytest

from tunebench.errors import TunebenchError
from tunebench.metrics.classification import classification_metrics

LABELS = [1, 0, 1, 1, 0]
PREDS = [1, 0, 0, 1, 1]
# class 1: tp 2, fp 1, fn 1 -> F1 2/3; class 0: tp 1, fp 1, fn 1 -> F1 1/2.


@pytest.mark.parametrize("task", ["sst2", "rte"])
def test_accuracy_and_macro_f1_by_hand(task):
    out = classification_metrics(task, LABELS, PREDS)
    assert list(out) == ["accuracy", "macro_f1"]
    assert out["accuracy"] == pytest.approx(3 / 5)
    assert out["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert all(type(v) is float for v in out.values())


def test_mrpc_f1_is_positive_class():
    out = classification_metrics("mrpc", LABELS, PREDS)
    assert list(out) == ["f1", "accuracy"]  # primary metric first, as in the task table
    assert out["f1"] == pytest.approx(2 / 3)
    assert out["accuracy"] == pytest.approx(0.6)
    # Swapping the classes changes F1 of class 1: tp 1, fp 1, fn 1 -> 1/2.
    flipped = classification_metrics("mrpc", [1 - v for v in LABELS], [1 - v for v in PREDS])
    assert flipped["f1"] == pytest.approx(1 / 2)


def test_single_predicted_class_no_warnings():
    labels = [0, 1, 1, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        all_pos = classification_metrics("sst2", labels, [1, 1, 1, 1])
        mrpc_pos = classification_metrics("mrpc", labels, [1, 1, 1, 1])
        mrpc_neg = classification_metrics("mrpc", labels, [0, 0, 0, 0])
        one_class = classification_metrics("mrpc", [0, 0], [0, 0])
    # class 1: P 1/2, R 1 -> 2/3; class 0 never predicted -> F1 0 (zero_division=0).
    assert all_pos == {"accuracy": 0.5, "macro_f1": pytest.approx(1 / 3)}
    assert mrpc_pos["f1"] == pytest.approx(2 / 3)
    assert mrpc_neg == {"f1": 0.0, "accuracy": 0.5}
    assert one_class == {"f1": 0.0, "accuracy": 1.0}  # no positives anywhere: F1 undefined -> 0


def test_macro_f1_over_present_classes():
    assert classification_metrics("rte", [1, 1], [1, 1])["macro_f1"] == 1.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="2 labels but 1"):
        classification_metrics("sst2", [0, 1], [0])
    with pytest.raises(ValueError, match="no examples"):
        classification_metrics("sst2", [], [])
    with pytest.raises(ValueError, match="not a classification"):
        classification_metrics("squad_v2", [0], [0])
    with pytest.raises(TunebenchError, match="unknown task"):
        classification_metrics("cola", [0], [0])
