"""The ``kube-lxcfs manifests`` subcommand."""

from __future__ import annotations

import argparse
import sys

HELP = "Print the Kubernetes manifests of a kube-lxcfs deployment."
DESCRIPTION = (
    "Print every object of a kube-lxcfs deployment as YAML: namespace, service accounts, "
    "RBAC, the node agent DaemonSet, the webhook Deployment, Service, PodDisruptionBudget and "
    "MutatingWebhookConfiguration. The output is what `kube-lxcfs install` applies and what "
    "`helm template` renders from deploy/helm/kube-lxcfs with the same values. Pipe it to "
    "`kubectl apply -f -` to install without this tool."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``manifests`` subcommand."""
    from kube_lxcfs.commands._values import add_value_options

    parser = subparsers.add_parser("manifests", help=HELP, description=DESCRIPTION)
    add_value_options(parser)
    parser.set_defaults(handler=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    """Resolve the values, render, print."""
    from kube_lxcfs.commands._values import values_or_usage_error
    from kube_lxcfs.deploy.render import render, to_yaml

    values = values_or_usage_error(args, "manifests")
    if values is None:
        return 2
    sys.stdout.write(to_yaml(render(values)))
    return 0
