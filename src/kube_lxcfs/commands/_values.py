"""Command-line options that choose the deployment's values (manifests, install, uninstall).

``manifests``, ``install`` and ``uninstall`` accept the same options, so that
what ``manifests`` prints is exactly what ``install`` applies.
"""

from __future__ import annotations

import argparse
from typing import Any

from kube_lxcfs.commands._options import fail
from kube_lxcfs.deploy.values import DEFAULT_NAMESPACE, ValuesError, resolve


def add_value_options(parser: argparse.ArgumentParser) -> None:
    """Add --namespace, --image, --webhook-image, --set and -f/--values."""
    parser.add_argument(
        "-n",
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help="install namespace (default: %(default)s)",
    )
    parser.add_argument(
        "--image",
        metavar="REPO[:TAG]",
        help="node agent image (values nodeAgent.image.repository/tag)",
    )
    parser.add_argument(
        "--webhook-image",
        metavar="REPO[:TAG]",
        help="webhook image (values webhook.image.repository/tag)",
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a chart value as helm does, e.g. --set webhook.failurePolicy=Fail "
        "or --set certManager.enabled=true (repeatable; lists as {a,b})",
    )
    parser.add_argument(
        "-f",
        "--values",
        dest="values_files",
        action="append",
        default=[],
        metavar="FILE",
        help="a YAML values file, as for helm (repeatable; --set wins)",
    )


def split_image(ref: str) -> tuple[str, str | None]:
    """``repo[:tag]`` → (repo, tag or None); a port in the registry host is not a tag."""
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, None
    return repo, tag


def values_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The validated values the options describe; ValuesError for bad input."""
    sets = []
    for option, prefix in ((args.image, "nodeAgent"), (args.webhook_image, "webhook")):
        if option:
            repo, tag = split_image(option)
            if not repo:
                raise ValuesError(f"bad image reference {option!r}")
            sets.append(f"{prefix}.image.repository={repo}")
            if tag:
                sets.append(f"{prefix}.image.tag={tag}")
    return resolve(
        namespace=args.namespace, sets=sets + list(args.sets), values_files=args.values_files
    )


def values_or_usage_error(args: argparse.Namespace, command: str) -> dict[str, Any] | None:
    """The values, or None after printing the one-line usage error of ``command``."""
    try:
        return values_from_args(args)
    except (ValuesError, OSError) as exc:
        fail(command, str(exc))
        return None
