"""`python -m tunebench.plan ARGS` is `tunebench plan ARGS` (used by scripts and the plan tests' subprocesses)."""

from __future__ import annotations

import sys

from tunebench.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    return cli_main(["plan", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
