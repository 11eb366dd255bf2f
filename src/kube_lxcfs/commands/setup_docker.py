"""The ``kube-lxcfs setup-docker`` subcommand (``setup-podman`` shares its options)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kube_lxcfs.commands._options import directory, path
from kube_lxcfs.defaults import MOUNT_DIR, SECCOMP_SOCKET

SUMMARY = {
    "docker": "Register the runtime wrapper with Docker: docker run --runtime kube-lxcfs ...",
    "podman": "Register the runtime wrapper with Podman: podman run --runtime kube-lxcfs ...",
}

WHERE = {
    "docker": (
        "adds the runtime 'kube-lxcfs' to the \"runtimes\" of {config} (every\n"
        "other setting kept, a timestamped backup next to it). dockerd loads it on reload\n"
        "(systemctl reload docker, or SIGHUP); running containers are not touched."
    ),
    "podman": (
        "writes the runtime 'kube-lxcfs' into [engine.runtimes] of\n"
        "{config}, a drop-in of its own, so your\n"
        "containers.conf is not edited (--config FILE edits FILE instead, e.g. the one\n"
        "CONTAINERS_CONF names, leaving a backup). Podman reads it on the next run."
    ),
}

DESCRIPTION = """\
{summary}

Installs the OCI runtime wrapper kube-lxcfs-runc in {prefix}/bin (a launcher running a
zipapp with this machine's python3, as setup-node does on Kubernetes nodes), then
{where}

Containers started with --runtime kube-lxcfs get the files of the kube-lxcfs filesystem at
--mount-dir bound over /proc/{{cpuinfo,diskstats,loadavg,meminfo,stat,swaps,uptime}} and
/sys/devices/system/cpu, and sysinfo(2) (busybox/Alpine free and uptime, glibc's
_SC_PHYS_PAGES) answered from their cgroup by the daemon on --seccomp-socket. That daemon is
the filesystem itself: run `kube-lxcfs fs {mount_dir}` (as a service) on this machine.
Without it, containers still start, with the host's view. --runtime runc is not affected.

Idempotent: a second run changes nothing. --undo removes the runtime again (the wrapper's
files stay: setup-node or the other engine may use them). `kube-lxcfs doctor --{engine}`
checks the result. Exit 0 when done, 1 when the config cannot be edited safely (reported,
left untouched), 2 on bad usage.
"""


def add_engine_parser(subparsers: argparse._SubParsersAction, engine_name: str) -> None:
    """Add ``setup-docker`` or ``setup-podman``: the same options for either engine."""
    from kube_lxcfs.runtime.engines import DEFAULT_PREFIX, ENGINES

    engine = ENGINES[engine_name]
    parser = subparsers.add_parser(
        f"setup-{engine_name}",
        help=SUMMARY[engine_name],
        description=DESCRIPTION.format(
            summary=SUMMARY[engine_name],
            prefix=DEFAULT_PREFIX,
            where=WHERE[engine_name].format(config=engine.default_config),
            mount_dir=MOUNT_DIR,
            engine=engine_name,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--undo", action="store_true", help="unregister the runtime (keeps everything else)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would change (a diff), change nothing"
    )
    parser.add_argument(
        "--config",
        type=path,
        default=Path(engine.default_config),
        metavar="FILE",
        help="the config file to edit (default: %(default)s)",
    )
    parser.add_argument(
        "--prefix",
        type=directory,
        default=Path(DEFAULT_PREFIX),
        metavar="DIR",
        help="where the wrapper goes: DIR/bin/kube-lxcfs-runc (default: %(default)s)",
    )
    parser.add_argument(
        "--mount-dir",
        default=MOUNT_DIR,
        metavar="DIR",
        help="the kube-lxcfs filesystem the containers get (default: %(default)s)",
    )
    parser.add_argument(
        "--seccomp-socket",
        default=SECCOMP_SOCKET,
        metavar="PATH",
        help="the daemon's sysinfo(2) socket; '' keeps the host's sysinfo (default: %(default)s)",
    )
    parser.add_argument(
        "--oci-runtime",
        default="runc",
        metavar="NAME",
        help="the runtime the wrapper hands over to: runc or crun (default: %(default)s)",
    )
    parser.set_defaults(handler=run, engine=engine_name)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``setup-docker`` subcommand."""
    add_engine_parser(subparsers, "docker")


def run(args: argparse.Namespace) -> int:
    """Print one line per step; 1 if the engine's config could not be edited."""
    from kube_lxcfs.runtime.engines import (
        ENGINES,
        podman_conf_override,
        setup_engine,
        undo_engine,
        wrapper_env,
    )

    command = f"kube-lxcfs setup-{args.engine}"
    args.config, args.prefix = args.config.absolute(), args.prefix.absolute()
    engine = ENGINES[args.engine]
    try:
        if args.config.is_dir():
            print(f"{command}: --config {args.config} is a directory", file=sys.stderr)
            return 2
        if args.undo:
            report = undo_engine(engine, config=args.config, dry_run=args.dry_run)
        else:
            env = wrapper_env(args.mount_dir, args.seccomp_socket, args.oci_runtime)
            report = setup_engine(
                engine, config=args.config, prefix=args.prefix, env=env, dry_run=args.dry_run
            )
    except OSError as exc:
        hint = " (run it as root)" if isinstance(exc, PermissionError) else ""
        print(f"{command}: {exc.filename or ''}: {exc.strerror}{hint}", file=sys.stderr)
        return 1
    for line in report.lines:
        print(line)
    override = podman_conf_override(args.config, os.environ) if args.engine == "podman" else ""
    if override:
        print(f"warning: {override}")
    return 0 if report.ok else 1
