"""`tunebench report RESULTS_DIR [--out DIR]`: tables, statistics, verdicts and plots from run folders.

Reads only the per-run result files (docs/results.md) below RESULTS_DIR, at any depth, and writes the
report folder (layout: tunebench.report.render). Prints one verdict per task and the HTML report's path.
When the runs differ in more than the method, its own settings and the seed (two models, two precisions, ...),
each comparison gets its own report in a subfolder and the report folder an index (tunebench.report.split).
Exit 0 when results were read (even if no run is ok); 2 when RESULTS_DIR is missing or holds no runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tunebench.errors import TunebenchError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="tables, statistics, verdicts and plots from run results")
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="folder holding run folders (any depth)")
    p.add_argument("--out", metavar="DIR", default=None, help="report folder (default: RESULTS_DIR/report)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the verdicts (default 0.05)")
    p.add_argument("--margin", type=float, default=1.0, metavar="POINTS",
                   help="equivalence margin in points of each task's primary metric: 'LoRA matches full "
                   "fine-tuning' is said only when a TOST shows the difference within +-POINTS (default 1)")
    p.add_argument("--learn-margin", type=float, default=0.0, metavar="POINTS",
                   help="points by which each arm must beat the best constant predictor on test (one-sided test) "
                   "to count as having learned the task; LoRA is compared with full fine-tuning only where both "
                   "did (default 0: beat it significantly)")
    p.add_argument("--bootstrap-resamples", type=int, default=10_000, metavar="N",
                   help="paired-bootstrap resamples of the example-level and learned tests (default 10000; seed "
                   "fixed)")
    p.add_argument("--bootstrap-seed", type=int, default=0, metavar="SEED", help="bootstrap seed (default 0)")
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    if not 0 < args.alpha < 0.5:
        raise TunebenchError(f"--alpha {args.alpha}: must be between 0 and 0.5 (the equivalence test uses a "
                             f"1 - 2 alpha interval)")
    if not args.margin > 0:
        raise TunebenchError(f"--margin {args.margin}: must be positive (points of the primary metric)")
    if not args.learn_margin >= 0:
        raise TunebenchError(f"--learn-margin {args.learn_margin}: must be 0 or more (points of the primary metric)")
    if args.bootstrap_resamples < 1:
        raise TunebenchError(f"--bootstrap-resamples {args.bootstrap_resamples}: must be at least 1")
    # Imported here so that `tunebench --help` does not pay for pandas and scipy.
    from tunebench.report.split import build_reports, mixed_lines, write_reports

    results = Path(args.results_dir)
    out = Path(args.out) if args.out else results / "report"
    reports = build_reports(results, out_dir=out, alpha=args.alpha, n_resamples=args.bootstrap_resamples,
                            bootstrap_seed=args.bootstrap_seed, margin=args.margin,
                            learn_margin=args.learn_margin)
    written = write_reports(reports, out)
    if reports.mixed:   # one report per comparison (tunebench.report.split), never one across them
        print("\n".join(mixed_lines(reports, written)))
        return 0
    report = reports.single
    print(f"{len(report.runs)} runs read: {report.n_ok} ok, {len(report.failed)} failed or unfinished")
    for sentence in report.verdicts.values():
        print(sentence)
    for note in report.notes:
        print(f"note: {note}")
    if report.n_ok == 0:
        print("no run finished ok: nothing to compare; see the failed-runs table")
    print(f"report: {written['report.html']}")
    return 0
