"""Assemble the report: read the run folders once (`load_inputs`), then compute everything from values
(`analyze`, pure). Writing files is render.write_report's job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tunebench.arms import Arm, reference_of
from tunebench.config import METHODS
from tunebench.data.tasks import TASKS
from tunebench.errors import TunebenchError
from tunebench.report import collect, tables
from tunebench.report.compare import TaskComparison, adjust_across_tasks, compare_task
from tunebench.report.groups import held_fixed
from tunebench.report.qa import QA_TASK, QaBreakdown, qa_breakdown, runs_from_headline
from tunebench.report.select import Selection, seed_values, select_settings, summarize_settings
from tunebench.report.stats import DEFAULT_BOOTSTRAP_RESAMPLES, DEFAULT_BOOTSTRAP_SEED
from tunebench.report.verdict import compose_verdict, verdict_row
from tunebench.results import STATUS_OK, load_analysis_pairs


@dataclass
class Inputs:
    """What the report reads from disk; nothing else is read."""

    results_dir: Path
    runs: pd.DataFrame                         # tidy table, one row per run folder
    curves: pd.DataFrame                       # log.jsonl of ok runs (run_dir, step, loss, eval_loss)
    predictions: dict[str, pd.DataFrame]       # run_dir -> predictions/test.jsonl (ok runs)
    selections: dict[str, dict[str, dict]]     # merged selection.json files
    configs: dict[str, dict]                   # run_dir -> resolved config (runs that record one)
    analysis_pairs: list[tuple[dict, dict]] = field(default_factory=list)  # (metrics, analysis.json)
    precisions: dict[str, str] = field(default_factory=dict)       # run_dir -> precision resolved on the device
    selection_files: dict[str, dict] = field(default_factory=dict)  # each selection.json: path -> content


@dataclass
class Report:
    results_dir: Path
    alpha: float
    runs: pd.DataFrame
    failed: pd.DataFrame
    settings: pd.DataFrame
    metric_summary: pd.DataFrame
    comparison: pd.DataFrame
    example_tests: pd.DataFrame
    efficiency: pd.DataFrame
    stability: pd.DataFrame
    generalization: pd.DataFrame
    comparisons: list[TaskComparison]
    verdicts: dict[str, str]
    verdict_rows: list[dict] = field(default_factory=list)   # one per task: verdict.verdict_row
    figures: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    analysis: dict[str, pd.DataFrame] = field(default_factory=dict)   # `tunebench analyze` tables, if any
    qa: QaBreakdown | None = None      # SQuAD v2's answerable / unanswerable breakdown (report.qa), if run
    context: str = ""                  # what the comparison holds fixed (report.groups.describe_context)
    group: str = ""                    # the comparison's name when the folder holds several (report.groups)
    labels: dict[str, str] = field(default_factory=dict)   # named arms: arm -> label (tunebench.arms.arm_label)

    @property
    def n_ok(self) -> int:
        return int((self.runs["status"] == STATUS_OK).sum())


def load_inputs(results_dir: str | Path, out_dir: str | Path | None = None) -> Inputs:
    """Read every run below results_dir (skipping out_dir). TunebenchError when there is nothing to read."""
    root = Path(results_dir)
    if not root.is_dir():
        raise TunebenchError(f"{root}: results directory not found")
    runs = collect.collect_runs(root, exclude=out_dir)
    if runs.empty:
        raise TunebenchError(f"{root}: no runs found (no run folder with metrics.json below it)")
    ok = runs[runs["status"] == STATUS_OK]
    selection_files = collect.read_selection_files(root, exclude=out_dir)
    configs, precisions = collect.read_run_configs(runs, root)
    return Inputs(
        results_dir=root, runs=runs, curves=collect.collect_curves(ok, root),
        predictions={r: p for r in ok["run_dir"] if (p := collect.read_test_predictions(root / r)) is not None},
        selections=collect.merge_selections(selection_files), configs=configs,
        analysis_pairs=load_analysis_pairs(root), precisions=precisions, selection_files=selection_files,
    )


def build_report(
    results_dir: str | Path, out_dir: str | Path | None = None, alpha: float = 0.05,
    n_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES, bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED,
    with_figures: bool = True, margin: float = 1.0, learn_margin: float = 0.0,
) -> Report:
    return analyze(load_inputs(results_dir, out_dir), alpha, n_resamples, bootstrap_seed, with_figures, margin,
                   learn_margin)


def analyze(inputs: Inputs, alpha: float = 0.05, n_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
            bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED, with_figures: bool = True,
            margin: float = 1.0, learn_margin: float = 0.0) -> Report:
    """Every table, verdict and figure from the inputs (pure). `margin`: the equivalence margin, `learn_margin`:
    the points over the best constant predictor an arm must beat to count as learned (both in points)."""
    held = held_fixed(inputs)   # one comparison only: MixedResultsError otherwise (groups.split_inputs first)
    runs = tables.add_primary_columns(inputs.runs)
    ok, settings, headline, notes = select_headline(runs, inputs.selections, inputs.configs)
    labels = arm_labels(headline)
    comparisons = [
        compare_task(task, headline, inputs.predictions, _count_not_ok(runs, task), n_resamples, bootstrap_seed,
                     margin, alpha, learn_margin, arm, reference, labels)
        for task, arm, reference in comparison_pairs(runs)
    ]
    comparisons = adjust_across_tasks(comparisons)   # Holm needs every task's p before any word is said
    efficiency = tables.build_efficiency_table(headline)
    verdicts = {c.pair: compose_verdict(c, tables.efficiency_ratios(efficiency, c.task, c.arm, c.reference), alpha)
                for c in comparisons}
    report = Report(
        results_dir=inputs.results_dir, alpha=alpha, runs=runs, failed=tables.build_failed_table(runs),
        settings=settings, metric_summary=tables.build_metric_summary(headline),
        comparison=tables.build_comparison_table(comparisons),
        example_tests=tables.build_example_tests_table(comparisons), efficiency=efficiency,
        stability=tables.build_stability_table(headline),
        generalization=tables.build_generalization_table(headline),
        comparisons=comparisons, verdicts=verdicts, notes=notes, labels=labels,
        verdict_rows=[verdict_row(c, verdicts[c.pair], alpha) for c in comparisons],
        qa=qa_breakdown(runs_from_headline(headline, inputs.predictions)),
    )
    report.context, report.notes = held.line, report.notes + held.notes
    report.notes += tables.finding_notes(runs)      # ok runs that collapsed (metrics.json findings)
    add_seeds_needed(report.verdict_rows, headline, margin, alpha)
    if report.qa is not None:
        report.notes += [f"{QA_TASK}: {n}" for n in report.qa.notes]
        for row in report.verdict_rows:
            if row["task"] == QA_TASK:
                row |= report.qa.verdict_fields()
    if with_figures:
        from tunebench.report.plots import build_figures  # matplotlib is slow to import; only when drawing

        report.figures = build_figures(report.comparison, inputs.curves, headline, efficiency, settings, labels)
        if labels and comparisons:        # named arms: quality against cost, the front through decided arms
            from tunebench.report.plots import plot_pareto, render_png

            pareto = plot_pareto(efficiency, report.verdict_rows, labels, comparisons[0].reference)
            if pareto is not None:
                report.figures["pareto.png"] = render_png(pareto)
    if inputs.analysis_pairs:
        add_analysis(report, inputs.analysis_pairs, with_figures)
    return report


def select_headline(runs: pd.DataFrame, selections: dict[str, dict[str, dict]], configs: dict[str, dict],
                    selected: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    """(ok runs, settings, headline runs, notes): one run per seed of each setting (drop_duplicate_seeds), then the
    headline setting per task x arm (report.select: the one selection.json names, else the plan engine's rule
    on the validation scores, which ranks a setting with a failed seed last), or the (task, arm, setting_id)
    rows of `selected` (e.g. a report's settings.csv; a table without `arm`: the method). `runs` needs the primary
    columns (tables.add_primary_columns). Pure; `tunebench plan seeds` uses it too."""
    ok, notes = drop_duplicate_seeds(runs[(runs["status"] == STATUS_OK) & runs["task"].isin(list(TASKS))])
    settings = summarize_settings(ok)
    if selected is None:
        chosen = select_settings(settings, selections, _configs_by_setting(ok, configs),
                                 {t: s.primary_metric for t, s in TASKS.items()}, seeds=seed_values(runs, ok))
        settings = tables.sort_by_task(mark_selected(settings, chosen))
        notes += [s.note for s in chosen.values() if s.note]
    else:
        arms = selected["arm"] if "arm" in selected else selected["method"]
        keys = set(zip(selected["task"], arms, selected["setting_id"], strict=True))
        settings = tables.sort_by_task(settings.assign(
            selected=[k in keys for k in zip(settings["task"], settings["arm"], settings["setting_id"],
                                             strict=True)], selection="given"))
    headline = ok.merge(settings.loc[settings["selected"], ["task", "arm", "setting_id"]],
                        on=["task", "arm", "setting_id"])
    return ok, settings, headline, notes


def add_seeds_needed(rows: list[dict], headline: pd.DataFrame, margin: float, alpha: float) -> None:
    """Under each inconclusive verdict, how many seeds the equivalence test would need (report.power: exact power
    of the paired TOST at alpha / k, k = the hypotheses of the Holm family -- two per task with both arms -- so the
    power is the least Holm gives; at a true difference of 0, planning with the 80% upper bound of the observed
    sd) and what they cost at the runs' measured time: row["seeds_needed"]."""
    from tunebench.report.power import describe, measured_hours_per_seed, pair_hours, plan_seeds

    both_arms = [r for r in rows if not (math.isnan(r["lora"]) or math.isnan(r["full"]))]
    k = max(1, 2 * len(both_arms))   # the comparison family: two hypotheses per task with both arms
    hours, unit = measured_hours_per_seed(headline)
    for row in rows:
        row["seeds_needed"] = None        # the same fields on every row; a plan only under "inconclusive"
        if row.get("word") != "inconclusive":
            continue
        pair = row.get("pair") or row["task"]     # named arms: "sst2/dora_r16", its arm's and the reference's hours
        plan = plan_seeds(pair, list(row["seed_differences"].values()), margin, alpha, k)
        per_seed = (hours.get(row["task"]) if pair == row["task"] else
                    pair_hours(headline[headline["task"] == row["task"]], row["arm"], row["reference"], "arm"))
        n = plan.seeds[0]
        row["seeds_needed"] = {
            "line": describe(plan, per_seed, unit), "seeds": n, "power": plan.powers[0],
            "seeds_90": plan.seeds[1], "sd": plan.sd, "sd_bound": plan.sd_bound, "true_diff": plan.true_diff,
            "alpha_per_test": plan.alpha_per_test, "family_size": k, "reason": plan.reason,
            "hours": n * per_seed if n is not None and per_seed is not None else None, "hours_unit": unit,
        }


def add_analysis(report: Report, pairs: list[tuple[dict, dict]], with_figures: bool) -> None:
    """Forgetting and weight-update spectra from the runs `tunebench analyze` has processed."""
    from tunebench.analysis.tables import analysis_tables

    report.analysis = analysis_tables(pairs)
    if with_figures:
        from tunebench.analysis.figures import analysis_figures
        from tunebench.report.plots import render_png

        for name, fig in analysis_figures(tables=report.analysis).items():
            report.figures[f"{name}.png"] = render_png(fig)


def drop_duplicate_seeds(ok: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Keep one run per task x arm x setting x seed and say which were dropped.

    The same config and seed in two experiment folders is the same run (a plan's final stage copies the
    chosen sweep point's sweep-seed run into its final folder: `reused_from`). The copy kept is the one from
    the experiment holding more seeds of that setting -- the final stage rather than the 1-seed sweep -- then
    path order.
    """
    keys = ["task", "arm", "setting_id", "seed"]
    if ok.empty:
        return ok.reset_index(drop=True), []
    size = ok.groupby(["task", "arm", "setting_id", "experiment"], dropna=False)["run_dir"].transform("size")
    ranked = ok.assign(_size=size).sort_values(["_size", "run_dir"], ascending=[False, True])
    dup = ranked.duplicated(keys, keep="first")
    notes = [f"same setting and seed as another run, counted once: {r} left out" for r in ranked.loc[dup, "run_dir"]]
    kept = ranked[~dup].drop(columns="_size").sort_index()
    return kept.reset_index(drop=True), sorted(notes)


def mark_selected(settings: pd.DataFrame, chosen: dict[tuple[str, str], Selection]) -> pd.DataFrame:
    out = settings.copy()
    ids = {k: s.setting_id for k, s in chosen.items()}
    out["selected"] = [ids.get((t, a)) == sid for t, a, sid in zip(out["task"], out["arm"], out["setting_id"],
                                                                      strict=True)]
    out["selection"] = [chosen[(t, a)].source if sel else "" for t, a, sel in zip(out["task"], out["arm"],
                                                                                   out["selected"], strict=True)]
    return out


def _configs_by_setting(ok: pd.DataFrame, configs: dict[str, dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for sid, rel in zip(ok["setting_id"], ok["run_dir"], strict=True):
        if rel in configs:
            out.setdefault(sid, configs[rel])
    return out


def comparison_pairs(runs: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(task, arm, reference) per comparison, in the task table's order and the arms' (tables.sort_by_task): the
    study's two arms give one per task, LoRA against full fine-tuning (also while one of them has no run yet);
    named arms (tunebench.arms) one per arm other than the reference -- full fine-tuning's arm, the one named
    `full` when there are several (a plan's `reference:` decides in the plan; the report reads the runs)."""
    known = runs[runs["task"].isin(list(TASKS)) & runs["method"].isin(METHODS) & runs["arm"].notna()]
    known = known.drop_duplicates(["task", "arm"])
    arms = tables.sort_by_task(known[["task", "method", "arm"]].drop_duplicates("arm").assign(task="sst2"))
    if set(arms["arm"]) <= {"lora", "full"}:
        return [(task, "lora", "full") for task in tasks_present(runs)]
    recorded = sorted(set(runs["reference"].dropna())) if "reference" in runs else []
    try:
        reference = reference_of([Arm(a, m) for a, m in zip(arms["arm"], arms["method"], strict=True)],
                                 recorded[0] if len(recorded) == 1 and recorded[0] in set(arms["arm"]) else None)
    except ValueError as e:
        raise TunebenchError(f"the runs hold arms {', '.join(arms['arm'])} and no reference: {e}") from None
    order = [a for a in arms["arm"] if a != reference]
    present = {(t, a) for t, a in zip(known["task"], known["arm"], strict=True)}
    return [(task, arm, reference) for task in tasks_present(runs) for arm in order
            if (task, arm) in present or (task, reference) in present]


def arm_labels(headline: pd.DataFrame) -> dict[str, str]:
    """{arm: label} of the named arms among the runs ("dora_r16": "DoRA r=16"; tunebench.arms.arm_label)."""
    if "arm_label" not in headline:
        return {}
    named = headline.dropna(subset=["arm_label"])
    return dict(zip(named["arm"], named["arm_label"], strict=True))


def tasks_present(runs: pd.DataFrame) -> list[str]:
    """The tasks the runs table holds, in the task table's order."""
    present = set(runs["task"].dropna())
    return [t for t in TASKS if t in present]


def _count_not_ok(runs: pd.DataFrame, task: str) -> int:
    return int(((runs["task"] == task) & (runs["status"] != STATUS_OK)).sum())
