"""`tunebench demo`: the whole study in miniature on a CPU, in minutes, with no download.

Sanity checks on the plan's model, then the demo plan (4 builtin tasks x 2 methods x 3 seeds, each method at
its own learning rate), then `tunebench analyze` on the finished runs (forgetting and weight-update spectra; full
fine-tuning runs keep their weights for it: training.save_full_model in the plan), then the report.
Re-running skips finished runs and runs already analysed. On the random `tiny` model the analysis is a
plumbing check, and the report says so. `--plan study_cpu` runs the same steps on the real data with a real
pretrained checkpoint (`make study-cpu`, about an hour): a worked example, not a plumbing check; `--plan
study_smollm2 --backend ray` does it on SmolLM2-135M with both CPU cores at once (`make study-smollm2`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tunebench.commands._common import shipped_plan

DEFAULT_PLAN = "demo"            # the shipped plan (tunebench config list): the demo runs from any folder
PLUMBING_LABEL = ("Plumbing check, not a finding: the demo fine-tunes the random `tiny` model (no pretraining) with "
                  "a word-level tokenizer that knows only the builtin tasks' words, so the held-out text is mostly "
                  "unknown tokens and these forgetting and spectrum numbers only show that the analysis runs end "
                  "to end. Run `tunebench analyze` on a real checkpoint's results for numbers that mean something.")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="sanity checks + the whole study on builtin tasks (tiny model, CPU, minutes) + the report",
        description="Runs the seven sanity checks, a plan (default: the demo plan, builtin tasks and the tiny "
        "model), the analysis and the report; ends with the HTML report's path. --plan study_cpu does the same on "
        "the real data with the pretrained stories260K checkpoint (make study-cpu, about an hour).",
    )
    p.add_argument("--plan", type=_plan_path, default=DEFAULT_PLAN,
                   help=f"plan file or a shipped plan's name, e.g. demo_sweep or study_cpu (default {DEFAULT_PLAN})")
    p.add_argument("--output-dir", default="results", help="results folder (default results)")
    p.add_argument("--skip-sanity", action="store_true", help="go straight to the study")
    p.add_argument("--skip-analysis", action="store_true",
                   help="no forgetting / spectrum analysis (tunebench analyze) before the report")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local (default): one run after another; ray: one run per GPU (or CPU core) of a Ray "
                   "cluster, e.g. both cores of a laptop at once, one thread per run")
    p.add_argument("--address", default=None,
                   help="Ray cluster address, e.g. HEAD:6379 (default: start or join a local one)")
    p.set_defaults(func=_demo)


def _plan_path(name: str) -> Path:
    return Path(shipped_plan(name))


def _demo(args: argparse.Namespace) -> int:
    from tunebench.commands.plan import check_machine
    from tunebench.plan import Options, load_plan, run_plan
    from tunebench.report.split import build_reports, mixed_lines, write_reports

    t0 = time.perf_counter()
    plan = load_plan(args.plan, overrides=[f"output_dir={args.output_dir}"])
    check_machine(plan)
    if not args.skip_sanity and not _sanity(plan):
        return 1
    _step(f"study: {args.plan} ({plan.name})")
    results = run_plan(plan, "all", Options(backend=args.backend, address=args.address))
    failed = [rid for st in results for rid, rec in st.results.items() if not rec or rec.get("status") != "ok"]
    results_dir = Path(args.output_dir) / plan.name
    tiny = plan.base.model.name == "tiny"
    analysis_failed = 0 if args.skip_analysis else _analysis(results_dir, tiny)
    _step("report")
    reports = build_reports(results_dir, out_dir=results_dir / "report")
    written = write_reports(reports, results_dir / "report", analysis_label=PLUMBING_LABEL if tiny else None)
    if reports.mixed:   # runs of an earlier, different version of the plan: one report per comparison
        print("\n".join(mixed_lines(reports, written)[1:-1]))
    else:
        for sentence in reports.single.verdicts.values():
            print(sentence)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; {len(failed)} run(s) not ok"
          + (f"; {analysis_failed} analysis(es) failed" if analysis_failed else ""))
    print(f"report: {written['report.html']}")
    return 0 if not failed and not analysis_failed else 1


def _analysis(results_dir: Path, tiny: bool) -> int:
    """`tunebench analyze --skip-existing` on the demo's ok runs (builtin held-out text, default settings);
    one line per run. Returns the number of runs whose analysis failed (skipped ones are not failures)."""
    from tunebench.analysis.forgetting import load_text
    from tunebench.analysis.run import find_ok_runs
    from tunebench.commands.analyze import analyze_folders

    _step("analysis: forgetting and weight-update spectra"
          + (" (plumbing check on the random tiny model)" if tiny else " (held-out text: the builtin paragraphs)"))
    t = time.perf_counter()
    ok, _ = find_ok_runs(results_dir)
    counts = analyze_folders(ok, load_text("builtin") if ok else None, skip_existing=True)
    print(f"analysis: {counts['done']} run(s) analysed, {counts['skipped']} already done or skipped, "
          f"{counts['failed']} failed ({time.perf_counter() - t:.0f} s)")
    return counts["failed"]


def _sanity(plan) -> bool:
    """The seven checks on the plan's own base config (its model and data), both methods."""
    from tunebench.commands.sanity import print_table
    from tunebench.config import with_overrides
    from tunebench.sanity import all_passed, run_checks

    _step("sanity checks (the plan's model and data, both methods)")
    t = time.perf_counter()
    # the checks run one at a time, so on every core whatever the plan gives each run (null: the default policy)
    cfg = with_overrides(plan.base, {"experiment": f"{plan.name}-sanity", "training.cpu_threads": None})
    results = run_checks(cfg, ["sst2"], ["lora", "full"])
    print_table(results, time.perf_counter() - t)
    return all_passed(results)


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)
