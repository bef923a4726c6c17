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
