"""`tunebench data import|download|validate|summary`: fill the data cache, check it, describe it.

This is the edge: it reads the config, calls the pure data functions and prints. Bad input (a missing file,
a malformed row, an unknown task) is a TunebenchError: one line, exit 2. `validate` exits 1 when a check
finds an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tunebench.commands._common import add_config_args, config_from_args, table_console
from tunebench.config import Config
from tunebench.data.sources import (
    available_tasks,
    download_hub,
    import_local,
    load_split_records,
    validate_loaded_task,
)
from tunebench.data.splits import SPLITS
from tunebench.data.summary import summarize_split, token_lengths
from tunebench.data.tasks import TASKS, get_task
from tunebench.data.validate import Finding, count_errors, worst_level
from tunebench.errors import TunebenchError
from tunebench.tasks import qa_task_names

STYLE = {"ok": "green", "warning": "yellow", "error": "bold red"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="import, download, validate and summarize the task data")
    verbs = p.add_subparsers(dest="data_verb", metavar="ACTION", required=True)

    imp = verbs.add_parser("import", help="read the official GLUE TSV / SQuAD v2 JSON files into the data cache")
    glue_folders = ", ".join(f"{s.raw_dir}/" for s in TASKS.values() if not s.is_qa)
    imp.add_argument("--glue-dir", metavar="DIR",
                     help=f"folder with {glue_folders} (train.tsv, dev.tsv); default data.glue_dir")
    imp.add_argument("--squad-dir", metavar="DIR",
                     help="folder with train-v2.0[.partial].json and dev-v2.0.json; default data.squad_dir")
    _add_tasks(imp, f"default: the GLUE tasks found in the GLUE folder, {' and '.join(qa_task_names())} when a "
                    "SQuAD folder is given")
    imp.set_defaults(func=_import)

    dl = verbs.add_parser("download", help="fetch the tasks from the Hugging Face hub into the data cache")
    _add_tasks(dl, "default: all")
    dl.set_defaults(func=_download)

    val = verbs.add_parser("validate", help="check counts, labels, duplicates, overlap and SQuAD answers")
    _add_tasks(val, "default: every task with data for the configured source")
    val.add_argument("--verbose", "-v", action="store_true", help="one row per check (default: per split)")
    val.set_defaults(func=_validate)

    summ = verbs.add_parser("summary", help="rows, label distribution and token lengths per split")
    _add_tasks(summ, "default: every task with data for the configured source")
    summ.add_argument("--no-lengths", action="store_true", help="skip token lengths (no tokenizer needed)")
    summ.set_defaults(func=_summary)


def _add_tasks(parser: argparse.ArgumentParser, default_help: str) -> None:
    parser.add_argument("--tasks", nargs="+", default=[], metavar="TASK",
                        help=f"{', '.join(TASKS)} (space- or comma-separated; {default_help})")
    add_config_args(parser)


def parse_tasks(values: list[str]) -> tuple[list[str], list[str]]:
    """(tasks, overrides): `--tasks` is greedy, so key=value words after it are moved back to the overrides."""
    tasks, overrides = [], []
    for value in values:
        if "=" in value:
            overrides.append(value)
            continue
        for name in filter(None, value.split(",")):
            tasks.append(get_task(name.strip()).name)
    return list(dict.fromkeys(tasks)), overrides


def _config_and_tasks(args: argparse.Namespace) -> tuple[Config, list[str]]:
    tasks, extra = parse_tasks(args.tasks)
    args.overrides = [*args.overrides, *extra]  # words after --tasks came later on the command line
    return config_from_args(args), tasks


def _warn(line: str) -> None:
    print(f"tunebench: warning: {line}", file=sys.stderr)


# ---------------------------------------------------------------- import / download


def _import(args: argparse.Namespace) -> int:
    cfg, tasks = _config_and_tasks(args)
    glue_dir = args.glue_dir or cfg.data.glue_dir
    squad_dir = args.squad_dir or cfg.data.squad_dir
    if not tasks:
        tasks = default_import_tasks(glue_dir, squad_dir)
    _report_prepared(import_local(cfg.data.dir, tasks, glue_dir, squad_dir), cfg)
    return 0


def default_import_tasks(glue_dir: str | None, squad_dir: str | None) -> list[str]:
    """The GLUE tasks whose folder is in glue_dir, and the QA task (squad_v2) when a SQuAD folder is given."""
    if not glue_dir and not squad_dir:
        raise TunebenchError("data import: give --glue-dir DIR and/or --squad-dir DIR "
                             "(or set data.glue_dir / data.squad_dir)")
    tasks = []
    if glue_dir:
        glue = [s for s in TASKS.values() if not s.is_qa]
        tasks = [s.name for s in glue if (Path(glue_dir) / s.raw_dir).is_dir()]
        if not tasks:
            folders = ", ".join(f"{s.raw_dir}/" for s in glue)
            raise TunebenchError(f"{glue_dir}: no GLUE task folder in it (expected {folders})")
    return tasks + (list(qa_task_names()) if squad_dir else [])


def _download(args: argparse.Namespace) -> int:
    cfg, tasks = _config_and_tasks(args)
    _report_prepared(download_hub(cfg.data.dir, tasks or list(TASKS)), cfg)
    return 0


def _report_prepared(prepared: list, cfg: Config) -> None:
    for p in prepared:
        for line in p.warnings:
            _warn(line)
        rows = " / ".join(f"{len(p.splits[s]):,} {s}" for s in ("train", "test"))
        partial = " (partial train file)" if "train" in p.extra.get("partial", []) else ""
        print(f"{p.spec.name}: {rows}{partial} -> {cfg.data.dir}/{p.spec.name} ({p.source})")


# ---------------------------------------------------------------- validate


def _validate(args: argparse.Namespace) -> int:
    cfg, tasks = _config_and_tasks(args)
    findings: list[Finding] = []
    sources = []
    for task in tasks or _default_tasks(cfg):
        task_findings, cached, _ = validate_loaded_task(cfg, task)
        findings += task_findings
        sources.append(f"{task}: {cached.manifest.get('source')}")
    _print_findings(findings, "sources: " + ", ".join(sources), args.verbose)
    errors = count_errors(findings)
    warnings = sum(f.level == "warning" for f in findings)
    print(f"data validate: {errors} error(s), {warnings} warning(s)")
    return 1 if errors else 0


def _default_tasks(cfg: Config) -> list[str]:
    tasks = available_tasks(cfg)
    if not tasks:
        raise TunebenchError(
            f"{cfg.data.dir}: no data cache for source {cfg.data.source}; run `tunebench data import "
            f"--glue-dir DIR --squad-dir DIR` or `tunebench data download` (or use data.source=builtin)"
        )
    return tasks


def _print_findings(findings: list[Finding], caption: str, verbose: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="data validate", caption=escape(caption))
    for col in ("task", "split", "check" if verbose else "checks", "status", "detail"):
        table.add_column(col, overflow="fold")
    rows = [(f.task, f.split, f.check, f.level, f.message) for f in findings] if verbose \
        else group_findings(findings)
    for task, split, checks, level, detail in rows:
        table.add_row(task, split, checks, f"[{STYLE[level]}]{level}[/]", escape(detail))   # the data's own text
    table_console().print(table)


def group_findings(findings: list[Finding]) -> list[tuple[str, str, str, str, str]]:
    """One row per (task, split): how many checks ran, the worst level, and what was not ok (else the labels).
    How SQuAD's validation was carved (grouping and unanswerable shares) is always shown."""
    groups: dict[tuple[str, str], list[Finding]] = {}
    for f in findings:
        groups.setdefault((f.task, f.split), []).append(f)
    order = {s: i for i, s in enumerate(SPLITS)}
    rows = []
    for (task, split), group in sorted(groups.items(), key=lambda kv: _group_order(kv[0], order)):
        issues = [f"{f.check}: {f.message}" for f in group if f.level != "ok"]
        detail = "; ".join(issues) or "; ".join(f.message for f in group if f.check in ("labels", "overlap"))
        carved = [f"carve: {f.message}" for f in group if f.check == "carve" and f.level == "ok"]
        detail = "; ".join(filter(None, [detail, *carved]))
        rows.append((task, split, str(len(group)), worst_level(group), detail))
    return rows


