"""The ``kube-lxcfs runtime`` subcommand."""

from __future__ import annotations

import argparse

from kube_lxcfs.defaults import MOUNT_DIR, SECCOMP_SOCKET
from kube_lxcfs.runtime.wrapper import __doc__ as WRAPPER_DOC
from kube_lxcfs.runtime.wrapper import run_wrapper

HELP = "OCI runtime wrapper (runc-compatible) that adds the virtual files and sysinfo(2)."


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``runtime`` subcommand."""
    parser = subparsers.add_parser(
        "runtime",
        help=HELP,
        description=WRAPPER_DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            f"defaults: KUBE_LXCFS_MOUNT_DIR={MOUNT_DIR}\n"
            f"          KUBE_LXCFS_SECCOMP_SOCKET={SECCOMP_SOCKET}\n"
            "\n"
            "examples:\n"
            "  kube-lxcfs runtime --root /run/runc run -b BUNDLE ID   # like runc run\n"
            "  kube-lxcfs-runc ...   # the same, as containerd's BinaryName"
        ),
    )
    parser.add_argument(
        "runc_args", nargs=argparse.REMAINDER, metavar="RUNC_ARGS", help="runc's arguments"
    )
    parser.set_defaults(handler=run)


def run_raw(argv: list[str]) -> int:
    """runc's arguments, untouched (``kube-lxcfs runtime --root X run ...``)."""
    return run_wrapper(argv)


def run(args: argparse.Namespace) -> int:
    """Hand over to the real runtime (editing the bundle on create/run)."""
    argv = list(args.runc_args)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        from kube_lxcfs.commands._options import fail

        return fail("runtime", "RUNC_ARGS missing: runc's command line, e.g. run -b BUNDLE ID")
    return run_wrapper(argv)
