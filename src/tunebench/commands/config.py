"""`tunebench config show|list|copy`: the resolved config, and the configs and plans shipped with tunebench.

    tunebench config show --config study_gpu training.learning_rate=1e-4   # defaults <- files <- overrides
    tunebench config list                                                   # shipped names (torchtune's tune ls)
    tunebench config copy phase2a my_plan.yaml                              # a copy to edit (tune cp)

A shipped name stands for its file wherever a file is taken: `--config study_gpu`, `--plan demo`,
`tunebench plan run phase2a`. An existing file of that name is always taken first.
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

from tunebench.commands._common import SHIPPED_DIR, add_config_args, config_from_args, shipped_files
from tunebench.config import dump_yaml
from tunebench.errors import TunebenchError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show the resolved configuration; list or copy the shipped configs and plans",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="config_verb", metavar="ACTION", required=True)
    show = verbs.add_parser("show", help="print the resolved config as YAML")
    add_config_args(show)
    show.set_defaults(func=_show)

    ls = verbs.add_parser("list", help="the shipped experiment configs and plans, by name")
    ls.set_defaults(func=_list)

    cp = verbs.add_parser("copy", help="copy a shipped config or plan to edit it")
    cp.add_argument("name", metavar="NAME", help="a shipped name (tunebench config list)")
    cp.add_argument("dest", metavar="DEST", nargs="?",
                    help="file or existing folder to copy to (default: NAME.yaml here)")
    cp.add_argument("--force", action="store_true", help="overwrite DEST if it exists")
    cp.set_defaults(func=_copy)


def _show(args: argparse.Namespace) -> int:
    print(dump_yaml(config_from_args(args)), end="")
    return 0


def _list(args: argparse.Namespace) -> int:
    rows = [(name, kind, describe_shipped(path)) for kind in ("config", "plan")
            for name, path in shipped_files(kind).items()]
    width = max(len(name) for name, _, _ in rows)
    print(f"{'NAME':<{width}}  KIND    DESCRIPTION")
    for name, kind, text in rows:
        print(f"{name:<{width}}  {kind:<6}  {text}")
    print(f"\nfiles: {SHIPPED_DIR}\nuse: --config NAME, --plan NAME (demo), tunebench plan run NAME; "
          "tunebench config copy NAME [DEST] to edit one")
    return 0


def describe_shipped(path: Path, width: int = 90) -> str:
    """A plan's `description:`, else its first comment line up to the first colon or full stop."""
    lines = path.read_text(encoding="utf-8").splitlines()
    text = next((line.removeprefix("description:").strip() for line in lines if line.startswith("description:")),
                None)
    if text is None:
        text = next((line.lstrip("# ").strip() for line in lines if line.startswith("#")), "")
        text = re.split(r"[:.](?:\s|$)", text, maxsplit=1)[0]
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def _copy(args: argparse.Namespace) -> int:
    shipped = shipped_files()
    if args.name not in shipped:
        raise TunebenchError(f"{args.name!r}: not a shipped config or plan (shipped: {', '.join(shipped)})")
    source = shipped[args.name]
    dest = Path(args.dest) if args.dest else Path(source.name)
    if dest.is_dir():
        dest = dest / source.name
    if dest.exists() and not args.force:
        raise TunebenchError(f"{dest}: already exists (--force overwrites it)")
    if not dest.parent.is_dir():
        raise TunebenchError(f"{dest.parent}: no such folder")
    shutil.copyfile(source, dest)
    print(f"copied {args.name} to {dest}")
    return 0
