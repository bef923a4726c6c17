"""The time budget: the whole check's (`Budget`) and one part's (`PartBudget`, which records what it skipped)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


class Budget:
    """The whole check's time budget: a part gets the smaller of its own share and what is left of the total."""

    def __init__(self, total_s: float, clock: Callable[[], float] = time.perf_counter):
        self.clock, self.total_s = clock, total_s
        self.start = clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def remaining(self) -> float:
        return self.total_s - self.elapsed()

    def part(self, share_s: float, rest: bool = False) -> PartBudget:
        """A part's budget: its share, or all that is left of the total when `rest` (the last part)."""
        left = self.remaining()
        return PartBudget(self.clock, self.clock() + max(0.0, left if rest else min(share_s, left)))


@dataclass
class PartBudget:
    clock: Callable[[], float]
    deadline: float
    skipped: list[str] = field(default_factory=list)   # what this part left out for lack of time

    def left(self) -> float:
        return self.deadline - self.clock()

    def fits(self, estimate_s: float, what: str) -> bool:
        """Whether a measurement estimated at `estimate_s` can start; when not, it is recorded as skipped."""
        if estimate_s <= self.left():
            return True
        self.skipped.append(f"{what}: skipped, time budget ({self.left():.0f} s left, needs about {estimate_s:.0f} s)")
        return False
