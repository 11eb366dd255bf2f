"""The ``kube-lxcfs certs`` subcommand."""

from __future__ import annotations

import argparse
import sys

HELP = "Generate a CA and serving certificate for the webhook."


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``certs`` subcommand."""
    parser = subparsers.add_parser("certs", help=HELP, description=HELP)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Not implemented yet: say so instead of pretending."""
    print("kube-lxcfs certs: not implemented yet", file=sys.stderr)
    return 1
