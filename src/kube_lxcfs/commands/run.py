"""The ``kube-lxcfs run`` subcommand."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from kube_lxcfs.commands._options import add_logging_options, directory
from kube_lxcfs.defaults import MOUNT_DIR
from kube_lxcfs.files_text import names_in
from kube_lxcfs.sandbox.quantity import (
    CPUSET_FORMS,
    QuantityError,
    format_cpuset,
    parse_cpus,
    parse_cpuset,
    parse_memory,
)

T = TypeVar("T")

HELP = "Run a command under cgroup limits with the virtual /proc bind-mounted (no cluster)."

DESCRIPTION = f"""\
{HELP}

COMMAND runs in a new cgroup with the given limits (cgroup v1, hybrid or v2) and in a private
mount namespace where the files of a kube-lxcfs filesystem are bound read-only over
/proc/{names_in("/proc", injected_only=True)} and /sys/devices/system/cpu,
exactly as the admission webhook does in a pod.  So free, top, htop, nproc, os.cpu_count()
and friends report the limits instead of the machine.

The filesystem is the one at --mount-dir; without it, a kube-lxcfs already mounted at
{MOUNT_DIR}, else a private one started for the duration of COMMAND.  stdin, stdout and
stderr are COMMAND's; signals sent to kube-lxcfs run (and Ctrl-C) reach COMMAND; the exit code
is COMMAND's (128+N if signal N killed it).  The cgroup, the private filesystem and the
mounts are removed afterwards, also when COMMAND fails or is killed.  Needs root.
"""

EPILOG = f"""\
quantities (Kubernetes notation):
  --memory, --memory-swap   512Mi, 1Gi, 1.5Gi, 500M, 1G, 268435456 (bytes), 1e9
  --cpus                    1, 1.5, 0.5, 500m, 1500m  (CFS quota per 100 ms period)
  --cpuset                  0, 0-1, 0,2-3

CPU affinity: --cpuset sets it; --cpus alone narrows it to ceil(CPUS) CPUs, so that nproc,
os.process_cpu_count() and Go's NumCPU agree with /proc (--keep-affinity to leave it).
Fractional quotas are rounded up in /proc (1.5 CPUs show as 2), like lxcfs, the JVM and .NET.

exit codes: COMMAND's own; 2 bad usage or quantity; 125 kube-lxcfs failed (no root, no
filesystem, cgroup error); 126 COMMAND not executable; 127 COMMAND not found.

examples:
  kube-lxcfs run --memory 512Mi --cpus 1 -- sh -c 'free -m; nproc; grep -c ^processor /proc/cpuinfo'
  kube-lxcfs run --memory 256Mi -- python3 -c 'import psutil; print(psutil.virtual_memory().total)'
  kube-lxcfs run --cpus 1500m --cpuset 0-1 -- python3 -c 'import os; print(os.cpu_count())'
  kube-lxcfs run --memory 1Gi --memory-swap 2Gi -- cat /proc/swaps
  kube-lxcfs run --mount-dir {MOUNT_DIR} --cpus 2 -- make -j"$(nproc)"
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` subcommand."""
    parser = subparsers.add_parser(
        "run",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="kube-lxcfs run [OPTIONS] -- COMMAND [ARGS...]",
    )
    parser.add_argument("--memory", metavar="SIZE", help="memory limit, e.g. 512Mi")
    parser.add_argument(
        "--memory-swap",
        metavar="SIZE",
        help="memory + swap limit (at least --memory), e.g. 1Gi; default: no swap limit",
    )
    parser.add_argument("--cpus", metavar="CPUS", help="CPU limit as a quota, e.g. 1.5 or 1500m")
    parser.add_argument("--cpuset", metavar="LIST", help="CPUs to run on, e.g. 0-1")
    parser.add_argument(
        "--keep-affinity",
        action="store_true",
        help="do not narrow the CPU affinity to ceil(--cpus) CPUs",
    )
    parser.add_argument(
        "--mount-dir",
        metavar="DIR",
        type=directory,
        help="use the kube-lxcfs (or lxcfs) filesystem mounted at DIR "
        f"(default: {MOUNT_DIR} if kube-lxcfs is mounted there, else a private one)",
    )
    parser.add_argument(
        "--debug", action="store_true", help="log what is set up and removed (--log-level debug)"
    )
    add_logging_options(parser)
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND", help="to run")
    parser.set_defaults(handler=run)


def _usage_error(message: str) -> int:
    print(f"kube-lxcfs run: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Validate the options, then hand over to :mod:`kube_lxcfs.sandbox.runner`."""
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        return _usage_error("no COMMAND given (kube-lxcfs run [OPTIONS] -- COMMAND [ARGS...])")
    try:
        memory = _parsed("--memory", args.memory, parse_memory)
        memory_swap = _parsed("--memory-swap", args.memory_swap, parse_memory)
        quota = _parsed("--cpus", args.cpus, parse_cpus)
        cpuset = _parsed("--cpuset", args.cpuset, parse_cpuset)
    except QuantityError as exc:
        return _usage_error(str(exc))
    allowed = os.sched_getaffinity(0)
    if cpuset is not None and not cpuset <= allowed:
        return _usage_error(
            f"--cpuset {args.cpuset}: only CPUs {format_cpuset(allowed)} are available"
            f" ({CPUSET_FORMS})"
        )
    # Imported late: the cgroup and mount modules are only needed once the input is valid.
    from kube_lxcfs.cgroups.transient import Limits
    from kube_lxcfs.sandbox.runner import (
        EXIT_SANDBOX_FAILED,
        RunSpec,
        SandboxError,
        choose_affinity,
    )
    from kube_lxcfs.sandbox.runner import run as run_sandboxed

    try:
        limits = Limits(
            memory=memory,
            memory_swap=memory_swap,
            cpu_quota=quota.quota_us if quota else None,
            cpu_period=quota.period_us if quota else 100_000,
            cpuset=format_cpuset(cpuset) if cpuset is not None else None,
        )
    except ValueError as exc:
        return _usage_error(str(exc).replace("memory_swap", "--memory-swap"))
    affinity = choose_affinity(
        cpuset,
        None if quota is None or args.keep_affinity else float(quota.cpus),
        sorted(allowed),
        seed=os.getpid(),
    )
    spec = RunSpec(command=command, limits=limits, affinity=affinity, mount_dir=args.mount_dir)
    try:
        return run_sandboxed(spec)
    except SandboxError as exc:
        print(f"kube-lxcfs run: {exc}", file=sys.stderr)
        return EXIT_SANDBOX_FAILED


def _parsed(option: str, value: str | None, parse: Callable[[str], T]) -> T | None:
    """``parse(value)``, with the option named in the error message."""
    if value is None:
        return None
    try:
        return parse(value)
    except QuantityError as exc:
        raise QuantityError(f"{option}: {exc}") from None
