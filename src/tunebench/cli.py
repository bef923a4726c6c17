"""`tunebench` console script: verbs that mirror the workflow.

config -> data -> model -> run (train + evaluate) -> sanity -> plan -> report -> bench -> demo -> analyze.
Bad input prints one line and exits 2, and so does a file-system error the user can fix (a path that is
missing, unreadable or unwritable, a file where a folder should be, a full or read-only disk: the path and the
problem); nothing else prints a traceback unless TUNEBENCH_DEBUG=1.
Options, positionals and key=value overrides mix in any order within a verb (`plan run PLAN --dry-run k=v`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import select
import sys

from tunebench import __version__
from tunebench.commands._common import normalize_list_options
from tunebench.errors import TunebenchError, is_user_os_error, os_error_line

# Each module in tunebench.commands exposes `register(subparsers)`; order here is the order in --help.
COMMANDS = ("config", "data", "model", "run", "score", "sanity", "plan", "report", "bench", "analyze", "demo")


class IntermixedParser(argparse.ArgumentParser):
    """Each verb's own parser reads options and positionals in any order (argparse's intermixed parsing);
    parsers that only dispatch to verbs parse as usual: intermixed parsing refuses subparsers, so it is applied
    per verb. Subparsers inherit the class (add_subparsers' parser_class defaults to the parent's type)."""

    _intermixed_now = False

    def parse_known_args(self, args=None, namespace=None):
        if self._subparsers is not None or self._intermixed_now:
            return super().parse_known_args(args, namespace)
        self._intermixed_now = True       # parse_known_intermixed_args calls parse_known_args (Python 3.11)
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixed_now = False


def build_parser() -> argparse.ArgumentParser:
    parser = IntermixedParser(
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
    try:
        args = parser.parse_args(argv)    # inside: a shipped name that is not one (--config x) is one line
        if not getattr(args, "func", None):
            parser.print_help()
            code = 0
        else:
            normalize_list_options(args)
            code = int(args.func(args) or 0)
        sys.stdout.flush()                # inside the try: a reader that has gone is seen here, not at exit
        return code
    except BrokenPipeError:               # `tunebench config list | head`: the reader stopped reading
        if not _stdout_reader_gone():
            raise                         # another pipe or socket (a tracker, a worker): a real error
        return _silence_stdout()
    except TunebenchError as e:
        if os.environ.get("TUNEBENCH_DEBUG"):
            raise
        print(f"tunebench: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:                  # after BrokenPipeError (an OSError too)
        if os.environ.get("TUNEBENCH_DEBUG") or not is_user_os_error(e):
            raise                         # no path, no file-system errno: a bug, with its traceback
        print(f"tunebench: error: {os_error_line(e)}", file=sys.stderr)
        return TunebenchError.exit_code
    except KeyboardInterrupt:
        print("tunebench: interrupted", file=sys.stderr)
        return 130


def _silence_stdout() -> int:
    """After stdout's reader has gone: point stdout (and stderr, when it is the same pipe: `2>&1 | head`) at
    /dev/null so that nothing fails again at exit; 141 = 128 + SIGPIPE, as a shell reports it."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        if os.path.sameopenfile(sys.stdout.fileno(), sys.stderr.fileno()):
            os.dup2(devnull, sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        pass
    os.dup2(devnull, sys.stdout.fileno())
    return 141


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it: polling its write end reports an error (POLLERR)
    once no reader is left. Where poll does not exist (Windows), any broken pipe is taken to be stdout's; a
    stdout that is no file (replaced in-process) cannot be the broken pipe."""
    if not hasattr(select, "poll"):
        return True
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
