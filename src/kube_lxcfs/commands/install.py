"""The ``kube-lxcfs install`` subcommand."""

from __future__ import annotations

import argparse
import sys

from kube_lxcfs.commands._options import say

HELP = "Install kube-lxcfs into the cluster (idempotent)."
DESCRIPTION = (
    "Apply every object that `kube-lxcfs manifests` prints (same options) through the "
    "Kubernetes API with server-side apply, printing one line per object: created, configured "
    "or unchanged. Running it again is safe. The webhook configuration is applied last, after "
    "the webhook it routes to. With --wait, waits until the node agent runs on every node, "
    "the webhook replicas are ready and the webhook configuration trusts the webhook's CA."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``install`` subcommand."""
    from kube_lxcfs.commands._options import (
        add_cluster_options,
        add_dry_run_option,
        positive_seconds,
    )
    from kube_lxcfs.commands._values import add_value_options

    parser = subparsers.add_parser("install", help=HELP, description=DESCRIPTION)
    add_value_options(parser)
    add_cluster_options(parser)
    add_dry_run_option(parser, server=True)
    parser.add_argument("--wait", action="store_true", help="wait until everything is ready")
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=300.0,
        metavar="SECONDS",
        help="how long --wait waits (default: %(default)s)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Resolve values, render, apply, optionally wait."""
    from kube_lxcfs.commands._values import values_or_usage_error
    from kube_lxcfs.deploy.kubeapi import ApiError, connect
    from kube_lxcfs.deploy.lifecycle import InstallError, install, wait_ready
    from kube_lxcfs.deploy.render import render

    values = values_or_usage_error(args, "install")
    if values is None:
        return 2
    objects = render(values)
    try:
        api = None if args.dry_run == "client" else connect(args.kubeconfig, args.context)
        install(api, objects, say, dry_run=args.dry_run)
        if args.wait and not args.dry_run:
            assert api is not None
            if not wait_ready(api, objects, say, timeout=args.timeout):
                print("kube-lxcfs install: not ready; see `kube-lxcfs doctor`", file=sys.stderr)
                return 1
    except (ApiError, InstallError) as exc:
        print(f"kube-lxcfs install: {exc}", file=sys.stderr)
        return 1
    if not args.dry_run:
        say(
            "installed. Enable a namespace with: "
            "kubectl label namespace NAME lxcfs-admission-webhook=enabled"
        )
    return 0
