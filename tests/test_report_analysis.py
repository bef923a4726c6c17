"""The report's decisions on hand-made result sets: headline selection, seed designs, verdict wording,
example-level tests, and how run folders are read."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fake_results import (
    classification_predictions,
    write_fake_run,
    write_selection,
)
from tunebench.report.build import build_report
from tunebench.report.collect import collect_curves, collect_runs, compute_setting_id
from tunebench.report.plots import plot_lr_sweep, render_png


def report(root, **kw):
    return build_report(root, with_figures=False, n_resamples=300, **kw)


def row(r, task):
    return r.comparison.set_index("task").loc[task]


def write_seed_pairs(root, task, lora, full, validation=0.9, n=2000):
    """LoRA and full runs of one task with seeds 0, 1, ... and these test scores, with test predictions that score
    them (n examples, half of each class: the runs learned the task, so the verdict is about the comparison)."""
    labels = np.array([0, 1] * (n // 2))
    for seed, (a, b) in enumerate(zip(lora, full, strict=True)):
        for method, score in (("lora", a), ("full", b)):
            correct = np.arange(n) < round(score * n)
            write_fake_run(root, task, method, seed, test=score, validation=validation,
                           predictions=classification_predictions(labels, correct))


# ---------------------------------------------------------------- headline selection


def write_sweep_where_validation_and_test_disagree(root) -> None:
    """LoRA lr 1e-4: best on validation, worse on test; lr 1e-3: the reverse. Full has one setting."""
    for seed in (1, 2, 3):
        write_fake_run(root, "sst2", "lora", seed, learning_rate=1e-4, validation=0.90, test=0.80 + seed / 1000)
        write_fake_run(root, "sst2", "lora", seed, learning_rate=1e-3, validation=0.85, test=0.95 + seed / 1000)
        write_fake_run(root, "sst2", "full", seed, validation=0.88, test=0.85 + seed / 1000)


def test_headline_setting_is_chosen_on_validation_not_test(tmp_path):
    write_sweep_where_validation_and_test_disagree(tmp_path)
    r = report(tmp_path)
    assert row(r, "sst2")["lora_mean"] == pytest.approx(80.2)  # lr 1e-4's test mean, not lr 1e-3's 95.2
    chosen = r.settings[r.settings["selected"] & (r.settings["method"] == "lora")]
    assert chosen["learning_rate"].tolist() == [1e-4]
    assert chosen["selection"].tolist() == ["best mean validation accuracy"]


def test_selection_json_overrides_the_validation_rule(tmp_path):
    write_sweep_where_validation_and_test_disagree(tmp_path)
    write_selection(tmp_path, "demo", {"sst2": {"lora": {"overrides": {"training.learning_rate": 1e-3},
                                                         "learning_rate": 1e-3}}})
    r = report(tmp_path)
    assert row(r, "sst2")["lora_mean"] == pytest.approx(95.2)
    chosen = r.settings[r.settings["selected"] & (r.settings["method"] == "lora")]
    assert chosen["selection"].iloc[0] == "selection.json (demo/selection.json)"


def test_selection_without_a_usable_setting_falls_back_with_a_note(tmp_path):
    write_sweep_where_validation_and_test_disagree(tmp_path)
    write_selection(tmp_path, "demo", {"sst2": {"lora": {"overrides": None, "learning_rate": None}}})
    r = report(tmp_path)
    assert row(r, "sst2")["lora_mean"] == pytest.approx(80.2)
    assert any("no usable setting" in n for n in r.notes)


def test_lr_sweep_plot_is_drawn_when_several_learning_rates_exist(tmp_path):
    write_sweep_where_validation_and_test_disagree(tmp_path)
    settings = report(tmp_path).settings
    assert settings.groupby("method")["learning_rate"].nunique().to_dict() == {"full": 1, "lora": 2}
    assert render_png(plot_lr_sweep(settings)).startswith(b"\x89PNG")
    assert plot_lr_sweep(settings[settings["learning_rate"] != 1e-3]) is None  # one rate each: no sweep plot


def test_same_run_in_sweep_and_final_folders_counts_once(tmp_path):
    for exp, seeds in (("demo-sweep", (1,)), ("demo", (1, 2, 3))):
        for seed in seeds:
            write_fake_run(tmp_path, "rte", "lora", seed, experiment=exp, test=0.6, validation=0.6)
            write_fake_run(tmp_path, "rte", "full", seed, experiment=exp, test=0.6, validation=0.6)
    r = report(tmp_path)
    assert (row(r, "rte")["lora_n"], row(r, "rte")["n_pairs"]) == (3, 3)
    assert len(r.notes) == 2 and all("demo-sweep/" in n for n in r.notes)  # the final folder's copy is kept


def test_setting_id_ignores_seed_and_what_the_method_does_not_read():
    base = {"task": "sst2", "method": "full", "experiment": "a", "lora": {"r": 8},
            "training": {"seed": 1, "learning_rate": 1e-4, "full_finetune_learning_rate": 5e-5}}
    other = json.loads(json.dumps(base))
    other |= {"experiment": "b", "lora": {"r": 64}}
    other["training"] |= {"seed": 2, "learning_rate": 3e-4}
    assert compute_setting_id({"method": "full", "config": base}) == compute_setting_id({"method": "full",
                                                                                          "config": other})
    other["training"]["full_finetune_learning_rate"] = 1e-5
    assert compute_setting_id({"method": "full", "config": base}) != compute_setting_id({"method": "full",
                                                                                          "config": other})


# ---------------------------------------------------------------- seed designs and verdicts


def test_single_seed_says_no_significance_can_be_claimed(tmp_path):
    write_fake_run(tmp_path, "mrpc", "lora", 42, test=0.84, validation=0.8)
    write_fake_run(tmp_path, "mrpc", "full", 42, test=0.86, validation=0.8)
    v = report(tmp_path).verdicts["mrpc"]
    assert v.startswith("mrpc: no seed-level verdict (1 seed per method: a seed-level verdict needs at least 3): "
                        "nothing is claimed (f1: LoRA - full = -2.00 points; LoRA 84.00, full 86.00)")
    assert "LoRA trains 0.9% of the parameters and peaks at 38% of full's memory" in v


def test_non_significant_difference_is_not_called_equal(tmp_path):
    """Not significant, and too noisy for the equivalence test: never "equal", never "matches"."""
    lora, full = [0.91, 0.88, 0.93, 0.89, 0.92], [0.90, 0.92, 0.88, 0.91, 0.90]
    write_seed_pairs(tmp_path, "sst2", lora, full)
    r = report(tmp_path)
    v = r.verdicts["sst2"]
    a, b = np.multiply(lora, 100), np.multiply(full, 100)
    t = stats.ttest_rel(a, b)
    assert v.startswith("sst2: no significant difference at alpha = 0.05 with 5 seeds")
    assert f"paired t-test p = {t.pvalue:.3f}" in v
    lo, hi = t.confidence_interval()
    assert f"95% CI [{lo:.2f}, {hi:.2f}]" in v
    d = a - b   # TOST: the larger of the two one-sided p-values against -1 and +1 point
    p_tost = max(stats.ttest_1samp(d, -1, alternative="greater").pvalue,
                 stats.ttest_1samp(d, 1, alternative="less").pvalue)
    assert f"equivalence within ±1 point is not shown (TOST p = {p_tost:.3f}, 90% CI" in v
    assert "equal" not in v and "matches" not in v
    assert row(r, "sst2")["tost_p"] == pytest.approx(p_tost) and not row(r, "sst2")["equivalent"]


def test_equivalence_within_the_declared_margin_is_stated_with_it(tmp_path):
    lora, full = [0.910, 0.905, 0.915, 0.900, 0.912], [0.908, 0.911, 0.909, 0.907, 0.906]
    write_seed_pairs(tmp_path, "sst2", lora, full)
    d = np.multiply(lora, 100) - np.multiply(full, 100)
    p_tost = max(stats.ttest_1samp(d, -1, alternative="greater").pvalue,
                 stats.ttest_1samp(d, 1, alternative="less").pvalue)
    assert p_tost < 0.05
    r = report(tmp_path)
    v = r.verdicts["sst2"]
    assert v.startswith(f"sst2: LoRA matches full fine-tuning within ±1 point of accuracy at alpha = 0.05 with "
                        f"5 seeds (TOST p = {p_tost:.3f}, 90% CI [")
    assert "equal" not in v and row(r, "sst2")["equivalent"]
    # the same runs against a tighter margin, declared before looking: equivalence is not shown
    tight = report(tmp_path, margin=0.25).verdicts["sst2"]
    assert tight.startswith("sst2: no significant difference") and "within ±0.25 points is not shown" in tight


def test_significant_difference_names_the_better_method_and_the_margin(tmp_path):
    write_seed_pairs(tmp_path, "rte", [0.80, 0.81, 0.79, 0.80, 0.82], [0.85, 0.855, 0.845, 0.86, 0.86], validation=0.8)
    v = report(tmp_path).verdicts["rte"]
    assert v.startswith("rte: full fine-tuning is significantly better than LoRA at alpha = 0.05 with 5 seeds, "
                        "by 5.00 points of accuracy")


def test_significant_but_within_the_margin_matches_and_says_both(tmp_path):
    """A small, consistent difference: significant, and inside the +-1-point margin: the study's question is
    equivalence, so the word is "matches" and the sentence states the small significant difference."""
    write_seed_pairs(tmp_path, "sst2", [0.902, 0.913, 0.8925, 0.9075], [0.900, 0.910, 0.890, 0.905])
    v = report(tmp_path).verdicts["sst2"]
    assert v.startswith("sst2: LoRA matches full fine-tuning within ±1 point of accuracy at alpha = 0.05 with 4 "
                        "seeds (TOST p < 0.001, 90% CI [0.20, 0.30]")
    assert "; the difference itself, +0.25 points, is significant but lies inside the ±1 point margin" in v


def test_the_equivalence_test_uses_the_report_alpha(tmp_path):
    lora, full = [0.910, 0.905, 0.915, 0.900, 0.912], [0.908, 0.911, 0.909, 0.907, 0.906]
    write_seed_pairs(tmp_path, "sst2", lora, full)
    d = np.multiply(lora, 100) - np.multiply(full, 100)
    ci80 = stats.ttest_1samp(d, 0).confidence_interval(0.80)        # 1 - 2 x 0.1
    c = row(report(tmp_path, alpha=0.1), "sst2")
    assert (c["tost_ci_low"], c["tost_ci_high"]) == (pytest.approx(ci80.low), pytest.approx(ci80.high))
    assert "80% CI" in report(tmp_path, alpha=0.1).verdicts["sst2"]


def test_methods_with_different_seeds_are_compared_unpaired(tmp_path):
    for seed, acc in ((1, 0.90), (2, 0.91), (3, 0.92)):
        write_fake_run(tmp_path, "sst2", "lora", seed, test=acc, validation=0.9)
    for seed, acc in ((7, 0.88), (8, 0.89), (9, 0.885), (10, 0.89)):
        write_fake_run(tmp_path, "sst2", "full", seed, test=acc, validation=0.9)
    r = report(tmp_path)
    c = row(r, "sst2")
    assert (c["design"], c["n_pairs"], c["lora_n"], c["full_n"]) == ("unpaired", 0, 3, 4)
    welch = stats.ttest_ind([90, 91, 92], [88, 89, 88.5, 89], equal_var=False)
    assert c["t_p"] == pytest.approx(welch.pvalue)
    assert "with 3 LoRA seeds and 4 full seeds (0 shared)" in r.verdicts["sst2"]
    assert "unpaired (too few common seeds): Welch t-test" in r.verdicts["sst2"]
    a, b = np.array([90.0, 91, 92]), np.array([88, 89, 88.5, 89])      # and the TOST is Welch's too
    tost = max(stats.ttest_ind(a + 1, b, equal_var=False, alternative="greater").pvalue,
               stats.ttest_ind(a - 1, b, equal_var=False, alternative="less").pvalue)
    assert c["tost_p"] == pytest.approx(tost)


def test_only_shared_seeds_enter_the_paired_test(tmp_path):
    for seed in (1, 2, 3, 4):
        write_fake_run(tmp_path, "sst2", "lora", seed, test=0.90 + seed / 100, validation=0.9)
    for seed in (2, 3, 4, 5):
        write_fake_run(tmp_path, "sst2", "full", seed, test=0.88 + seed / 200, validation=0.9)
    c = row(report(tmp_path), "sst2")
    assert (c["design"], c["n_pairs"]) == ("paired", 3)
    expected = stats.ttest_rel([92, 93, 94], [89, 89.5, 90])
    assert c["t_p"] == pytest.approx(expected.pvalue)


def test_task_with_one_method_is_not_compared(tmp_path):
    write_fake_run(tmp_path, "squad_v2", "full", 1, test={"f1": 70.0}, validation=70.0)
    v = report(tmp_path).verdicts["squad_v2"]
    assert v == ("squad_v2: only full fine-tuning has completed runs (1 seed); "
                 "LoRA and full fine-tuning cannot be compared.")


# ---------------------------------------------------------------- example-level tests


def test_mcnemar_on_a_seed_pair_matches_the_hand_count(tmp_path):
    labels = [1, 0] * 15
    lora = [True] * 30
    full = [False] * 8 + [True] * 22                # b = 8 examples only LoRA gets right
    lora[10], lora[11] = False, False               # c = 2 examples only full gets right
    write_fake_run(tmp_path, "rte", "lora", 1, test=sum(lora) / 30, validation=0.7,
                   predictions=classification_predictions(labels, lora))
    write_fake_run(tmp_path, "rte", "full", 1, test=sum(full) / 30, validation=0.7,
                   predictions=classification_predictions(labels, full))
    r = report(tmp_path)
    t = r.example_tests.iloc[0]
    assert (t["comparison"], t["b"], t["c"], t["n_examples"]) == ("seed 1", 8, 2, 30)
    assert t["p"] == pytest.approx(0.109375) and t["odds_ratio"] == 4.0
    expected = "per-example McNemar on seed 1: p = 0.109 (b = 8 only LoRA right, c = 2 only full right)"
    assert expected in r.verdicts["rte"]


def test_the_combined_accuracy_test_is_on_the_seed_mean_not_a_majority_vote(tmp_path):
    """Two seeds, LoRA 2 points better on each (it gets one more of 50 examples right), but its right answers move
    from seed to seed while full's stay put: a majority vote over seeds (both seeds right) would favour full;
    the combined test is on each example's correctness averaged over seeds, whose mean is the +2."""
    labels = [0, 1] * 25
    lora = {1: [True] * 41 + [False] * 9, 2: [False] * 9 + [True] * 41}
    full = {s: [True] * 40 + [False] * 10 for s in (1, 2)}
    for seed in (1, 2):
        for method, correct in (("lora", lora[seed]), ("full", full[seed])):
            write_fake_run(tmp_path, "sst2", method, seed, test=sum(correct) / 50, validation=0.7,
                           predictions=classification_predictions(labels, correct))
    r = report(tmp_path)
    tests = r.example_tests.set_index("comparison")
    combined = tests.loc["mean accuracy over seeds"]
    assert combined["test"] == "paired bootstrap" and combined["seeds"] == "1,2"
    assert combined["mean_diff"] == pytest.approx(2.0)                 # = 82 - 80, the seed-mean difference
    assert (tests.loc["seed 1", "b"], tests.loc["seed 1", "c"]) == (1, 0)
    # both arms 80-82% on both seeds, each seed +2: a majority vote would have counted LoRA right on only 32
    assert sum(a and b for a, b in zip(lora[1], lora[2], strict=True)) == 32
    assert r.verdict_rows[0]["word"] == "inconclusive"          # 2 seeds: the example level decides nothing


