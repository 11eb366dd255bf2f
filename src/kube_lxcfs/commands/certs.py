"""The ``kube-lxcfs certs`` subcommand."""

from __future__ import annotations

import argparse
import sys

from kube_lxcfs.commands._options import directory, positive_int

HELP = "Generate a CA and serving certificate for the webhook."
DESCRIPTION = (
    "Generate a private CA and a serving certificate for the webhook Service "
    "(SVC, SVC.NS, SVC.NS.svc, SVC.NS.svc.cluster.local). With --out-dir, writes ca.crt, "
    "tls.crt and tls.key (the keys of a kubernetes.io/tls Secret) and prints the base64 CA "
    "bundle for the MutatingWebhookConfiguration's caBundle on stdout. With --secret-yaml, "
    "prints the Secret as YAML on stdout and the CA bundle on stderr. Only needed for manual "
    "setups: the default manifests let the webhook provision its own certificate."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``certs`` subcommand."""
    from kube_lxcfs.deploy.certdefaults import (
        DEFAULT_CA_DAYS,
        DEFAULT_DAYS,
        DEFAULT_KEY_TYPE,
        KEY_TYPES,
    )

    parser = subparsers.add_parser("certs", help=HELP, description=DESCRIPTION)
    parser.add_argument("--namespace", default="lxcfs", help="namespace of the webhook Service")
    parser.add_argument("--service", default="kube-lxcfs-webhook", help="webhook Service name")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out-dir", type=directory, help="write ca.crt, tls.crt, tls.key here")
    where.add_argument(
        "--secret-yaml", action="store_true", help="print a kubernetes.io/tls Secret as YAML"
    )
    parser.add_argument(
        "--secret-name",
        default="kube-lxcfs-webhook-tls",
        help="name of the Secret printed by --secret-yaml (default: %(default)s)",
    )
    parser.add_argument(
        "--key-type", choices=KEY_TYPES, default=DEFAULT_KEY_TYPE, help="default: %(default)s"
    )
    parser.add_argument(
        "--days",
        type=positive_int,
        default=DEFAULT_DAYS,
        help="validity of the serving certificate in days (default: %(default)s)",
    )
    parser.add_argument(
        "--ca-days",
        type=positive_int,
        default=DEFAULT_CA_DAYS,
        help="validity of the CA in days (default: %(default)s)",
    )
    parser.add_argument(
        "--cluster-domain",
        default="cluster.local",
        help="cluster DNS domain (default: %(default)s)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Generate, then write the files or print the Secret."""
    from kube_lxcfs.deploy.certs import generate_bundle
    from kube_lxcfs.deploy.secrets import ca_bundle_b64, tls_secret, write_cert_files

    bundle = generate_bundle(
        args.service,
        args.namespace,
        key_type=args.key_type,
        days=args.days,
        ca_days=args.ca_days,
        cluster_domain=args.cluster_domain,
    )
    if args.secret_yaml:
        from kube_lxcfs.deploy.render import to_yaml

        sys.stdout.write(to_yaml([tls_secret(args.secret_name, args.namespace, bundle)]))
        print(f"caBundle: {ca_bundle_b64(bundle)}", file=sys.stderr)
        return 0
    try:
        written = write_cert_files(args.out_dir, bundle, overwrite=args.force)
    except FileExistsError as exc:
        print(f"kube-lxcfs certs: {exc} exists (use --force to overwrite)", file=sys.stderr)
        return 1
    for written_path in written:
        print(f"wrote {written_path}", file=sys.stderr)
    print(ca_bundle_b64(bundle))
    return 0
