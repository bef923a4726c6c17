"""Evaluation beside the engine: a trained Trainer's predictions on a split, scored with the pure metrics.

`make_compute_metrics` is what the Trainer calls on validation for model selection; `evaluate_split` scores
a whole split after training (metrics, per-example predictions and, for SQuAD v2, the null threshold chosen
on validation and then applied to test); `score_qa` turns (start, end) logits into official SQuAD v2 scores.
The metrics themselves are in tunebench.metrics (values in, values out).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tunebench.config import Config
from tunebench.data.tasks import TaskSpec
from tunebench.metrics.classification import classification_metrics
from tunebench.metrics.qa_postprocess import (
    apply_null_threshold,
    choose_null_threshold,
    postprocess_qa_predictions,
)
from tunebench.metrics.squad import squad_v2_scores

if TYPE_CHECKING:    # annotations only: train.py imports this module, not the reverse
    from transformers import Trainer

    from tunebench.train import Split


def evaluate_split(trainer: Trainer, task: TaskSpec, split: Split, cfg: Config,
                   null_threshold: float | None = None,
                   outputs: tuple | None = None) -> tuple[dict, list[dict], float | None]:
    """Metrics, per-example predictions and (SQuAD, when not given) the null threshold chosen here.

    `outputs`: the Trainer's (predictions, loss) on this split by the current weights, when already computed
    (the in-loop validation pass of the restored checkpoint); otherwise the split is predicted here."""
    if outputs is None:
        compute, trainer.compute_metrics = trainer.compute_metrics, None  # bound to validation; scored here
        try:
            out = trainer.predict(split.dataset(), metric_key_prefix="eval")
        finally:
            trainer.compute_metrics = compute
        outputs = (out.predictions, out.metrics.get("eval_loss"))
    predictions, loss = outputs
    loss = float("nan") if loss is None else float(loss)
    if not task.is_qa:
        preds = classification_logits(predictions).argmax(-1)
        labels = [r["label"] for r in split.records]
        metrics = {**classification_metrics(task.name, labels, preds.tolist()), "loss": loss}
        rows = [{"idx": r["idx"], "label": r["label"], "prediction": int(p)}
                for r, p in zip(split.records, preds, strict=True)]
        return metrics, rows, None
    raw, answers, null_threshold, metrics, per_q = score_qa(split, cfg, predictions, null_threshold)
    metrics = {**metrics, "loss": loss}
    rows = [{"id": r["id"], "prediction": answers[r["id"]], "null_score_diff": raw[r["id"]]["null_score_diff"],
             **per_q[r["id"]]} for r in split.records]
    return metrics, rows, null_threshold


def make_compute_metrics(task: TaskSpec, split: Split, cfg: Config):
    """Validation metrics inside the Trainer (model selection); SQuAD uses the threshold best on this split."""
    if not task.is_qa:
        labels = [r["label"] for r in split.records]

        def compute(ep) -> dict:
            preds = classification_logits(ep.predictions).argmax(-1)
            return classification_metrics(task.name, labels, preds.tolist())
        return compute

    def compute_qa(ep) -> dict:
        metrics = score_qa(split, cfg, ep.predictions)[3]
        return {k: v for k, v in metrics.items() if not k.endswith("total")}
    return compute_qa


def score_qa(split: Split, cfg: Config, logits, null_threshold: float | None = None):
    """SQuAD v2 from (start, end) logits: raw n-best answers, thresholded answers, the threshold (chosen on
    this split when not given: validation only), official metrics and per-question scores."""
    start_logits, end_logits = qa_logits(logits)
    raw = postprocess_qa_predictions(split.records, split.features, start_logits, end_logits,
                                     cfg.qa.n_best_size, cfg.qa.max_answer_length)
    if null_threshold is None:
        null_threshold, _ = choose_null_threshold(split.records, raw)
    answers = apply_null_threshold(raw, null_threshold)
    metrics, per_q = squad_v2_scores(split.records, answers)
    return raw, answers, null_threshold, metrics, per_q


# The Trainer hands predictions over per batch (training.eval_do_concat_batches=False, set by the engine): its
# default concatenates every batch onto the growing whole, padded to the longest sequence so far, which is
# quadratic in the number of batches (50 s of a 600 s SQuAD v2 evaluation of 57,708 windows, docs/bench.md).
# These two accept either form and return per-example values; the numbers are the same either way.


def classification_logits(predictions) -> np.ndarray:
    """(N, C) logits from the Trainer's predictions: one array, or a list of per-batch (B, C) arrays."""
    if isinstance(predictions, list):
        return np.concatenate([np.asarray(b) for b in predictions])
    return np.asarray(predictions)


def qa_logits(predictions) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-feature start and end logit rows from the Trainer's predictions: a (start, end) pair of padded
    (N, T) arrays, or a list of per-batch (start, end) pairs. A row keeps its batch's padding, which
    post-processing skips (positions past the feature's offset_mapping)."""
    batches = predictions if isinstance(predictions, list) else [predictions]
    starts = [row for start, _ in batches for row in np.asarray(start)]
    ends = [row for _, end in batches for row in np.asarray(end)]
    return starts, ends