def test_example_tests_use_only_shared_examples(tmp_path):
    preds = classification_predictions([1, 1, 1, 1], [True, True, False, False])
    write_fake_run(tmp_path, "sst2", "lora", 1, test=0.5, validation=0.5, predictions=preds)
    write_fake_run(tmp_path, "sst2", "full", 1, test=0.5, validation=0.5, predictions=preds[:3])
    assert report(tmp_path).example_tests.iloc[0]["n_examples"] == 3


# ---------------------------------------------------------------- reading run folders


def test_ok_run_without_its_test_metric_is_unreadable_not_averaged(tmp_path):
    write_fake_run(tmp_path, "sst2", "lora", 1, test={"macro_f1": 0.9}, validation=0.9)
    write_fake_run(tmp_path, "sst2", "lora", 2, test=0.9, validation=0.9, extra={"status": "exploded"})
    runs = collect_runs(tmp_path)
    assert runs["status"].tolist() == ["unreadable", "unreadable"]
    assert set(runs["reason"]) == {"status ok but metrics.json has no test.accuracy", "unknown status 'exploded'"}


def test_runs_are_found_at_any_depth(tmp_path):
    write_fake_run(tmp_path / "a" / "b", "rte", "lora", 1, test=0.6, validation=0.6)
    write_fake_run(tmp_path, "rte", "full", 1, test=0.6, validation=0.6)
    runs = collect_runs(tmp_path)
    assert sorted(runs["run_dir"].str.count("/")) == [1, 3]


def test_torn_log_lines_are_skipped(tmp_path):
    folder = write_fake_run(tmp_path, "sst2", "lora", 1, test=0.9, validation=0.9,
                            log=[{"step": 10, "loss": 0.7}, {"step": 20, "eval_loss": 0.5}])
    with open(folder / "log.jsonl", "a") as f:
        f.write('{"step": 30, "lo')
    curves = collect_curves(collect_runs(tmp_path), tmp_path)
    assert curves["step"].tolist() == [10, 20]
    assert curves["loss"].tolist()[0] == 0.7 and pd.isna(curves["loss"].tolist()[1])
