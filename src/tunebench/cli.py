"""`tunebench` console script: verbs that mirror the workflow.

config -> data -> run (train + evaluate) -> sanity -> plan -> report -> bench -> demo -> analyze.
Bad input prints one line and exits 2; nothing else prints a traceback unless TUNEBENCH_DEBUG=1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from tunebench import __version__
from tunebench.commands._common import normalize_list_options
from tunebench.errors import TunebenchError

# Each module in tunebench.commands exposes `register(subparsers)`; order here is the order in --help.
COMMANDS = ("config", "data", "run", "score", "sanity", "plan", "report", "bench", "analyze", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunebench",
        description="Does LoRA match full fine-tuning? Run the study: data, training, sanity checks, "
        "experiment plans, statistics and the report.",
        epilog="Every verb takes --config FILE and dotted key=value overrides, e.g. training.learning_rate=1e-4. "
        "See `tunebench VERB --help`.",
    )
    parser.add_argument("--version", action="version", version=f"tunebench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="VERB")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"tunebench.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"tunebench.commands.{name}":
                continue  # verb not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        normalize_list_options(args)
        return int(args.func(args) or 0)
    except TunebenchError as e:
        if os.environ.get("TUNEBENCH_DEBUG"):
            raise
        print(f"tunebench: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("tunebench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
