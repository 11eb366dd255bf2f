"""The ``kube-lxcfs runtime`` subcommand."""

from __future__ import annotations

import argparse
import sys

HELP = "OCI runtime wrapper (runc-compatible) that adds the virtual files and sysinfo(2)."


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``runtime`` subcommand."""
    parser = subparsers.add_parser("runtime", help=HELP, description=HELP)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Not implemented yet: say so instead of pretending."""
    print("kube-lxcfs runtime: not implemented yet", file=sys.stderr)
    return 1
