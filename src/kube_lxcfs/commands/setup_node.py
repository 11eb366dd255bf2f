"""The ``kube-lxcfs setup-node`` subcommand."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kube_lxcfs.commands._options import add_dry_run_option, add_logging_options, path
from kube_lxcfs.runtime.install import CONTAINERD_CONFIG, CRIO_DROPIN, HANDLER, LAUNCHER

HELP = "Install the runtime wrapper on this node and register the RuntimeClass handler."

DESCRIPTION = f"""\
Put kube-lxcfs-runc on the node ({LAUNCHER}, a zipapp run by the host's python3 >= 3.10)
and register the runtime handler '{HANDLER}' with containerd ({CONTAINERD_CONFIG},
config version 2 or 3) and/or CRI-O ({CRIO_DROPIN}). Idempotent. The node agent runs it
with the host filesystem mounted at --host-root. The container runtime must be restarted
to load a new handler; the report says so. Exit 0 when the node is ready, 1 when it
cannot use the RuntimeClass (pods then keep working through the webhook's hostPath mode).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``setup-node`` subcommand."""
    parser = subparsers.add_parser(
        "setup-node",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host-root",
        type=path,
        default=Path(os.environ.get("KUBE_LXCFS_HOST_ROOT", "/")),
        help="where the node's root filesystem is mounted (env KUBE_LXCFS_HOST_ROOT; default /)",
    )
    add_dry_run_option(parser)
    parser.add_argument(
        "--best-effort",
        action="store_true",
        help="exit 0 even when the node cannot use the runtime class (the report still says"
        " why); the node agent's init container uses it so that the agent starts anyway",
    )
    add_logging_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print one line per step; 1 if the node cannot use the runtime class (--best-effort: 0)."""
    from kube_lxcfs.runtime.install import setup_node

    if not args.host_root.is_dir():
        print(
            f"kube-lxcfs setup-node: --host-root {args.host_root} is not a directory",
            file=sys.stderr,
        )
        return 2
    report = setup_node(args.host_root, dry_run=args.dry_run)
    for line in report.lines:
        print(line)
    if not report.ok and args.best_effort:
        print("kube-lxcfs setup-node: node not set up (--best-effort: exit 0)")
        return 0
    return 0 if report.ok else 1
