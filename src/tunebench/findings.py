"""Findings: what a run that finished ok may still have done wrong, recorded in metrics.json's `findings`.

A run whose loss blew up and then sat at ln 2 with zero gradients, predicting one class, trains to the end and
scores: it is `ok`, and its numbers are averaged like any other. A finding says what happened beside them,
`{"kind": "collapse", "detail": "..."}`, and the report lists it: a collapse is every test prediction the same
(one class; for SQuAD v2 one answer, usually no answer), or a final gradient norm of zero (nothing can learn).
"""

from __future__ import annotations

from collections.abc import Sequence

COLLAPSE = "collapse"
ZERO_GRAD_NORM = 1e-12      # a gradient norm at or below this is zero (no update moves any weight)


def run_findings(is_qa: bool, test_rows: Sequence[dict], log_rows: Sequence[dict]) -> list[dict]:
    """The findings of a finished run from its test predictions (predictions/test.jsonl rows) and its log
    (log.jsonl rows); [] when there is nothing to say."""
    found = []
    predictions = [r.get("prediction") for r in test_rows]
    if len(predictions) > 1 and len(set(map(repr, predictions))) == 1:
        only = predictions[0]
        what = (("no answer" if only == "" else f"the answer {only!r}") if is_qa else f"class {only}")
        found.append({"kind": COLLAPSE, "detail": f"every test prediction is {what} ({len(predictions)} examples)"})
    norms = [(r.get("step"), r["grad_norm"]) for r in log_rows if isinstance(r.get("grad_norm"), (int, float))]
    if norms and abs(norms[-1][1]) <= ZERO_GRAD_NORM:
        step, norm = norms[-1]
        found.append({"kind": COLLAPSE, "detail": f"final gradient norm {norm:.3g} at step {step}: no update "
                      "moves any weight"})
    return found


def findings_text(findings: object) -> str | None:
    """metrics.json's findings as one cell ("collapse: ...; collapse: ..."); None when there are none or the
    field is not a list of findings (older runs have no field)."""
    if not isinstance(findings, list):
        return None
    parts = [f"{f['kind']}: {f['detail']}" if f.get("detail") else str(f["kind"])
             for f in findings if isinstance(f, dict) and f.get("kind")]
    return "; ".join(parts) or None
