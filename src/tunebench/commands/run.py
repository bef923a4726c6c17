"""`tunebench run`: the original study's experiment runner (tasks x methods x seeds), one run at a time."""

from __future__ import annotations

import argparse

from tunebench.commands._common import add_config_args, add_list_option, config_from_args, table_console
from tunebench.config import METHODS
from tunebench.plan.expand import expand_runs
from tunebench.tasks import task_names


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="train and evaluate: tasks x methods x seeds",
        description="Train and evaluate every combination of --tasks, --methods and --seeds, each into "
        "<output_dir>/<experiment>/<run_id>/, then print a table of results.",
    )
    add_list_option(p, "--tasks", choices=task_names(), metavar="TASK",
                    help=f"tasks to run (default: the config's task); choices: {' '.join(task_names())}")
    add_list_option(p, "--methods", choices=METHODS, metavar="METHOD",
                    help="lora and/or full (default: the config's method)")
    add_list_option(p, "--seeds", convert=int, metavar="SEED", help="training seeds (default: training.seed)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last checkpoint (the default; kept for the original CLI)")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even when a checkpoint exists")
    p.add_argument("--skip-preflight", action="store_true",
                   help="skip the fast sanity checks (loading, LoRA setup, gradient flow) before training")
    add_config_args(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from tunebench.model import resolve_device
    from tunebench.runner import run_one
    from tunebench.tracking import check_backend
    from tunebench.train import check_switches

    console = Console(stderr=True)
    configs = expand_runs(config_from_args(args), args.tasks, args.methods, args.seeds)
    device = resolve_device()
    for cfg in configs:       # what this machine cannot run (precision, switches, tracker): one line, exit 2
        check_switches(cfg, device)
        check_backend(cfg)
    records = []
    for i, cfg in enumerate(configs, 1):
        console.print(f"[bold][{i}/{len(configs)}][/bold] {cfg.task} {cfg.method} seed {cfg.training.seed} "
                      f"lr {cfg.learning_rate:g}")
        with console.status("training..."):
            rec = run_one(cfg, resume=not args.no_resume, preflight=not args.skip_preflight)
        records.append(rec)
        reason = escape(rec.get("reason") or "")      # a reason may hold brackets (pip extras, shapes)
        status = {"ok": "[green]ok[/green]", "running": f"[yellow]busy[/yellow]: {reason}"}.get(
            rec["status"], f"[red]failed[/red]: {reason}")
        for finding in rec.get("findings") or []:     # ok, and yet collapsed (tunebench.findings)
            status += f"; [yellow]{escape(finding['kind'])}[/yellow]: {escape(finding['detail'])}"
        console.print(f"    {status}  {rec['run_id']}")
    print_results_table(records)
    return 0 if all(r["status"] == "ok" for r in records) else 1


def print_results_table(records: list[dict]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="results (test = official dev split)")
    for col in ("run", "status", "test metric", "best val", "trainable", "wall s", "tokens/s"):
        table.add_column(col)
    for r in records:
        if r["status"] != "ok":
            table.add_row(r["run_id"], "busy" if r["status"] == "running" else "failed", escape(r.get("reason") or ""),
                          "", "", "", "")
            continue
        metric = r["primary_metric"]
        table.add_row(
            r["run_id"], "ok", f"{metric} {r['test'][metric]:.4g}", f"{r['best_validation']['value']:.4g}",
            f"{r['params']['trainable']:,} ({100 * r['params']['trainable_share']:.2f}%)",
            f"{r['timing']['wall_s']:.1f}", f"{r['tokens']['tokens_per_s']:.0f}",
        )
    table_console().print(table)
