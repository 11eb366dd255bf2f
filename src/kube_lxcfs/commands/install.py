"""The ``kube-lxcfs install`` subcommand."""

from __future__ import annotations

import argparse
import sys

HELP = "Apply the deployment to a cluster."


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``install`` subcommand."""
    parser = subparsers.add_parser("install", help=HELP, description=HELP)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Not implemented yet: say so instead of pretending."""
    print("kube-lxcfs install: not implemented yet", file=sys.stderr)
    return 1
