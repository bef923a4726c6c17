"""The sweep's choice on hand-made results: validation decides, never test; ties and failures are explicit."""

from __future__ import annotations

import random

from tunebench.plan.select import select_sweep, unresolved


def result(task, method, lr, seed, val, test=None, status="ok", key="training.learning_rate", **extra):
    return {"run_id": f"{task}-{method}-s{seed}-{lr}", "task": task, "method": method, "seed": seed,
            "learning_rate": lr, "overrides": {key: lr, **extra}, "status": status,
            "reason": None if status == "ok" else "nan loss at step 3",
            "primary_metric": "accuracy", "best_validation": {"value": val} if val is not None else {},
            "test": {"accuracy": test}}


def test_best_mean_validation_wins_even_where_test_disagrees():
    rows = [
        # lr 1e-4: validation 0.80 / 0.82 (mean 0.81), test would be the best (0.95)
        result("rte", "lora", 1e-4, 42, 0.80, test=0.95), result("rte", "lora", 1e-4, 43, 0.82, test=0.95),
        # lr 2e-4: validation 0.85 / 0.83 (mean 0.84): the choice, although its test is worse
        result("rte", "lora", 2e-4, 42, 0.85, test=0.70), result("rte", "lora", 2e-4, 43, 0.83, test=0.70),
        # lr 5e-4: the best single seed (0.90) but the worse mean (0.75)
        result("rte", "lora", 5e-4, 42, 0.90, test=0.60), result("rte", "lora", 5e-4, 43, 0.60, test=0.60),
    ]
    entry = select_sweep(rows)["rte"]["lora"]
    assert entry["overrides"] == {"training.learning_rate": 2e-4}
    assert entry["learning_rate"] == 2e-4
    assert abs(entry["validation_value"] - 0.84) < 1e-12
    assert entry["primary_metric"] == "accuracy" and entry["sweep_seeds"] == [42, 43]
    cands = entry["candidates"]
    assert [c["learning_rate"] for c in cands] == [2e-4, 1e-4, 5e-4]  # ranked best first
    assert cands[0]["run_ids"] == ["rte-lora-s42-0.0002", "rte-lora-s43-0.0002"]
    assert cands[0]["values"] == [0.85, 0.83] and cands[0]["seeds"] == [42, 43]


def test_ties_go_to_the_lower_learning_rate_whatever_the_order():
    rows = [result("mrpc", "full", lr, seed, v) for lr in (5e-5, 1e-5, 2e-5)
            for seed, v in ((42, 0.7), (43, 0.9))]
    for _ in range(5):
        random.shuffle(rows)
        entry = select_sweep(rows)["mrpc"]["full"]
        assert entry["learning_rate"] == 1e-5
        assert [c["learning_rate"] for c in entry["candidates"]] == [1e-5, 2e-5, 5e-5]


def test_mean_does_not_depend_on_finishing_order():
    values = [0.1, 0.2, 0.3, 0.7, 1e-17]
    a = [result("rte", "lora", 1e-4, s, v) for s, v in enumerate(values)]
    b = [result("rte", "lora", 2e-4, s, v) for s, v in enumerate(reversed(values))]
    entry = select_sweep(b + a)["rte"]["lora"]
    assert entry["candidates"][0]["validation_value"] == entry["candidates"][1]["validation_value"]
    assert entry["learning_rate"] == 1e-4


def test_other_grid_keys_rank_too():
    rows = [result("sst2", "lora", 2e-4, 42, 0.90, key="training.learning_rate", **{"lora.r": 8}),
            result("sst2", "lora", 2e-4, 42, 0.92, key="training.learning_rate", **{"lora.r": 16})]
    entry = select_sweep(rows)["sst2"]["lora"]
    assert entry["overrides"] == {"training.learning_rate": 2e-4, "lora.r": 16}


def test_a_candidate_with_a_failed_seed_is_not_chosen():
    rows = [result("rte", "lora", 1e-4, 42, 0.70), result("rte", "lora", 1e-4, 43, 0.72),
            result("rte", "lora", 1e-3, 42, 0.95), result("rte", "lora", 1e-3, 43, None, status="failed")]
    entry = select_sweep(rows)["rte"]["lora"]
    assert entry["learning_rate"] == 1e-4
    failed = entry["candidates"][-1]
    assert failed["status"] == "failed" and failed["validation_value"] is None
    assert failed["reasons"] == ["rte-lora-s43-0.001: failed: nan loss at step 3"]
    assert unresolved(select_sweep(rows)) == []


def test_every_candidate_failed_is_unresolved():
    rows = [result("rte", "full", 1e-3, 42, None, status="failed"),
            result("rte", "full", 1e-4, 42, float("nan"))]  # ok but no finite value
    sel = select_sweep(rows)
    assert sel["rte"]["full"]["overrides"] is None
    [(task, method, reasons)] = unresolved(sel)
    assert (task, method) == ("rte", "full") and len(reasons) == 2


def test_tasks_and_methods_are_selected_independently():
    rows = [result(t, m, lr, 42, v) for t, m, lr, v in [
        ("rte", "lora", 1e-4, 0.6), ("rte", "lora", 2e-4, 0.7),
        ("rte", "full", 1e-5, 0.8), ("rte", "full", 2e-5, 0.7),
        ("mrpc", "lora", 1e-4, 0.9), ("mrpc", "lora", 2e-4, 0.7)]]
    sel = select_sweep(rows)
    assert {(t, m): e["learning_rate"] for t, by in sel.items() for m, e in by.items()} == {
        ("rte", "lora"): 2e-4, ("rte", "full"): 1e-5, ("mrpc", "lora"): 1e-4}
