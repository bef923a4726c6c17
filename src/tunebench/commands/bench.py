"""`tunebench bench`: throughput, memory and MFU of tunebench's training against three baselines."""

from __future__ import annotations

import argparse
from pathlib import Path

from tunebench.commands._common import add_config_args, add_list_option, config_from_args, table_console
from tunebench.config import METHODS, with_overrides
from tunebench.tasks import task_names

# tunebench.bench.BASELINES, spelled here so that building the CLI parser imports no torch.
BASELINES = ("original", "trainer", "raw", "tunebench")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="measure tokens/s, step time, memory and MFU against the standard recipes",
        description="Train the same examples with each baseline (original: padded to max_length, random "
        "batches; trainer: best-practice Trainer; raw: a bare PyTorch loop; tunebench: tunebench's own path), "
        "interleaved in one process, and report non-pad tokens/s, samples/s, step time, peak memory, MFU "
        "(GPU) and tunebench's speed-up over each. Writes JSON (--out).",
    )
    p.add_argument("--model", help="model (sets model.name): hub id, local folder, or tiny")
    p.add_argument("--task", choices=task_names(), help="task (sets task; default: the config's)")
    add_list_option(p, "--methods", choices=METHODS, default=list(METHODS), metavar="METHOD",
                    help="lora and/or full (default: both)")
    add_list_option(p, "--baselines", choices=BASELINES, default=list(BASELINES), metavar="NAME",
                    help=f"baselines to time (default: all): {' '.join(BASELINES)}")
    p.add_argument("--steps", type=int, default=50, help="optimizer steps per timed run (default 50)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds, order alternating; medians reported")
    p.add_argument("--warmup-steps", type=int, default=5, help="steps of the discarded warm-up round (0: none)")
    p.add_argument("--eval-share-steps", type=int, default=0, metavar="N",
                   help="also run tunebench's engine for N steps with evaluation every N/2 and report the "
                   "evaluation share of wall time (0: skip)")
    p.add_argument("--accuracy", action="store_true",
                   help="also train original and tunebench for training.num_train_epochs on the train split "
                   "(e.g. data.max_train_examples=2000) and score both on the test split")
    add_list_option(p, "--accuracy-seeds", convert=int, default=None, metavar="SEED",
                    help="with --accuracy: train both recipes with each seed and compare the means "
                    "(default: training.seed)")
    p.add_argument("--compare-threads", action="store_true",
                   help="CPU: also time tunebench's path at torch's default thread count vs the one it chose")
    p.add_argument("--out", type=Path, help="JSON report (default: <output_dir>/<experiment>/bench-<task>.json)")
    g = p.add_argument_group(
        "GPU check", "one prepared check of the GPU path in under 5 minutes on one H100/H200-class GPU, no network "
        "(tunebench.bench.gpu_check, docs/bench.md): the study's model shape at random init (sanity checks, tokens/s, "
        "memory, MFU, SDPA backend, largest batch, determinism, checkpointing, torch.compile) and a real run with "
        "the report; writes OUT_DIR/gpu_check.json and gpu_check.log. The options above do not apply to it")
    g.add_argument("--gpu-check", type=Path, metavar="OUT_DIR", help="run the GPU check into OUT_DIR")
    g.add_argument("--gpu-check-model", type=Path, metavar="DIR",
                   help="a real checkpoint folder for the real run (e.g. stories260K; default: the tiny model)")
    g.add_argument("--gpu-check-glue", type=Path, metavar="DIR",
                   help="GLUE folder holding RTE/ for the real run (default: the builtin RTE)")
    g.add_argument("--gpu-check-budget", type=float, metavar="SECONDS",
                   help="total time budget (default 255 s on a GPU, 240 s with --smoke); parts that no longer fit "
                   "are skipped and recorded as skipped")
    g.add_argument("--smoke", action="store_true",
                   help="the same check on the CPU in seconds, with a tiny shape (what CI runs)")
    add_config_args(p)
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tunebench.errors import TunebenchError

    if args.gpu_check is not None:
        return _gpu_check(args)
    extra = [f for f, v in (("--gpu-check-model", args.gpu_check_model), ("--gpu-check-glue", args.gpu_check_glue),
                            ("--gpu-check-budget", args.gpu_check_budget), ("--smoke", args.smoke))
             if v is not None and v is not False]
    if extra:
        raise TunebenchError(f"{extra[0]}: only with --gpu-check OUT_DIR")

    from tunebench.bench.measure import run_bench
    from tunebench.io import atomic_write_json

    for flag in ("steps", "repeats"):
        if getattr(args, flag) < 1:
            raise TunebenchError(f"--{flag} must be at least 1")
    if args.accuracy_seeds and not args.accuracy:
        raise TunebenchError("--accuracy-seeds: only with --accuracy")
    cfg = config_from_args(args)
    updates = {k: v for k, v in (("model.name", args.model), ("task", args.task)) if v}
    cfg = with_overrides(cfg, updates) if updates else cfg
    console = Console(stderr=True)
    with console.status("benchmarking...") as status:
        report = run_bench(cfg, list(dict.fromkeys(args.methods)), list(args.baselines), args.steps, args.repeats,
                           max(0, args.warmup_steps), args.accuracy, max(0, args.eval_share_steps),
                           args.compare_threads, progress=lambda s: status.update(s),
                           accuracy_seeds=list(dict.fromkeys(args.accuracy_seeds or [])))
    print_report(report)
    out = args.out or Path(cfg.output_dir) / cfg.experiment / f"bench-{cfg.task}.json"
    atomic_write_json(out, report)
    print(f"report: {out}")
    return 0


