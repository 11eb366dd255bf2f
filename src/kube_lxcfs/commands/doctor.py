"""The ``kube-lxcfs doctor`` subcommand."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Check a node or a cluster and say what is wrong and how to fix it."
DESCRIPTION = (
    "Without --node: check the cluster through the Kubernetes API — API server reachable, node "
    "agent and webhook ready, the webhook configuration's caBundle valid, the serving "
    "certificate issued for the Service, signed by that CA and not expiring, the webhook "
    "reachable from the API server, and which namespaces are labelled (and which of them Pod "
    "Security excludes). With --node: check this machine — FUSE available, cgroup layout, the "
    "filesystem mounted and alive at --mount-dir, and every injected file answering. With "
    "--docker or --podman: the node checks plus the runtime 'kube-lxcfs' registered "
    "(setup-docker/setup-podman), its wrapper in place, dockerd having loaded it, and the "
    "daemon answering sysinfo(2). Exit code 1 when a check fails."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``doctor`` subcommand."""
    from kube_lxcfs.commands._options import add_cluster_options, path
    from kube_lxcfs.defaults import MOUNT_DIR, SECCOMP_SOCKET
    from kube_lxcfs.deploy.values import DEFAULT_FILES, DEFAULT_NAMESPACE

    parser = subparsers.add_parser("doctor", help=HELP, description=DESCRIPTION)
    parser.add_argument("--node", action="store_true", help="check this node instead")
    engines = parser.add_mutually_exclusive_group()
    for engine in ("docker", "podman"):
        engines.add_argument(
            f"--{engine}",
            dest="engine",
            action="store_const",
            const=engine,
            help=f"check this machine for {engine.capitalize()}: the node checks plus the "
            f"runtime kube-lxcfs (kube-lxcfs setup-{engine})",
        )
    parser.add_argument(
        "--engine-config",
        type=path,
        metavar="FILE",
        help="the engine's config file (--docker: /etc/docker/daemon.json; --podman: "
        "/etc/containers/containers.conf.d/99-kube-lxcfs.conf)",
    )
    parser.add_argument(
        "--seccomp-socket",
        default=SECCOMP_SOCKET,
        metavar="PATH",
        help="the daemon's sysinfo(2) socket (--docker/--podman; default: %(default)s)",
    )
    parser.add_argument(
        "--mount-dir",
        default=MOUNT_DIR,
        help="where the filesystem is mounted (--node; default: %(default)s)",
    )
    parser.add_argument(
        "--files",
        default=",".join(DEFAULT_FILES),
        metavar="LIST",
        help="comma-separated files under --mount-dir that must answer (--node)",
    )
    parser.add_argument(
        "-n",
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help="install namespace (default: %(default)s)",
    )
    add_cluster_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the checks, print one line per finding (plus its fix), exit 1 on failure."""
    from kube_lxcfs.commands._options import fail
    from kube_lxcfs.deploy.doctor import FAIL, Check, cluster_findings, failed, node_findings
    from kube_lxcfs.deploy.kubeapi import ApiError, KubeconfigError, connect

    if args.node or args.engine:
        files = [f.strip() for f in args.files.split(",") if f.strip()]
        agent = f"kube-lxcfs fs {args.mount_dir} (as a service)" if args.engine else None
        findings = node_findings(args.mount_dir, files, *([agent] if agent else []))
        if args.engine:
            from kube_lxcfs.deploy.doctor import engine_findings
            from kube_lxcfs.runtime.engines import ENGINES

            config = args.engine_config or Path(ENGINES[args.engine].default_config)
            findings += engine_findings(args.engine, config, args.seccomp_socket, args.mount_dir)
    else:
        try:
            findings = cluster_findings(connect(args.kubeconfig, args.context), args.namespace)
        except KubeconfigError as exc:
            return fail("doctor", str(exc))
        except ApiError as exc:
            findings = [Check(FAIL, "api server", str(exc), "check --kubeconfig/--context")]
    for finding in findings:
        print(finding.line())
    bad = sum(f.level == FAIL for f in findings)
    print(f"{bad} problem(s) found" if bad else "no problems found")
    return 1 if failed(findings) else 0
