"""The ``kube-lxcfs repair`` subcommand."""

from __future__ import annotations

import argparse
import sys

from kube_lxcfs.commands._options import add_dry_run_option, add_logging_options, directory

HELP = "Repair stale bind mounts of running containers after a daemon restart."

DESCRIPTION = """\
After the kube-lxcfs daemon restarts (crash, OOM kill, upgrade), the files it
served that containers bind-mounted over /proc fail with "Transport endpoint is
not connected". This finds every mount namespace on the host, tests each mount
of the filesystem at --mount-dir from inside its namespace, and swaps every
stale one for the same file of the live filesystem (open_tree + move_mount; no
binary from the container image is used). The daemon runs this by itself after
every start; run it by hand to check or to retry.

Exit status: 0 when nothing failed, 1 when a mount could not be repaired or no
live filesystem is mounted at --mount-dir, 2 for bad usage (--mount-dir is a file).
A --mount-dir that does not exist (the agent creates it when it starts) is a node
without the agent: there is no filesystem to repair from and nothing to do, which is
not an error (one line on stderr, exit 0), e.g. for a script run on every node.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``repair`` subcommand."""
    from kube_lxcfs.defaults import MOUNT_DIR, STATE_DIR
    from kube_lxcfs.repair import Strategy

    parser = subparsers.add_parser(
        "repair",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--mount-dir",
        type=directory,
        default=MOUNT_DIR,
        help="where the live filesystem is mounted (default: %(default)s)",
    )
    add_dry_run_option(parser)
    parser.add_argument(
        "--state-dir",
        default=STATE_DIR,
        help="where `fs --on-stop=detach` records the detached mounts to re-attach "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--strategy",
        choices=[s.value for s in Strategy],
        default=Strategy.AUTO.value,
        help="how to swap a mount: auto (beneath if the kernel has it, else replace), "
        "beneath, replace, stack, or bind (the fallback for kernels without "
        "open_tree/move_mount) (default: %(default)s)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also list healthy and skipped mounts"
    )
    parser.epilog = (
        "output: one line per repaired, re-attached, failed or gone mount (with --dry-run: "
        "one per stale mount), then one line per container that had anything but healthy "
        "mounts; the summary goes to the log (stderr)"
    )
    add_logging_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run one pass and print one line per mount worth reporting, then a summary."""
    from kube_lxcfs.repair import MountStatus, RepairError, Strategy, repair

    if not args.mount_dir.exists():
        print(
            f"kube-lxcfs repair: nothing to repair: {args.mount_dir} does not exist"
            " (no kube-lxcfs agent on this node)",
            file=sys.stderr,
        )
        return 0
    try:
        report = repair(
            str(args.mount_dir),
            dry_run=args.dry_run,
            strategy=Strategy(args.strategy),
            state_dir=args.state_dir,
        )
    except RepairError as exc:
        print(f"kube-lxcfs repair: {exc}", file=sys.stderr)
        return 1
    if args.dry_run:
        shown = {MountStatus.STALE}
    else:
        shown = {MountStatus.REPAIRED, MountStatus.REATTACHED, MountStatus.FAILED, MountStatus.GONE}
    for outcomes in report.by_namespace().values():
        for o in outcomes:
            if args.verbose or o.status in shown:
                print(o.line())
    if not args.dry_run:
        for line in report.container_lines():
            print(line)
    return 1 if report.failed else 0
