"""The ``kube-lxcfs setup-podman`` subcommand: ``setup-docker``'s options, for Podman."""

from __future__ import annotations

import argparse

from kube_lxcfs.commands.setup_docker import add_engine_parser


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``setup-podman`` subcommand."""
    add_engine_parser(subparsers, "podman")
