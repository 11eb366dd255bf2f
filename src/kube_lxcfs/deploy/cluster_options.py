"""Options shared by the commands that talk to a cluster (install, uninstall, doctor)."""

from __future__ import annotations

import argparse


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """Add --kubeconfig and --context."""
    parser.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else in-cluster)",
    )
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")


def add_dry_run_option(parser: argparse.ArgumentParser) -> None:
    """Add --dry-run[=client|server] with kubectl's meaning."""
    parser.add_argument(
        "--dry-run",
        nargs="?",
        const="client",
        default="",
        choices=("client", "server"),
        help="client (the default when given bare): only print what would be done, no API "
        "calls; server: the API server validates and admits every request but stores nothing",
    )
