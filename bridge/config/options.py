"""The ``-c/--config FILE`` option every ``carebridge`` command takes (plugins' commands too)."""

from __future__ import annotations

import argparse


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """Give a leaf parser ``-c/--config FILE`` (accepted anywhere among its arguments)."""
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=None,
        help="configuration file (default: $CAREBRIDGE_CONFIG, ./bridge.toml, else embedded defaults)",
    )
