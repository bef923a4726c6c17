"""Named arms in the report: every arm against the reference with the two-arm statistics, one Holm family
over tasks x arms, each arm's learned test counted once, the arms named by their settings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fake_results import fake_config, write_fake_run
from tunebench.report.build import build_report

ARMS = {   # arm -> (method, lora settings, test score per seed 42/43/44)
    "full": ("full", {}, (0.80, 0.82, 0.81)),
    "lora_r8": ("lora", {"r": 8, "alpha": 16}, (0.70, 0.73, 0.71)),
    "dora_r16": ("lora", {"use_dora": True}, (0.805, 0.815, 0.812)),
}


def _predictions(score: float, seed: int, n: int = 200) -> list[dict]:
    """n test examples, half of each class, the first round(score * n) of a seeded order right."""
    rng = np.random.default_rng(seed)
    right = set(rng.permutation(n)[:round(score * n)].tolist())
    return [{"idx": i, "label": i % 2, "prediction": i % 2 if i in right else 1 - i % 2} for i in range(n)]


def _write(root, arms=ARMS, named=True, tasks=("sst2", "rte"), reference=None):
    for task in tasks:
        for arm, (method, lora, scores) in arms.items():
            for seed, score in zip((42, 43, 44), scores, strict=True):
                cfg = fake_config(task, method, seed, 1e-3 if method == "lora" else 1e-4, lora.get("r", 16),
                                  "arms")
                cfg["lora"] |= lora
                if named:
                    cfg["arm"], cfg["reference"] = arm, reference
                write_fake_run(root, task, method, seed, test=score, validation=score, experiment="arms",
                               lora_r=lora.get("r", 16), config=cfg, predictions=_predictions(score, seed))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("arms")
    _write(root)
    return build_report(root, n_resamples=200, with_figures=False)


def test_every_arm_is_compared_with_the_reference(report):
    pairs = [(c.task, c.arm, c.reference) for c in report.comparisons]
    assert pairs == [("sst2", "dora_r16", "full"), ("sst2", "lora_r8", "full"),
                     ("rte", "dora_r16", "full"), ("rte", "lora_r8", "full")]
    assert [c.pair for c in report.comparisons] == ["sst2/dora_r16", "sst2/lora_r8", "rte/dora_r16", "rte/lora_r8"]
    assert report.labels == {"full": "full fine-tuning", "lora_r8": "LoRA r=8", "dora_r16": "DoRA r=16"}
    rows = {r["pair"]: r for r in report.verdict_rows}
    r8 = rows["sst2/lora_r8"]
    assert (r8["arm"], r8["reference"], r8["arm_label"], r8["reference_label"]) == ("lora_r8", "full", "LoRA r=8",
                                                                                    "full fine-tuning")
    assert r8["lora"] == pytest.approx(71.333333) and r8["full"] == pytest.approx(81.0)
    assert r8["difference"] == pytest.approx(-9.666667) and r8["word"] == "worse"
    assert "full fine-tuning is significantly better than LoRA r=8" in r8["sentence"]
    assert "DoRA r=16 - full" in rows["sst2/dora_r16"]["sentence"]
    assert set(report.verdicts) == set(rows)


def test_one_holm_family_over_tasks_and_arms_with_each_learned_test_once(report):
    assert {c.family_size for c in report.comparisons} == {2 * 4}       # difference + equivalence per pair
    learned = {c.learned[side].family_size for c in report.comparisons for side in ("lora", "full")}
    assert learned == {2 * 3}             # 3 arms on 2 tasks: full's test once per task, not once per pair
    full = [c.learned["full"] for c in report.comparisons if c.task == "sst2"]
    assert full[0].p_adjusted == full[1].p_adjusted and full[0].arm == full[1].arm == "full"


def test_a_pair_has_the_statistics_of_a_two_arm_study_of_the_same_runs(report, tmp_path):
    """DoRA against full here gives what a two-arm study with the DoRA runs as its LoRA arm gives, before the
    family's adjustment (the family is larger here)."""
    two = {"lora": ARMS["dora_r16"], "full": ARMS["full"]}
    _write(tmp_path, arms=two, named=False)
    alone = {c.task: c for c in build_report(tmp_path, n_resamples=200, with_figures=False).comparisons}
    for c in report.comparisons:
        if c.arm != "dora_r16":
            continue
        a = alone[c.task]
        assert (c.seeds.mean_diff, c.seeds.t_p, c.equivalence.p) == (a.seeds.mean_diff, a.seeds.t_p, a.equivalence.p)
        assert c.decision_p_adjusted >= a.decision_p_adjusted and not math.isnan(c.decision_p_adjusted)
    assert all(c.pair == c.task for c in alone.values())           # the study's arms: keyed by task, as before


def test_named_arms_get_the_pareto_figure_and_the_study_does_not(tmp_path):
    _write(tmp_path / "named", tasks=("sst2",))
    assert "pareto.png" in build_report(tmp_path / "named", n_resamples=50).figures
    _write(tmp_path / "two", arms={"lora": ARMS["dora_r16"], "full": ARMS["full"]}, named=False, tasks=("sst2",))
    assert "pareto.png" not in build_report(tmp_path / "two", n_resamples=50).figures


def test_the_plans_reference_is_the_one_every_arm_is_compared_with(tmp_path):
    _write(tmp_path, tasks=("sst2",), reference="dora_r16")
    report = build_report(tmp_path, n_resamples=50, with_figures=False)
    assert [(c.arm, c.reference) for c in report.comparisons] == [("lora_r8", "dora_r16"), ("full", "dora_r16")]


def test_an_unreadable_run_leaves_the_two_arm_study_keyed_by_task(tmp_path):
    _write(tmp_path, arms={"lora": ARMS["dora_r16"], "full": ARMS["full"]}, named=False, tasks=("sst2",))
    bad = tmp_path / "arms" / "sst2-qlora-s42-00000000"
    bad.mkdir(parents=True)
    (bad / "metrics.json").write_text('{"task": "sst2", "method": "qlora", "status": "ok"}', encoding="utf-8")
    report = build_report(tmp_path, n_resamples=50, with_figures=False)
    assert [c.pair for c in report.comparisons] == ["sst2"] and set(report.verdicts) == {"sst2"}


def test_plan_seeds_reads_a_runs_csv_from_before_arms_and_refuses_named_arms_in_one_line(tmp_path, capsys):
    from tunebench.cli import main

    _write(tmp_path / "two", arms={"lora": ARMS["dora_r16"], "full": ARMS["full"]}, named=False, tasks=("sst2",))
    build = build_report(tmp_path / "two", n_resamples=50, with_figures=False)
    old = tmp_path / "old.csv"
    build.runs.drop(columns=["arm", "arm_label", "reference"]).to_csv(old, index=False)
    assert main(["plan", "seeds", "--runs", str(old)]) == 0
    assert "sst2" in capsys.readouterr().out
    _write(tmp_path / "named", tasks=("sst2",))
    named = tmp_path / "named.csv"
    build_report(tmp_path / "named", n_resamples=50, with_figures=False).runs.to_csv(named, index=False)
    assert main(["plan", "seeds", "--runs", str(named)]) == 2
    err = capsys.readouterr().err.strip()
    assert "named arms (dora_r16, lora_r8): `plan seeds` plans a two-arm study" in err and "\n" not in err
