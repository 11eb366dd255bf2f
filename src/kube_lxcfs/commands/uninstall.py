"""The ``kube-lxcfs uninstall`` subcommand."""

from __future__ import annotations

import argparse
import sys

from kube_lxcfs.commands._options import say

HELP = "Remove kube-lxcfs from the cluster (webhook configuration first)."
DESCRIPTION = (
    "Delete every object of the deployment (same value options as `install`), starting with "
    "the MutatingWebhookConfiguration so that pod creation never depends on a webhook that is "
    "going away, then the webhook, the node agent, RBAC, the webhook's certificate Secret and "
    "the namespace. Objects already gone are reported as 'not found'. Afterwards it lists the "
    "namespaces still labelled lxcfs-admission-webhook=enabled: pods injected there keep "
    "bind mounts of files that no longer answer and should be restarted."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``uninstall`` subcommand."""
    from kube_lxcfs.commands._options import (
        add_cluster_options,
        add_dry_run_option,
        positive_seconds,
    )
    from kube_lxcfs.commands._values import add_value_options

    parser = subparsers.add_parser("uninstall", help=HELP, description=DESCRIPTION)
    add_value_options(parser)
    add_cluster_options(parser)
    add_dry_run_option(parser, server=True)
    parser.add_argument(
        "--wait", action="store_true", help="wait until the namespace is really gone"
    )
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=300.0,
        metavar="SECONDS",
        help="how long --wait waits (default: %(default)s)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Delete in safe order, then report what is left to the user."""
    from kube_lxcfs.commands._values import values_or_usage_error
    from kube_lxcfs.deploy.kubeapi import ApiError, connect, object_path
    from kube_lxcfs.deploy.lifecycle import (
        InstallError,
        labelled_namespaces,
        self_provisioned_secret,
        uninstall,
        wait_deleted,
    )
    from kube_lxcfs.deploy.render import render
    from kube_lxcfs.deploy.values import NAMESPACE_LABEL

    values = values_or_usage_error(args, "uninstall")
    if values is None:
        return 2
    objects = render(values)
    try:
        api = None if args.dry_run == "client" else connect(args.kubeconfig, args.context)
        uninstall(api, objects, say, dry_run=args.dry_run, extra=self_provisioned_secret(values))
        if api is None:
            return 0
        if args.wait and not args.dry_run:
            paths = [object_path(o) for o in objects if o["kind"] == "Namespace"]
            left = wait_deleted(api, paths, timeout=args.timeout)
            if left:
                print(f"kube-lxcfs uninstall: still terminating: {left}", file=sys.stderr)
                return 1
        remaining = labelled_namespaces(api)
    except (ApiError, InstallError) as exc:
        print(f"kube-lxcfs uninstall: {exc}", file=sys.stderr)
        return 1
    if remaining:
        say(
            f"namespaces still labelled {NAMESPACE_LABEL}=enabled: {', '.join(remaining)}; "
            "pods injected there read files that no longer answer: restart them, and remove "
            f"the label with: kubectl label namespace {' '.join(remaining)} {NAMESPACE_LABEL}-"
        )
    else:
        say(f"no namespace is labelled {NAMESPACE_LABEL}=enabled")
    return 0
