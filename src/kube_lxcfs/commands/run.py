"""The ``kube-lxcfs run`` subcommand."""

from __future__ import annotations

import argparse
import sys

HELP = "Run a command under cgroup limits with the virtual /proc bind-mounted (no cluster)."


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` subcommand."""
    parser = subparsers.add_parser("run", help=HELP, description=HELP)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Not implemented yet: say so instead of pretending."""
    print("kube-lxcfs run: not implemented yet", file=sys.stderr)
    return 1
