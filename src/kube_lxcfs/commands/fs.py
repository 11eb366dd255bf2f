"""The ``kube-lxcfs fs`` subcommand."""

from __future__ import annotations

import argparse
import sys

HELP = "Mount the virtual /proc and /sys/devices/system/cpu filesystem (FUSE, foreground)."


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``fs`` subcommand."""
    parser = subparsers.add_parser("fs", help=HELP, description=HELP)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Not implemented yet: say so instead of pretending."""
    print("kube-lxcfs fs: not implemented yet", file=sys.stderr)
    return 1
