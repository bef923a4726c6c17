"""`tunebench plan seeds`: how many seeds each task's equivalence test needs, from a pilot's results.

    tunebench plan seeds study_cpu                               # the plan's results folder, its cost model
    tunebench plan seeds --runs docs/study-cpu/tables/runs.csv   # a report's runs table, its measured hours
    tunebench plan seeds phase2a --power 0.9 --true-diff observed --write-plan phase2a_more.yaml

For each task: the headline setting of each method (as the report picks it), LoRA and full paired by seed, the
spread (sd) of LoRA - full over the common seeds, its upper confidence bound, and the seeds (pairs: one LoRA and
one full run each) the report's paired TOST would need to show LoRA - full within +-margin with the given
power (exact power: tunebench.report.power), with what they cost.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from tunebench.commands._common import add_config_args, shipped_plan
from tunebench.data.tasks import TASKS
from tunebench.errors import TunebenchError
from tunebench.io import atomic_write_text
from tunebench.plan.cost import ASSUMED, Utilization, load_measured
from tunebench.plan.spec import Plan, load_plan, read_plan_yaml
from tunebench.results import STATUS_OK

if TYPE_CHECKING:     # pandas and scipy (tunebench.report.power) load when the verb runs, not with the CLI's parser
    import pandas as pd

    from tunebench.report.power import SeedsPlan

OBSERVED = "observed"           # --true-diff observed (tunebench.report.power.OBSERVED)

DESCRIPTION = __doc__ + """
Where the numbers come from:
  input    PLAN: its results folder (<output_dir>/<name>, the folder `tunebench report` reads), through the
           report's own loading and headline selection; --runs FILE: a report's tables/runs.csv instead (PLAN
           optional), its headline settings from the settings.csv beside it (else the report's rule without
           selection.json: the best mean validation score)
  power    exact, of the report's paired TOST (two one-sided paired t-tests at alpha each) at the true
           difference --true-diff, planning with the one-sided upper --bound-confidence bound of the pilot's
           sd (Browne 1995; a 3-seed sd is itself very uncertain), or the sd itself with --no-bound
  alpha    divided by the hypotheses of the report's Holm family: it holds two per compared task (the
           difference and the equivalence test), so the default `tasks` plans at alpha / 2k for the k tasks
           listed; --family-size K divides by K instead (1: plain alpha). Holm rejects whatever Bonferroni at
           alpha / 2k rejects, so the power planned is the least the report's equivalence test will have
  cost     one LoRA + one full run per seed: with PLAN, its cost model (`plan show`: GPU-hours at an assumed
           40% MFU on an H100, or --measured); with --runs only, the runs' measured wall time (mean per method)
           on the device they record
  pilots   fewer than 3 seed pairs give no number: the sd of 2 is no estimate to plan with
"""

RUNS_COLUMNS = ("task", "method", "seed", "status", "setting_id", "run_dir", "experiment", "learning_rate",
                "lora_r", "test_primary", "validation_primary")
SETTINGS_FILE = "settings.csv"
SETTINGS_COLUMNS = ("task", "method", "setting_id", "selected")


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("seeds", help="the seeds each task's equivalence test needs for a given power, from a "
                         "pilot's results, and what they cost", description=DESCRIPTION,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("plan", metavar="PLAN", nargs="?", type=_plan_or_override,
                   help="plan file (YAML) or a shipped plan's name: its results folder and cost model (optional "
                   "with --runs)")
    add_config_args(p)
    p.add_argument("--runs", metavar="RUNS_CSV", help="a report's tables/runs.csv instead of the plan's results")
    p.add_argument("--margin", type=float, default=1.0,
                   help="equivalence margin in points of each task's metric, as `tunebench report --margin` "
                   "(default 1)")
    p.add_argument("--alpha", type=float, default=0.05, help="level of each one-sided test (default 0.05)")
    p.add_argument("--power", type=float, action="append", metavar="P",
                   help="power to plan for, repeatable (default 0.8 and 0.9); the first one is the headline")
    p.add_argument("--true-diff", default="0", metavar="D|observed",
                   help="the true LoRA - full difference (points) the power is computed at: a number (default 0) "
                   "or `observed`, each task's pilot mean")
    p.add_argument("--no-bound", dest="use_bound", action="store_false",
                   help="plan with the pilot's sd itself rather than its upper confidence bound (optimistic: "
                   "about half the time the seeds fall short)")
    p.add_argument("--bound-confidence", type=float, default=0.8, metavar="C",
                   help="confidence of the sd's one-sided upper bound (default 0.8)")
    p.add_argument("--family-size", default="tasks", metavar="K|tasks",
                   help="divide alpha by K, or by the report's Holm family for the tasks listed (`tasks`, the "
                   "default: 2 hypotheses per task, difference and equivalence)")
    p.add_argument("--measured", metavar="FILE",
                   help="with PLAN: GPU-hours at the MFU `tunebench bench --gpu-check` measured (as plan show)")
    p.add_argument("--write-plan", metavar="FILE",
                   help="write a copy of PLAN with `seeds:` extended (the plan's seeds, then the next integers) "
                   "to the most seeds any task and power needs; same name, so the runs already done are kept. "
                   "Not the plan file itself; comments are not kept; --config / key=value are not written in")
    p.set_defaults(func=run_seeds)


def _plan_or_override(text: str) -> str:
    """argparse `type` of the optional PLAN: a plan file or shipped name (resolved), or a key=value override that
    took PLAN's place when no plan is given (`plan seeds k=v --runs FILE`; run_seeds moves it back)."""
    if "=" in text and not Path(text).is_file():
        return text
    return shipped_plan(text)


