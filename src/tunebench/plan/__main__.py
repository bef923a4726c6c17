"""`python -m tunebench.plan ARGS` is `tunebench plan ARGS` without importing the other verbs: a fast start
for scripts and for the plan tests' subprocesses (the full CLI imports torch and PEFT to build its help)."""

from __future__ import annotations

import argparse
import os
import sys

from tunebench.commands.plan import register
from tunebench.errors import TunebenchError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tunebench")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["plan", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except TunebenchError as e:  # the same contract as tunebench.cli.main: one line, exit 2
        if os.environ.get("TUNEBENCH_DEBUG"):
            raise
        print(f"tunebench: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("tunebench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
