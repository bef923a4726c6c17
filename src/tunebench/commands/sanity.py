"""`tunebench sanity`: the seven checks for both methods; a table, a JSON report, non-zero exit on failure."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tunebench.commands._common import add_config_args, add_list_option, config_from_args, table_console
from tunebench.config import METHODS, with_overrides
from tunebench.tasks import task_names

# The names of tunebench.sanity.CHECKS, spelled here so that building the CLI parser imports no torch/peft
# (tests/test_sanity.py checks they agree).
CHECKS = ("model_loading", "lora_setup", "data_loading", "gradient_flow", "overfitting", "wandb_logging",
          "reproducibility")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sanity", help="the seven sanity checks (each able to fail) for both methods",
        description="Model loading, LoRA setup, data loading, gradient flow, overfitting, W&B logging and "
        "reproducibility. Prints a table, writes <output_dir>/<experiment>/sanity.json, exits 1 if any fails.",
    )
    p.add_argument("--model", help="model to check (sets model.name): hub id, local folder, or tiny")
    add_list_option(p, "--tasks", choices=task_names(), metavar="TASK", help="tasks (default: the config's)")
    add_list_option(p, "--methods", choices=METHODS, default=list(METHODS), metavar="METHOD",
                    help="lora and/or full (default: both)")
    add_list_option(p, "--checks", choices=CHECKS, default=list(CHECKS), metavar="CHECK",
                    help=f"subset of checks: {' '.join(CHECKS)}")
    add_config_args(p)
    p.set_defaults(func=_sanity)


def _sanity(args: argparse.Namespace) -> int:
    from tunebench.io import atomic_write_json
    from tunebench.sanity import all_passed, run_checks

    cfg = config_from_args(args)
    if args.model:
        cfg = with_overrides(cfg, {"model.name": args.model})
    t0 = time.perf_counter()
    results = run_checks(cfg, args.tasks, args.methods, tuple(args.checks))
    elapsed = time.perf_counter() - t0
    print_table(results, elapsed)
    out = Path(cfg.output_dir) / cfg.experiment / "sanity.json"
    atomic_write_json(out, {"passed": all_passed(results), "elapsed_s": elapsed, "model": cfg.model.name,
                            "checks": [r.as_dict() for r in results]})
    print(f"report: {out}")
    return 0 if all_passed(results) else 1


def print_table(results, elapsed: float) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"sanity checks ({elapsed:.0f} s)")
    for col in ("check", "method", "result", "figure", "detail"):
        table.add_column(col, overflow="fold")
    for r in results:
        verdict = "[green]pass[/green]" if r.passed else "[yellow]skip[/yellow]" if r.skipped else "[red]FAIL[/red]"
        table.add_row(r.check, r.method, verdict, escape(r.figure), escape(r.detail))   # texts hold [extras]
    table_console().print(table)
