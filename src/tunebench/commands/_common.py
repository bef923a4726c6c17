"""Arguments every verb shares: --config FILE|NAME (repeatable) and dotted key=value overrides; the shipped
configs and plans that a bare name stands for."""

from __future__ import annotations

import argparse
from pathlib import Path

from tunebench.config import Config, load_config
from tunebench.errors import TunebenchError


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", action="append", default=[], metavar="FILE|NAME", type=shipped_config,
        help="YAML config with differences from configs/base.yaml, or the name of a shipped one, e.g. study_gpu "
        "(tunebench config list; repeatable; later files win)",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value",
        help="dotted overrides applied last, e.g. training.learning_rate=1e-4 data.max_train_examples=2000",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)


# ---------------------------------------------------------------- shipped configs and plans

# Shipped with the package (pyproject.toml package-data), so a bare name works from any folder; the
# repository's configs/ is a symlink to this folder. Kind -> the files of that kind, relative to it.
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "configs"
SHIPPED_KINDS = {"config": ("base.yaml", "experiments/*.yaml"), "plan": ("plans/*.yaml",)}


def shipped_files(kind: str | None = None) -> dict[str, Path]:
    """Name (the file's stem) -> path of every shipped file of `kind` (every kind when None), sorted by name."""
    kinds = SHIPPED_KINDS if kind is None else {kind: SHIPPED_KINDS[kind]}
    found = {p.stem: p for patterns in kinds.values() for pattern in patterns for p in SHIPPED_DIR.glob(pattern)}
    return dict(sorted(found.items()))


def resolve_shipped(name: str, kind: str) -> str:
    """A --config / plan argument as a file path: an existing file is always taken as itself; a bare name (no
    .yaml, no slash) is a shipped `kind` ("config" or "plan"), or a one-line error listing the shipped names."""
    if Path(name).is_file():
        return name
    shipped = shipped_files(kind)
    bare = "/" not in name and "\\" not in name and not name.endswith((".yaml", ".yml"))
    if bare and name in shipped:
        return str(shipped[name])
    names = ", ".join(shipped)
    if bare:
        raise TunebenchError(f"{name!r}: no such file, and not a shipped {kind} (shipped: {names})")
    if Path(name).stem in shipped:             # e.g. configs/plans/phase2a.yaml outside the repository
        raise TunebenchError(f"{name}: {kind} file not found; the shipped one is named {Path(name).stem} "
                             "(tunebench config list)")
    return name                                # the loader says the file is missing, in its own words


def shipped_config(name: str) -> str:
    """argparse `type` of --config: a file path, or a shipped experiment config's name (study_gpu)."""
    return resolve_shipped(name, "config")


def shipped_plan(name: str) -> str:
    """argparse `type` of a plan argument: a file path, or a shipped plan's name (phase2a)."""
    return resolve_shipped(name, "plan")


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
