"""The ``kube-lxcfs manifests`` subcommand."""

from __future__ import annotations

import argparse
import sys

HELP = "Print the Kubernetes manifests of the whole deployment."


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``manifests`` subcommand."""
    parser = subparsers.add_parser("manifests", help=HELP, description=HELP)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Not implemented yet: say so instead of pretending."""
    print("kube-lxcfs manifests: not implemented yet", file=sys.stderr)
    return 1