def _gpu_check(args: argparse.Namespace) -> int:
    """Exit 0 when every part that ran passed (targets are measured, never asserted), 1 otherwise."""
    from tunebench.bench.gpu_check import JSON_FILE, LOG_FILE, run_gpu_check
    from tunebench.config import parse_override

    cfg = config_from_args(args)            # validates the config files and overrides first (one-line errors)
    overrides = dict(parse_override(o) for o in args.overrides)
    report = run_gpu_check(args.gpu_check, cfg, smoke=args.smoke, model_dir=args.gpu_check_model,
                           glue_dir=args.gpu_check_glue, overrides=overrides, budget_s=args.gpu_check_budget)
    print_gpu_check(report)
    print(f"gpu check: {args.gpu_check / JSON_FILE} (log: {args.gpu_check / LOG_FILE})")
    return 0 if report["ok"] else 1


def print_gpu_check(report: dict) -> None:
    from rich.table import Table

    from tunebench.bench import format_bytes

    table = Table(title=f"gpu check ({report['mode']}): {report['env']['device_name']}, {report['wall_s']:.0f} s")
    for col in ("method", "tokens/s", "peak mem", "MFU", "largest batch", "real run"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for method, s in report["summary"].items():
        search = report["batch_search"].get(method, {})
        run = report["real_run"].get("runs", {}).get(method, {})
        table.add_row(method, f"{s['tokens_per_s']:,.0f}", format_bytes(s["peak_memory_bytes"]),
                      "n/a" if s["mfu"] is None else f"{100 * s['mfu']:.1f}%",
                      str(search.get("largest_fitting", "")), str(run.get("status", "")))
    console = table_console()
    console.print(table)
    console.print("parts: " + ", ".join(f"{k} {v['status']}" for k, v in report["parts"].items()))
    for key, t in report["targets"].items():
        met = "n/a" if t["met"] is None else "[green]met[/green]" if t["met"] else "[red]missed[/red]"
        value = "n/a" if t["value"] is None else f"{t['value']:.3f}"
        console.print(f"target {key} {t['op']} {t['threshold']:g}: {value} {met}")


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from tunebench.bench import format_bytes

    env, load = report["env"], report["load_avg"]
    title = (f"bench: {report['model']} on {report['task']}, {report['steps']} steps x {report['repeats']} "
             f"repeats, {env['device_name']}, load {load['start'][0]:.2f}->{load['end'][0]:.2f}")
    table = Table(title=title)
    for col in ("method", "baseline", "tokens/s", "samples/s", "step ms", "pad %", "peak mem", "MFU",
                "tunebench x"):
        table.add_column(col, justify="right" if col not in ("method", "baseline") else "left")
    for method, entry in report["methods"].items():
        for name, s in entry["baselines"].items():
            ratio = entry["speedups"].get(name)
            table.add_row(method, name, f"{s['tokens_per_s']:,.0f}", f"{s['samples_per_s']:,.1f}",
                          f"{1000 * s['step_time_s']:.1f}", f"{100 * s['padding_share']:.0f}",
                          format_bytes(s["peak_mem_bytes"]), "n/a" if s["mfu"] is None else f"{100 * s['mfu']:.2f}%",
                          "" if ratio is None else f"{ratio:.2f}")
    console = Console(width=max(Console().width, 120))    # the table needs about 110 columns
    console.print(table)
    console.print("switches: " + ", ".join(f"{k}={v}" for k, v in report["switches"].items()))
    pad = report.get("padding_invariance", {})
    if pad.get("checked"):
        console.print(f"padding to max_length changes logits by at most {pad['max_abs_logit_diff']:.2e} "
                      f"(same predictions: {pad['same_predictions']})")
    for method, entry in report["methods"].items():
        _print_extras(console, method, entry)


def _print_extras(console, method: str, entry: dict) -> None:
    for name, t in entry.get("targets", {}).items():
        mark = "[green]met[/green]" if t["met"] else "[red]missed[/red]"
        console.print(f"{method}: tunebench / {name} = {t['ratio']:.2f} (target >= {t['target']:g}) {mark}")
    if entry.get("threads"):
        t = entry["threads"]
        console.print(f"{method}: {t['chosen_threads']} CPU thread(s) vs torch's default {t['default_threads']}: "
                      f"{t['speedup']:.2f}x tokens/s")
    if "eval_share" in entry:
        e = entry["eval_share"]
        console.print(f"{method}: eval share {100 * e['timing']['eval_share']:.0f}% of wall time in a "
                      f"{e['steps']}-step run evaluating every {e['eval_steps']} steps")
        if "projected_full_run" in e:
            p = e["projected_full_run"]
            console.print(f"{method}: projected for the whole run ({p['steps']:.0f} steps, evaluation every "
                          f"{p['eval_interval']} steps, {p['evaluations']} passes): "
                          f"{100 * p['eval_share']:.0f}% of the time in evaluation")
    if "accuracy" in entry:
        a, m = entry["accuracy"], entry["accuracy"]["metric"]
        mean, seeds, e = a["mean_points"], " ".join(str(s) for s in a["seeds"]), a["equivalence"]
        if e["design"] == "none":
            verdict = "equivalence not assessed (one seed: use --accuracy-seeds)"
        else:
            shown = "[green]equivalent[/green]" if e["equivalent"] else "[yellow]equivalence not shown[/yellow]"
            verdict = (f"{shown} within ±{e['margin']:g} (TOST p = {e['p']:.3f}, "
                       f"{100 * (1 - 2 * e['alpha']):g}% CI [{e['ci_low']:+.2f}, {e['ci_high']:+.2f}])")
        console.print(f"{method}: test {m} (mean over seeds {seeds}) original {mean['original']:.2f}, tunebench "
                      f"{mean['tunebench']:.2f}: {a['difference_points']:+.2f} points; {verdict} "
                      f"({a['steps']} steps on {a['train_examples']} examples)")