def _group_order(key: tuple[str, str], order: dict[str, int]) -> tuple[int, int]:
    task, split = key
    return list(TASKS).index(task), order.get(split, len(order))


# ---------------------------------------------------------------- summary


def _summary(args: argparse.Namespace) -> int:
    cfg, tasks = _config_and_tasks(args)
    tokenizer = None if args.no_lengths else _load_tokenizer(cfg)
    rows = []
    for task in tasks or _default_tasks(cfg):
        spec = get_task(task)
        _, splits = load_split_records(cfg, task)
        for split in SPLITS:
            records = splits[split]
            lengths = token_lengths(spec, records, tokenizer) if tokenizer is not None else None
            rows.append(summarize_split(spec, split, records, lengths, cfg.model.max_length))
    _print_summary(rows, cfg)
    return 0


def _load_tokenizer(cfg: Config):
    try:
        from tunebench.model import load_tokenizer
    except ImportError as e:
        raise TunebenchError(f"data summary: token lengths need tunebench.model.load_tokenizer ({e}); "
                             "use --no-lengths") from None
    return load_tokenizer(cfg)


def _print_summary(rows: list[dict], cfg: Config) -> None:
    from rich.markup import escape
    from rich.table import Table

    with_lengths = any("tokens" in r for r in rows)
    table = Table(title=f"data summary (source {cfg.data.source}, tokenizer {escape(cfg.model.name)})")
    columns = ["task", "split", "rows", "labels"]
    if with_lengths:
        columns += ["p50", "p90", "p99", "max", f"> {cfg.model.max_length}"]
    for col in columns:
        table.add_column(col, justify="left" if col in ("task", "split", "labels") else "right")
    for r in rows:
        cells = [r["task"], r["split"], f"{r['rows']:,}", ", ".join(f"{k} {v:,}" for k, v in r["labels"].items())]
        if with_lengths:
            cells += [str(r["tokens"][k]) for k in ("p50", "p90", "p99", "max")] + [f"{r['over_max_length']:,}"]
        table.add_row(*cells)
    table_console().print(table)
