"""The ``kube-lxcfs webhook`` subcommand."""

from __future__ import annotations

import argparse
import sys

HELP = "Serve the mutating admission webhook that injects the virtual files into pods."


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``webhook`` subcommand."""
    parser = subparsers.add_parser("webhook", help=HELP, description=HELP)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Not implemented yet: say so instead of pretending."""
    print("kube-lxcfs webhook: not implemented yet", file=sys.stderr)
    return 1
