"""`tunebench demo`: the whole study in miniature on a CPU, in minutes, with no download.

Sanity checks on the tiny model, then the demo plan (4 builtin tasks x 2 methods x 3 seeds, with a per-method
learning-rate sweep on the validation split), then the report. Re-running skips finished runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tunebench.errors import TunebenchError

DEFAULT_PLAN = Path("configs/plans/demo.yaml")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="sanity checks + the whole study on builtin tasks (tiny model, CPU, minutes) + the report",
        description="Runs the seven sanity checks, the demo plan and the report; ends with the HTML report's path.",
    )
    p.add_argument("--plan", type=Path, default=DEFAULT_PLAN, help=f"demo plan (default {DEFAULT_PLAN})")
    p.add_argument("--output-dir", default="results", help="results folder (default results)")
    p.add_argument("--skip-sanity", action="store_true", help="go straight to the study")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from tunebench.commands.plan import check_machine
    from tunebench.plan import Options, load_plan, run_plan
    from tunebench.report.build import build_report
    from tunebench.report.render import write_report

    if not args.plan.is_file():
        raise TunebenchError(f"{args.plan}: demo plan not found (run from the repository root, or pass --plan)")
    t0 = time.perf_counter()
    plan = load_plan(args.plan, overrides=[f"output_dir={args.output_dir}"])
    check_machine(plan)
    if not args.skip_sanity and not _sanity(plan):
        return 1
    _step(f"study: {args.plan} ({plan.name})")
    results = run_plan(plan, "all", Options())
    failed = [rid for st in results for rid, rec in st.results.items() if not rec or rec.get("status") != "ok"]
    _step("report")
    results_dir = Path(args.output_dir) / plan.name
    report = build_report(results_dir, out_dir=results_dir / "report")
    written = write_report(report, results_dir / "report")
    for sentence in report.verdicts.values():
        print(sentence)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; {len(failed)} run(s) not ok")
    print(f"report: {written['report.html']}")
    return 0 if not failed else 1


def _sanity(plan) -> bool:
    """The seven checks on the plan's own base config (tiny model, builtin data), both methods."""
    from tunebench.commands.sanity import print_table
    from tunebench.config import with_overrides
    from tunebench.sanity import all_passed, run_checks

    _step("sanity checks (the demo's model and data, both methods)")
    t = time.perf_counter()
    cfg = with_overrides(plan.base, {"experiment": f"{plan.name}-sanity"})
    results = run_checks(cfg, ["sst2"], ["lora", "full"])
    print_table(results, time.perf_counter() - t)
    return all_passed(results)


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)
