"""The ``kube-lxcfs uninstall`` subcommand."""

from __future__ import annotations

import argparse
import sys

HELP = "Remove the deployment from a cluster."


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``uninstall`` subcommand."""
    parser = subparsers.add_parser("uninstall", help=HELP, description=HELP)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Not implemented yet: say so instead of pretending."""
    print("kube-lxcfs uninstall: not implemented yet", file=sys.stderr)
    return 1
