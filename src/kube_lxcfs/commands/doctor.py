"""The ``kube-lxcfs doctor`` subcommand."""

from __future__ import annotations

import argparse
import sys

HELP = "Check a node or a cluster and say what is wrong and how to fix it."


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``doctor`` subcommand."""
    parser = subparsers.add_parser("doctor", help=HELP, description=HELP)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Not implemented yet: say so instead of pretending."""
    print("kube-lxcfs doctor: not implemented yet", file=sys.stderr)
    return 1
