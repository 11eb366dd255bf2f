"""The ``kube-lxcfs fs`` subcommand: flags → :class:`FsOptions` → the daemon."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kube_lxcfs.commands._options import add_logging_options, directory, path
from kube_lxcfs.defaults import MOUNT_DIR, SECCOMP_SOCKET, STATE_DIR
from kube_lxcfs.files_text import names_in
from kube_lxcfs.vfs import FsOptions

HELP = "Mount the virtual /proc and /sys/devices/system/cpu filesystem (FUSE, foreground)."

DESCRIPTION = f"""\
Mount a read-only FUSE filesystem at MOUNTPOINT with lxcfs's layout:
  proc/{names_in("/proc")}
  proc/pressure/{names_in("/proc/pressure")}   (when the host has PSI)
  sys/devices/system/cpu/         (online/offline and cpuN/online from the cgroup)
Each read is rendered from the cgroup of the process that reads, so a container
that bind-mounts these files over its /proc sees its own limits.

Runs in the foreground until SIGTERM or SIGINT, then unmounts and exits 0.
A dead mount at MOUNTPOINT left by a killed daemon ("Transport endpoint is not
connected") is detached first; a live mount there is an error. A missing
MOUNTPOINT is created. Mount options: allow_other,entry_timeout=0.5,attr_timeout=0,
default_permissions,direct_io,ro plus -o. A file's size is the length of the
reader's own text (sendfile readers such as busybox cat stop there). Needs root
(or CAP_SYS_ADMIN) and /dev/fuse.
"""

EPILOG = f"""\
examples:
  kube-lxcfs fs {MOUNT_DIR}
  kube-lxcfs fs --cgroup-of=init --disable-swap -p /run/kube-lxcfs.pid {MOUNT_DIR}
  docker run -v {MOUNT_DIR}/proc/meminfo:/proc/meminfo:ro ...
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``fs`` subcommand."""
    parser = subparsers.add_parser(
        "fs",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("mountpoint", metavar="MOUNTPOINT", type=directory, help="where to mount")
    parser.add_argument(
        "-f",
        "--foreground",
        action="store_true",
        help="accepted for lxcfs compatibility; the daemon always stays in the foreground",
    )
    parser.add_argument(
        "-d",
        "--debug",
        action="store_true",
        help="debug logging, including every FUSE request (libfuse -d)",
    )
    parser.add_argument(
        "-p",
        "--pidfile",
        type=path,
        metavar="FILE",
        help="write and lock FILE with the daemon's pid; a second daemon with it refuses to start",
    )
    parser.add_argument(
        "-o",
        dest="mount_options",
        type=_mount_options,
        action="append",
        default=[],
        metavar="OPTS",
        help="extra FUSE mount options, comma separated (may be repeated)",
    )
    loadavg = parser.add_mutually_exclusive_group()
    loadavg.add_argument(
        "-l",
        "--enable-loadavg",
        action="store_true",
        help="accepted for lxcfs compatibility; per-cgroup loadavg is on by default",
    )
    loadavg.add_argument(
        "--disable-loadavg",
        action="store_true",
        help="serve the host's /proc/loadavg instead of the cgroup's",
    )
    parser.add_argument(
        "-u",
        "--disable-swap",
        action="store_true",
        help="no swap in meminfo and swaps (SwapTotal/SwapFree 0, swaps header only)",
    )
    parser.add_argument(
        "--enable-cfs",
        action="store_true",
        help="accepted for lxcfs compatibility; the quota CPU view is the default",
    )
    parser.add_argument(
        "--cpu-view",
        choices=("quota", "cpuset"),
        default="quota",
        help="visible CPUs: min(cpuset, ceil(quota/period)) (default) or the whole cpuset",
    )
    parser.add_argument(
        "--cgroup-of",
        choices=("reader", "init"),
        default="reader",
        help=(
            "whose cgroup answers a read: the reading process's (default; right for pods "
            "that share a process namespace) or its pid namespace init's (lxcfs's rule)"
        ),
    )
    parser.add_argument(
        "--seccomp-socket",
        metavar="PATH",
        default=None,
        help=(
            "answer sysinfo(2) for containers started by the kube-lxcfs-runc wrapper on this "
            f"unix socket (default: {SECCOMP_SOCKET} when MOUNTPOINT is "
            f"{MOUNT_DIR}, none otherwise; '' disables)"
        ),
    )
    parser.add_argument(
        "--on-render-error",
        choices=("host", "eio"),
        default="host",
        help=(
            "when a container's file cannot be rendered (vanished process, cgroup error, slow "
            "cgroup, bug): serve the host's file, as lxcfs does (default), or fail the read "
            "with EIO; counted either way (kube_lxcfs_host_answers_total), logged once per cause"
        ),
    )
    parser.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        type=_address,
        default=None,
        help=(
            "serve /metrics (Prometheus), /healthz (the request loop answers) and /readyz "
            "(mounted, renders the agent's own cgroup) over plain HTTP, e.g. 0.0.0.0:9110 or "
            "[::1]:9110 (default: off)"
        ),
    )
    parser.add_argument(
        "--health-deadline",
        metavar="SECONDS",
        type=_positive_seconds,
        default=10.0,
        help=(
            "/healthz fails when the agent's own read through the mount has not been "
            "answered for this long (default: %(default)s)"
        ),
    )
    add_restart_arguments(parser)
    add_logging_options(parser)
    parser.set_defaults(handler=run)


def add_restart_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the container repair after restarts (kube_lxcfs.repair)."""
    from kube_lxcfs.repair.hook import ON_STOP_CHOICES

    parser.add_argument(
        "--on-stop",
        choices=ON_STOP_CHOICES,
        default="keep",
        help=(
            "on SIGTERM/SIGINT: keep containers' bind mounts (they read 'Transport endpoint "
            "is not connected' until the next start repairs them; default) or detach them "
            "first (they read the host's real /proc while the daemon is down; the next start "
            "re-attaches them)"
        ),
    )
    parser.add_argument(
        "--no-repair",
        action="store_true",
        help="do not repair containers' stale mounts after mounting (see `kube-lxcfs repair`)",
    )
    parser.add_argument(
        "--state-dir",
        type=directory,
        default=STATE_DIR,
        help="where --on-stop=detach records what to re-attach (default: %(default)s)",
    )
    parser.add_argument(
        "--repair-metrics-file",
        metavar="FILE",
        default=None,
        help=(
            "write the repair counters (kube_lxcfs_repair_*) in Prometheus text format to FILE "
            "after every repair or detach pass, e.g. for node-exporter's textfile collector"
        ),
    )


def _mount_options(text: str) -> str:
    """``-o`` text whose every item is ``NAME`` or ``NAME=VALUE`` (libfuse would say less)."""
    for item in text.split(","):
        name = item.partition("=")[0].strip()
        if item.strip() and not name:
            raise argparse.ArgumentTypeError(f"{item.strip()!r} has no option name (NAME=VALUE)")
    return text


def _address(text: str) -> tuple[str, int]:
    from kube_lxcfs.fuse.metrics import AddressError, parse_address

    try:
        return parse_address(text)
    except AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def fs_options(args: argparse.Namespace) -> FsOptions:
    """The rendering options the flags ask for."""
    return FsOptions(
        swap=not args.disable_swap,
        loadavg=not args.disable_loadavg,
        cpu_view=args.cpu_view,
        cgroup_of=args.cgroup_of,
        on_render_error=args.on_render_error,
    )


def seccomp_socket(args: argparse.Namespace) -> Path | None:
    """The sysinfo socket: explicit, or the documented one for the node's mount dir."""
    if args.seccomp_socket is not None:
        return Path(args.seccomp_socket) if args.seccomp_socket else None
    if Path(args.mountpoint).absolute() == Path(MOUNT_DIR):
        return Path(SECCOMP_SOCKET)
    return None


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; 1 with a one-line reason if the daemon cannot start."""
    from kube_lxcfs.fuse.daemon import Daemon, DaemonError, parse_mount_options
    from kube_lxcfs.repair.hook import RestartHandling

    mount_options: dict[str, str | bool] = {}
    for text in args.mount_options:
        mount_options.update(parse_mount_options(text))
    hooks = RestartHandling(
        args.mountpoint,
        on_stop=args.on_stop,
        state_dir=str(args.state_dir),
        repair_on_start=not args.no_repair,
        metrics_file=args.repair_metrics_file,
    )
    daemon = Daemon(
        hooks=hooks,
        mountpoint=args.mountpoint,
        fs_options=fs_options(args),
        mount_options=mount_options,
        pidfile=args.pidfile,
        debug=args.debug,
        seccomp_socket=seccomp_socket(args),
        metrics_address=args.metrics_address,
        health_deadline=args.health_deadline,
        repair_metrics=hooks.metrics,
    )
    try:
        return daemon.run()
    except DaemonError as exc:
        print(f"kube-lxcfs fs: {exc}", file=sys.stderr)
        return 1
