"""Evaluation beside the engine: a trained Trainer's predictions on a split, scored with the pure metrics.

`make_compute_metrics` is what the Trainer calls on validation for model selection; `evaluate_split` scores
a whole split after training (metrics, per-example predictions and, for SQuAD v2, the null threshold chosen
on validation and then applied to test); `score_qa` turns (start, end) logits into official SQuAD v2 scores.
The metrics themselves are in tunebench.metrics (values in, values out).

How the Trainer evaluates is here too, as a mixin the engine's Trainer (tunebench.train.SequentialEvalTrainer)
is built from: `SequentialEvalMixin` (sequential evaluation over length-sorted splits; the in-loop validation
outputs kept, so the final validation pass on the restored best checkpoint is not computed twice) and
`weights_fingerprint`. The engine imports this module, never the reverse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tunebench.checkpoints import step_of
from tunebench.config import Config
from tunebench.data.tasks import TaskSpec
from tunebench.features import Split
from tunebench.metrics.classification import classification_metrics
from tunebench.metrics.qa_postprocess import (
    apply_null_threshold,
    choose_null_threshold,
    postprocess_qa_predictions,
)
from tunebench.metrics.squad import squad_v2_scores

if TYPE_CHECKING:
    import torch
    from transformers import Trainer


class SequentialEvalMixin:
    """The Trainer's evaluation, as tunebench needs it (mixed in before transformers.Trainer):

    - sequential evaluation: transformers 5 evaluates with a LengthGroupedSampler when training groups by
      length, which returns predictions in a shuffled order; we evaluate sequentially over splits pre-sorted
      by length instead;
    - it keeps the in-loop validation outputs of the best checkpoint so far (and of the latest pass), so that
      the final validation pass, on the weights restored from that checkpoint, is not computed a second time:
      `restored_validation` (SQuAD v2 on a CPU: a validation pass is ~1,000-2,000 windows).
    """

    _capture_validation = False

    def _get_eval_sampler(self, eval_dataset):
        from torch.utils.data import SequentialSampler

        return SequentialSampler(eval_dataset) if eval_dataset is not None else None

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        """The in-loop validation pass (training, on the trainer's own eval_dataset) keeps its outputs."""
        self._capture_validation = eval_dataset is None and self.is_in_train
        try:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        finally:
            self._capture_validation = False

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        out = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if self._capture_validation:
            best = step_of(self.state.best_model_checkpoint)    # the best before this pass
            kept = {s: o for s, o in getattr(self, "_validation_outputs", {}).items() if s == best}
            kept[self.state.global_step] = (weights_fingerprint(self.model), out.predictions,
                                            out.metrics.get(f"{metric_key_prefix}_loss"))
            self._validation_outputs = kept
        return out

    def restored_validation(self) -> tuple[Any, float | None] | None:
        """(predictions, loss) of a kept in-loop validation pass whose weights the model has now (normally the
        best checkpoint, restored at the end of training; the last step's, when the Trainer could not load
        that checkpoint and only warned), evaluated the same way: the final validation pass would compute
        exactly these. None when no kept pass matches (a resumed run whose best pass came before the resume).
        It relies on the Trainer evaluating in training as in predict(); it does not with fp16_full_eval or
        bf16_full_eval (half-precision weights outside training), which tunebench never sets."""
        outputs = getattr(self, "_validation_outputs", {})
        if not outputs:
            return None
        now = weights_fingerprint(self.model)
        return next(((preds, loss) for fingerprint, preds, loss in outputs.values() if fingerprint == now), None)


def weights_fingerprint(model: torch.nn.Module) -> tuple:
    """The trainable parameters (the only ones training changes), by name, dtype, shape and the float64 sum
    and sum of squares of their values: equal for the same weights (the same reductions over the same
    tensors); an optimizer update changes them (a permutation of values within a tensor, which no training
    step or checkpoint load makes, would not). Frozen weights and buffers are not covered: training and
    restoring leave them as they are. Computed on the parameters' device in float64 chunks of 4M
    values (at most 64 MB more memory at 1.3B parameters), one sync per parameter."""
    import torch

    out = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            acc = torch.zeros(2, dtype=torch.float64, device=p.device)
            for chunk in p.detach().reshape(-1).split(1 << 22):
                x = chunk.double()
                acc += torch.stack((x.sum(), x.square().sum()))
            out.append((name, str(p.dtype), tuple(p.shape), *acc.tolist()))
    return tuple(out)


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
