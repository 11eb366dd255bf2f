"""The ``kube-lxcfs repair`` subcommand."""

from __future__ import annotations

import argparse
import sys

HELP = "Repair stale bind mounts of running containers after a daemon restart."


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``repair`` subcommand."""
    parser = subparsers.add_parser("repair", help=HELP, description=HELP)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Not implemented yet: say so instead of pretending."""
    print("kube-lxcfs repair: not implemented yet", file=sys.stderr)
    return 1
