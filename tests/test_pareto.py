"""The Pareto front of arms reads the verdicts (tunebench.report.pareto)."""

from __future__ import annotations

from tunebench.report.pareto import REFERENCE, pareto_front, quality


def test_quality_is_the_decided_verdict():
    assert [quality(w) for w in ("better", "matches", REFERENCE, "worse")] == [1, 0, 0, -1]
    assert [quality(w) for w in ("inconclusive", "not learned", "only LoRA learned", None)] == [None] * 4


def test_the_front_takes_the_cheapest_arm_of_each_decided_quality_level_that_pays():
    points = {"full": (100.0, REFERENCE), "lora_r64": (20.0, "matches"), "lora_r16": (5.0, "matches"),
              "lora_r8": (2.5, "worse"), "dora_r16": (5.2, "better"), "lora_r4": (1.0, "inconclusive")}
    # r16 matches at 5: r64 and full are dominated; DoRA is better at 5.2; r8 is worse but cheapest decided
    assert pareto_front(points) == ["lora_r8", "lora_r16", "dora_r16"]


def test_undecided_arms_and_missing_costs_are_never_on_the_front():
    points = {"full": (100.0, REFERENCE), "lora_r16": (5.0, "inconclusive"), "dora_r16": (float("nan"), "better")}
    assert pareto_front(points) == ["full"]
    assert pareto_front({}) == []


def test_ties_in_cost_and_quality_keep_both():
    assert pareto_front({"a": (5.0, "matches"), "b": (5.0, "matches"), "full": (9.0, REFERENCE)}) == ["a", "b"]
