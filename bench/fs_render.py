"""Where a read's time goes inside the daemon: the tree's render cost per file, no FUSE.

One reader process sits in a benchmark cgroup (512 MiB, 1 CPU quota, cpuset 0-1);
the tree renders each file for it in this process, and the CPU time per render is
printed for three set-ups of the same tree, in the same run:

* hit: the default policy, every read after the first answered by the render cache;
* miss: no render cache (``KUBE_LXCFS_CACHE=off``), host files and limits still kept
  for their short periods: the cost of a render-cache miss;
* cold: nothing cached at all (``CachePolicy.off()``), every file read every time.

``--profile FILE`` prints cProfile's top functions for the miss set-up of that file
(e.g. ``/proc/meminfo``).  The figures are CPU time of this process (best of 3
rounds), so machine load inflates them less than wall time; FUSE's own cost (kernel,
libfuse, mfusepy: ~35 us per read on the 2-vCPU test machine) comes on top, see
bench/fs_read.py.

Usage (as root)::

    python bench/fs_render.py [--reads 3000] [--profile /proc/meminfo]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from kube_lxcfs.cgroups.transient import Limits, MiB, create_cgroup, unique_name  # noqa: E402
from kube_lxcfs.render_cache import CachePolicy  # noqa: E402
from kube_lxcfs.tree import ProcTree  # noqa: E402
from kube_lxcfs.vfs import FsOptions  # noqa: E402

FILES = (
    "/proc/meminfo",
    "/proc/stat",
    "/proc/cpuinfo",
    "/proc/uptime",
    "/proc/loadavg",
    "/sys/devices/system/cpu/online",
)
SETUPS = {
    "hit": CachePolicy(),
    "miss": CachePolicy(renders=False, slow_after=float("inf")),
    "cold": CachePolicy.off(),
}


def cost_us(tree: ProcTree, path: str, pid: int, reads: int) -> float:
    """CPU microseconds per render, best of 3 rounds."""
    tree.read(path, pid)
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(reads):
            tree.read(path, pid)
        best = min(best, (time.process_time() - started) / reads * 1e6)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=3000, help="renders per round")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the miss set-up of FILE")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("fs_render: needs root (cgroups)", file=sys.stderr)
        return 2
    limits = Limits(memory=512 * MiB, cpu_quota=100_000, cpu_period=100_000, cpuset="0-1")
    with create_cgroup(f"{unique_name('kube-lxcfs-bench')}/main", limits) as cg:
        reader = cg.popen(["sleep", "600"])
        try:
            trees = {name: ProcTree(FsOptions(), cache=policy) for name, policy in SETUPS.items()}
            print(f"{'file':<32}" + "".join(f"{name + ' us':>10}" for name in trees) + "  miss/hit")
            for path in FILES:
                costs = {n: cost_us(t, path, reader.pid, args.reads) for n, t in trees.items()}
                print(
                    f"{path:<32}"
                    + "".join(f"{c:>10.1f}" for c in costs.values())
                    + f"  {costs['miss'] / costs['hit']:>8.1f}",
                    flush=True,
                )
            if args.profile:
                profile = cProfile.Profile()
                profile.enable()
                for _ in range(args.reads):
                    trees["miss"].read(args.profile, reader.pid)
                profile.disable()
                pstats.Stats(profile).sort_stats("tottime").print_stats(15)
        finally:
            reader.kill()
            reader.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
