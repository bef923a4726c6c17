"""Arguments every verb shares: --config FILE (repeatable) and dotted key=value overrides."""

from __future__ import annotations

import argparse

from tunebench.config import Config, load_config


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", action="append", default=[], metavar="FILE",
        help="YAML config with differences from configs/base.yaml (repeatable; later files win)",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value",
        help="dotted overrides applied last, e.g. training.learning_rate=1e-4 data.max_train_examples=2000",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)


# ---------------------------------------------------------------- list options followed by overrides

_LIST_OPTIONS = "_list_options"


def add_list_option(parser: argparse.ArgumentParser, flag: str, *, choices=None, convert=str, **kwargs) -> None:
    """A `--flag A B ...` option that may be followed directly by key=value overrides.

    argparse's nargs="+" is greedy: in `tunebench run --tasks sst2 rte training.seed=7` it would take the
    override as a task. `normalize_list_options` moves such items to the overrides, then checks choices and
    converts, with one-line errors.
    """
    dest = flag.lstrip("-").replace("-", "_")
    parser.add_argument(flag, nargs="+", dest=dest, **kwargs)
    specs = parser.get_default(_LIST_OPTIONS) or []
    parser.set_defaults(**{_LIST_OPTIONS: [*specs, (dest, flag, tuple(choices) if choices else None, convert)]})


def normalize_list_options(args: argparse.Namespace) -> None:
    from tunebench.errors import TunebenchError

    for dest, flag, choices, convert in getattr(args, _LIST_OPTIONS, []):
        values = getattr(args, dest)
        if values is None:
            continue
        kept = []
        for value in values:
            if "=" in value and hasattr(args, "overrides"):
                args.overrides.append(value)
                continue
            if choices and value not in choices:
                raise TunebenchError(f"{flag} {value!r}: not one of {', '.join(choices)}")
            try:
                kept.append(convert(value))
            except ValueError:
                raise TunebenchError(f"{flag} {value!r}: expected {convert.__name__}") from None
        if not kept:
            raise TunebenchError(f"{flag}: expected at least one value")
        setattr(args, dest, kept)


def table_console():
    """A rich console for result tables: the terminal's width, or 160 columns in logs and CI (rich's 80-column
    default folds every row into a narrow column there)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)
