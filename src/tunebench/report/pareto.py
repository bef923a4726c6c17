"""The Pareto front of arms: quality against a cost, decided by the verdicts, not by the point estimates (pure).

Per task, each arm has a cost (trainable parameters, peak memory or time per run: lower is better) and a
verdict against the reference (tunebench.report.verdict). Means over a few seeds reorder at random, so the front
reads the tests: an arm's quality is +1 when it is significantly better than the reference, 0 when it matches it
(equivalence shown) and for the reference itself, -1 when it is significantly worse. An arm whose comparison is
not decided (inconclusive, not learned, no comparison) has no known quality: it is drawn, never on the front. A
decided arm is on the front when no other decided arm costs no more and has a higher quality, or the same
quality at a lower cost (ties in both: every one of them is on it).
"""

from __future__ import annotations

from collections.abc import Mapping

QUALITY = {"better": 1, "matches": 0, "worse": -1}
REFERENCE = "reference"


def quality(word: str | None) -> int | None:
    """The decided quality of a verdict word against the reference (None: not decided); REFERENCE is 0."""
    if word == REFERENCE:
        return 0
    return QUALITY.get(str(word)) if word is not None else None


def pareto_front(points: Mapping[str, tuple[float, str | None]]) -> list[str]:
    """The arms on the front, cheapest first. `points`: arm -> (cost, verdict word against the reference, or
    REFERENCE for the reference arm). Arms with an undecided word or a missing cost are never on it."""
    decided = {a: (float(c), q) for a, (c, w) in points.items()
               if (q := quality(w)) is not None and c is not None and c == c}
    front = []
    for arm, (cost, q) in decided.items():
        dominated = any((c2 <= cost and q2 > q) or (c2 < cost and q2 >= q)
                        for other, (c2, q2) in decided.items() if other != arm)
        if not dominated:
            front.append(arm)
    return sorted(front, key=lambda a: (decided[a][0], a))
