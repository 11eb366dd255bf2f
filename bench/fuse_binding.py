"""What the FUSE binding costs per read, next to the render and to lxcfs.

Three daemons, measured in this one run with bench/fs_read.py's C reader
(open + read to EOF + close; daemon and reader pinned to CPU 0):

* ``binding floor``: our daemon (mfusepy, libfuse3, single-threaded, direct_io)
  serving a constant text: the adapter and binding alone (tests/fs/counter_tree.py);
* ``kube-lxcfs``: the real tree rendering /proc/meminfo for the reader's cgroup;
* ``lxcfs``: Debian's lxcfs 5.0.3 on the same cgroup.

Also the in-process render cost (CPU time of ``ProcTree.read`` called directly, no FUSE), so
the per-read cost splits into binding + render.  Ratios are against lxcfs.

Usage (as root): ``python bench/fuse_binding.py [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fs_read import (  # noqa: E402
    REPO,
    build_reader,
    daemon,
    kube_lxcfs_target,
    lxcfs_target,
    measure,
)
from kube_lxcfs.cgroups.transient import Limits, MiB, create_cgroup, unique_name  # noqa: E402


def render_cost_us(cgroup_pid: int, rounds: int) -> float:
    """Microseconds per ``ProcTree.read("/proc/meminfo", pid)`` in this process."""
    from kube_lxcfs.tree import build_tree
    from kube_lxcfs.vfs import FsOptions

    tree = build_tree(FsOptions(loadavg=False))
    tree.read("/proc/meminfo", cgroup_pid)
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})  # like the daemons below
    try:
        started = time.process_time()
        for _ in range(rounds):
            tree.read("/proc/meminfo", cgroup_pid)
        return (time.process_time() - started) / rounds * 1e6
    finally:
        os.sched_setaffinity(0, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds: CI smoke")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("fuse_binding: needs root (cgroups and FUSE mounts)", file=sys.stderr)
        return 2
    duration = 0.3 if args.quick else 3.0
    reader = build_reader()
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    floor_argv = [sys.executable, str(REPO / "tests/fs/counter_tree.py"), "{mnt}"]
    limits = Limits(memory=512 * MiB, cpuset="0")
    with contextlib.ExitStack() as stack:
        cg = stack.enter_context(create_cgroup(unique_name("kube-lxcfs-bench"), limits))
        sleeper = cg.popen(["sleep", "600"])
        render_us = render_cost_us(sleeper.pid, 200 if args.quick else 5000)
        targets = {
            "binding floor": stack.enter_context(daemon("floor", floor_argv, env)),
            "kube-lxcfs": stack.enter_context(kube_lxcfs_target()),
            "lxcfs": stack.enter_context(lxcfs_target()),
        }
        rows = {
            name: measure(
                reader,
                target,
                file="proc/meminfo",
                cgroups=[cg],
                readers=1,
                pinned=True,
                duration=duration,
            )
            for name, target in targets.items()
        }
    reference = rows["lxcfs"].reads_per_s
    print(f"{'daemon':<14} {'reads/s':>9} {'p50 us':>7} {'daemon us/read':>15} {'vs lxcfs':>8}")
    for name, row in rows.items():
        print(
            f"{name:<14} {row.reads_per_s:>9.0f} {row.p50_us:>7.1f} "
            f"{row.daemon_us_per_read:>15.1f} {row.reads_per_s / reference:>8.2f}"
        )
    print(f"in-process render of /proc/meminfo (no FUSE): {render_us:.1f} us CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
