"""`tunebench config show`: print the resolved config (defaults <- files <- overrides)."""

from __future__ import annotations

import argparse

from tunebench.commands._common import add_config_args, config_from_args
from tunebench.config import dump_yaml


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show the resolved configuration")
    verbs = p.add_subparsers(dest="config_verb", metavar="ACTION", required=True)
    show = verbs.add_parser("show", help="print the resolved config as YAML")
    add_config_args(show)
    show.set_defaults(func=_show)


def _show(args: argparse.Namespace) -> int:
    print(dump_yaml(config_from_args(args)), end="")
    return 0