# ---------------------------------------------------------------- options


@dataclass(frozen=True)
class Options:
    margin: float = 1.0
    alpha: float = 0.05
    powers: tuple[float, ...] = (0.8, 0.9)
    true_diff: float | str = 0.0
    use_bound: bool = True
    bound_confidence: float = 0.8
    family_size: int | str = "tasks"    # or a number K


def parse_options(args: argparse.Namespace) -> Options:
    if not (math.isfinite(args.margin) and args.margin > 0):
        raise TunebenchError(f"--margin {args.margin:g}: expected a positive number of points")
    if not 0 < args.alpha < 0.5:
        raise TunebenchError(f"--alpha {args.alpha:g}: expected a level in (0, 0.5)")
    powers = tuple(args.power) if args.power else Options.powers
    for p in powers:
        if not 0 < p < 1:
            raise TunebenchError(f"--power {p:g}: expected a probability in (0, 1), e.g. 0.8")
    if not 0 < args.bound_confidence < 1:
        raise TunebenchError(f"--bound-confidence {args.bound_confidence:g}: expected a probability in (0, 1)")
    true_diff: float | str = OBSERVED
    if args.true_diff != OBSERVED:
        try:
            true_diff = float(args.true_diff)
        except ValueError:
            true_diff = math.nan
        if not math.isfinite(true_diff):
            raise TunebenchError(f"--true-diff {args.true_diff}: expected a number of points or `observed`")
    family: int | str = "tasks"
    if args.family_size != "tasks":
        try:
            family = int(args.family_size)
        except ValueError:
            family = 0
        if family < 1:
            raise TunebenchError(f"--family-size {args.family_size}: expected a positive integer or `tasks`")
    return Options(args.margin, args.alpha, powers, true_diff, args.use_bound, args.bound_confidence, family)


# ---------------------------------------------------------------- pilots: headline runs, pairs, hours


@dataclass
class Pilot:
    """The headline runs of a pilot (one setting per task x method, as the report picks it)."""

    headline: pd.DataFrame
    source: str                       # where the runs and the headline choice came from
    tasks: list[str]                  # every task listed, in the report's order
    notes: list[str] = field(default_factory=list)


def differences(headline: pd.DataFrame, task: str) -> tuple[list[int], list[float]]:
    """The common seeds of LoRA and full on `task` and LoRA - full (points) on each, as the report pairs them."""
    runs = headline[headline["task"] == task]
    lora, full = runs[runs["method"] == "lora"], runs[runs["method"] == "full"]
    by_seed = [g.dropna(subset=["seed", "test_primary"]).set_index("seed")["test_primary"] for g in (lora, full)]
    common = sorted(int(s) for s in set(by_seed[0].index) & set(by_seed[1].index))
    return common, [float(by_seed[0].loc[s]) - float(by_seed[1].loc[s]) for s in common]


def headline_runs(runs: pd.DataFrame, selections: dict, configs: dict,
                  selected: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The report's headline runs (report.build.select_headline) and its notes."""
    from tunebench.report import tables
    from tunebench.report.build import select_headline

    if "primary_metric" in runs.columns:
        runs = tables.add_primary_columns(runs)
    _, _, headline, notes = select_headline(runs, selections, configs, selected)
    return headline, notes


def pilot_from_results(results_dir: Path) -> Pilot:
    from tunebench.report.build import load_inputs, tasks_present
    from tunebench.report.groups import group_inputs, mixed_message

    inputs = load_inputs(results_dir)
    grouping = group_inputs(inputs)
    if grouping.mixed:   # never plan from a difference between runs that differ in more than the method
        raise TunebenchError(f"{results_dir}: {mixed_message(grouping)}: run `tunebench report` on it and "
                             "`plan seeds --runs` on one comparison's tables/runs.csv")
    headline, notes = headline_runs(inputs.runs, inputs.selections, inputs.configs)
    source = f"{results_dir} (headline setting per task x method as the report picks it)"
    return Pilot(headline, source, tasks_present(inputs.runs), notes)


def pilot_from_csv(path: Path) -> Pilot:
    import pandas as pd

    from tunebench.report.build import tasks_present

    where = f"--runs {path}"
    runs = _read_csv(path, where)
    missing = [c for c in RUNS_COLUMNS if c not in runs.columns]
    if missing:
        raise TunebenchError(f"{where}: no column{'s' if len(missing) > 1 else ''} {', '.join(missing)} (expected a "
                             "report's tables/runs.csv)")
    runs["seed"] = pd.to_numeric(runs["seed"], errors="coerce")
    if "arm" not in runs.columns:                 # a runs.csv written before arms: each method is its arm
        runs["arm"] = runs["method"]
    bad = runs.loc[runs["seed"].isna() & (runs["status"] == STATUS_OK), "run_dir"].tolist()
    if bad:
        raise TunebenchError(f"{where}: column seed: not a number for the ok run {bad[0]}")
    for col in ("test_primary", "validation_primary", "learning_rate"):
        runs[col] = pd.to_numeric(runs[col], errors="coerce")
    settings_path = path.parent / SETTINGS_FILE
    selected = None
    if settings_path.is_file():
        settings = _read_csv(settings_path, f"{settings_path} (beside --runs)")
        if all(c in settings.columns for c in SETTINGS_COLUMNS):
            chosen = settings["selected"].astype(str).str.lower() == "true"
            selected = settings.loc[chosen, list(SETTINGS_COLUMNS[:3])]
    how = (f"the report's, from {settings_path.name} beside it" if selected is not None else
           "no settings.csv beside it: the best mean validation score per task x method, the report's rule "
           "without selection.json")
    headline, notes = headline_runs(runs, {}, {}, selected)
    return Pilot(headline, f"{path} (headline setting per task x method: {how})", tasks_present(runs), notes)


def _read_csv(path: Path, where: str) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise TunebenchError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TunebenchError(f"{where}: cannot read ({type(e).__name__})") from None
    except pd.errors.EmptyDataError:
        raise TunebenchError(f"{where}: empty file (expected a report's tables/runs.csv)") from None
    except pd.errors.ParserError as e:
        raise TunebenchError(f"{where}: not a CSV table ({str(e).splitlines()[0]})") from None


def plan_hours_per_seed(plan: Plan, utilization: Utilization = ASSUMED) -> dict[str, float | None]:
    """Hours of one LoRA + one full run per task from the plan's cost model (tunebench.plan.cost, as `plan
    show`): the selected setting once the sweep has chosen it, else the costliest grid point; None where the
    plan lacks a method or the model's size is unknown."""
    from tunebench.plan.execute import costliest_per_slot, read_selection
    from tunebench.plan.expand import expand_final, expand_grid_final

    runs = None
    selection = read_selection(plan) if plan.two_stage else None
    if selection:
        try:
            runs = expand_final(plan, selection)
        except (KeyError, TypeError, TunebenchError):
            runs = None                       # a partial or stale selection: the grid's costliest instead
    slots, costs = costliest_per_slot(expand_grid_final(plan) if runs is None else runs)
    hours = {(r.task, r.method): utilization.hours(c, r.method, r.task)     # a run's cost does not depend on its
             for r, c in zip(slots, costs, strict=True) if r.seed == plan.seeds_of(r.task)[0]}   # seed: the first
    out: dict[str, float | None] = {}
    for task in plan.tasks:
        parts = [hours.get((task, m)) for m in ("lora", "full")]
        out[task] = None if any(p is None for p in parts) else sum(parts)   # type: ignore[arg-type]
    return out


# ---------------------------------------------------------------- the verb


def run_seeds(args: argparse.Namespace) -> int:
    from tunebench.report.power import measured_hours_per_seed, plan_seeds

    options = parse_options(args)
    plan_arg = args.plan
    if plan_arg is not None and "=" in plan_arg and not Path(plan_arg).is_file():
        args.overrides.insert(0, plan_arg)          # `plan seeds k=v --runs FILE`: no PLAN, an override
        plan_arg = None
    if plan_arg is None and (args.overrides or args.config):
        raise TunebenchError("--config and key=value overrides apply to a plan: give PLAN")
    if plan_arg is None and args.runs is None:
        raise TunebenchError("give PLAN (its results folder) or --runs FILE (a report's tables/runs.csv)")
    if args.write_plan and plan_arg is None:
        raise TunebenchError(f"--write-plan {args.write_plan}: needs PLAN (the plan to copy)")
    if args.measured and plan_arg is None:
        raise TunebenchError(f"--measured {args.measured}: needs PLAN (its cost model)")
    plan = load_plan(plan_arg, args.config, args.overrides) if plan_arg else None
    if args.write_plan and plan is not None and _same_file(Path(args.write_plan), plan.path):
        raise TunebenchError(f"--write-plan {args.write_plan}: that is the plan file itself; write the copy to "
                             "another file")
    if args.runs is not None:
        pilot = pilot_from_csv(Path(args.runs))
    else:
        assert plan is not None
        if not plan.output_dir.is_dir():
            raise TunebenchError(f"{plan.path}: no results folder {plan.output_dir} yet (`tunebench plan run` "
                                 "it first, or give --runs FILE)")
        pilot = pilot_from_results(plan.output_dir)
    if plan is not None:
        utilization = load_measured(args.measured) if args.measured else ASSUMED
        hours, unit = plan_hours_per_seed(plan, utilization), utilization.unit()
        tasks = [t for t in TASKS if t in set(pilot.tasks) | set(plan.tasks)]
        cost_source = f"cost: the plan's cost model, {utilization.describe()}"
    else:
        hours, unit = measured_hours_per_seed(pilot.headline)
        tasks = pilot.tasks
        cost_source = "cost: the runs' measured wall time (mean of each method's headline runs)"
    named = sorted(set(pilot.headline["arm"]) - {"lora", "full"}) if "arm" in pilot.headline else []
    if named:
        raise TunebenchError(f"{pilot.source}: named arms ({', '.join(named)}): `plan seeds` plans a two-arm study; "
                             "the report states the seeds each inconclusive task and arm would need (seeds_needed)")
    k = 2 * len(tasks) if options.family_size == "tasks" else int(options.family_size)
    plans = [plan_seeds(task, differences(pilot.headline, task)[1], options.margin, options.alpha, max(k, 1),
                        options.powers, options.true_diff, options.use_bound, options.bound_confidence)
             for task in tasks]
    print("\n".join(report_lines(plans, hours, unit, options, pilot, cost_source, k)))
    if args.write_plan:
        assert plan is not None
        again = " with the same --config / key=value" if args.config or args.overrides else ""
        print(write_plan_copy(plan, Path(args.write_plan), plans) + again)
    return 0


def report_lines(plans: list[SeedsPlan], hours: dict[str, float | None], unit: str, options: Options,
                 pilot: Pilot, cost_source: str, family_size: int) -> list[str]:
    from tunebench.report.power import describe, format_hours, margin_text

    family = ("plain alpha" if family_size == 1 else
              f"alpha {options.alpha:g}/{family_size} = {options.alpha / family_size:.4g} per test: Bonferroni over "
              f"the report's Holm family of {family_size} hypotheses, the least power it will have")
    diff = "each task's observed mean difference" if options.true_diff == OBSERVED else f"{options.true_diff:g}"
    sd = (f"the {100 * options.bound_confidence:g}% upper bound of each task's sd (Browne 1995)" if options.use_bound
          else "each task's observed sd (no bound: optimistic)")
    bound = f"{100 * options.bound_confidence:g}% bound"
    lines = [f"results: {pilot.source}",
             f"seeds (pairs: one LoRA + one full run each) for the paired TOST of LoRA - full within "
             f"{margin_text(options.margin)} at alpha {options.alpha:g} per one-sided test ({family}), at a true "
             f"difference of {diff}, planning with {sd}; {cost_source}",
             f"  {'task':<9} {'pairs':>5} {'LoRA-full':>9} {'sd':>6} {bound:>9} "
             + " ".join(f"{f'{100 * p:g}% power':>10}" for p in options.powers)
             + f"  {'cost per seed':>14}  cost at {100 * options.powers[0]:g}% power"]
    for p in plans:
        h = hours.get(p.task)
        seeds = " ".join(f"{_seeds_cell(p, n):>10}" for n in p.seeds)
        per_seed = f"{format_hours(h)} {_short(unit)}" if h is not None else "unknown"
        total = (f"{format_hours(p.seeds[0] * h)} {_short(unit)}" if h is not None and p.seeds[0] is not None
                 else "-")
        lines.append(f"  {p.task:<9} {p.n_pairs:>5} {_cell(p.mean_diff, '+.2f'):>9} {_cell(p.sd, '.2f'):>6} "
                     f"{_cell(p.sd_bound, '.2f'):>9} {seeds}  {per_seed:>14}  {total}")
    lines += [f"  {describe(p, hours.get(p.task), unit)}" for p in plans]
    lines += [f"note: {n}" for n in pilot.notes]
    return lines


def _seeds_cell(plan: SeedsPlan, n: int | None) -> str:
    if n is not None:
        return f"{n:,}"
    return "-" if plan.reason else f">{plan.max_n:,}"


def _cell(x: float, spec: str) -> str:
    return "-" if x is None or not math.isfinite(x) else format(x, spec)


def _short(unit: str) -> str:
    """'h measured on cpu (x86_64)' -> 'h' in the table (the unit is named in full in each task's line)."""
    return "h" if unit.startswith("h measured") else unit


# ---------------------------------------------------------------- --write-plan


def write_plan_copy(plan: Plan, out: Path, plans: list[SeedsPlan]) -> str:
    """Write PLAN's YAML to `out` with `seeds:` (and each `task_seeds:` entry) extended to the most seeds any
    task needs (atomically), config paths rewritten relative to the copy. Returns the line to print."""
    needs = [(p.most_seeds, p.task) for p in plans if p.most_seeds is not None]
    if not needs:
        raise TunebenchError(f"--write-plan {out}: no task has a number of seeds to plan for (see the lines above)")
    n, task = max(needs)
    seeds = _extended(plan.seeds, n)
    tree = read_plan_yaml(plan.path)
    tree["seeds"] = seeds
    if plan.task_seeds:                       # a task with its own seeds gets as many as every other one
        tree["task_seeds"] = {t: _extended(s, n) for t, s in plan.task_seeds.items()}
    if isinstance(tree.get("config"), (list, str)):
        files = [tree["config"]] if isinstance(tree["config"], str) else tree["config"]
        tree["config"] = [_relative_to(plan.path.parent, f, out.resolve().parent) for f in files]
    header = (f"# {plan.path.name} with seeds for {n} pairs ({task} needs the most), written by `tunebench plan "
              "seeds`\n")
    try:
        atomic_write_text(out, header + yaml.safe_dump(tree, sort_keys=False, default_flow_style=None,
                                                            width=110))
    except OSError as e:
        raise TunebenchError(f"--write-plan {out}: cannot write ({e.strerror or type(e).__name__})") from None
    kept = "" if n > len(plan.seeds) else f" (the plan's {len(plan.seeds)} seeds already suffice)"
    return (f"wrote {out}: seeds {seeds[0]}..{seeds[-1]} ({len(seeds)} seeds{kept}: {task} needs {n}); "
            f"`tunebench plan run {out}` keeps the runs already done")


def _extended(seeds: tuple[int, ...] | list[int], n: int) -> list[int]:
    """`seeds` followed by the next integers above its largest, up to n seeds."""
    out = list(seeds)
    nxt = max(out) + 1
    while len(out) < n:
        out.append(nxt)
        nxt += 1
    return out


def _relative_to(old_dir: Path, name: str, new_dir: Path) -> str:
    """A plan's config path (relative to the plan file) as seen from the copy's folder."""
    if Path(name).is_absolute():
        return name
    target = (old_dir / name).resolve()
    try:
        return os.path.relpath(target, new_dir)
    except ValueError:                      # another drive (Windows)
        return str(target)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and a.samefile(b))
    except OSError:
        return False
