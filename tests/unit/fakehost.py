"""A fake host under a temporary directory: proc, sys (cgroup v2 + cpu dir) and mountinfo.

Host files come from the recorded v2 VM capture (4 CPUs, 2 GiB); cgroup files are
written by each test so the expected values are visible next to the assertions.
"""

from __future__ import annotations

import os
from pathlib import Path

from kube_lxcfs.files import FILES
from kube_lxcfs.vfs import FsOptions
from unit.captures import capture_body

V2_MOUNTINFO = "25 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
HOST_NS = "pid:[4026531836]"
PRESSURE_PATHS = tuple(f.path for f in FILES if f.path.startswith("/proc/pressure/"))

HOST_STAT = """\
cpu  400 0 800 40000 0 0 0 0 0 0
cpu0 100 0 200 10000 0 0 0 0 0 0
cpu1 100 0 200 10000 0 0 0 0 0 0
cpu2 100 0 200 10000 0 0 0 0 0 0
cpu3 100 0 200 10000 0 0 0 0 0 0
intr 1 2 3
ctxt 99
btime 1700000000
processes 500
procs_running 1
procs_blocked 0
"""

PSI = (
    "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
)


def _cpuinfo(n: int) -> str:
    blocks = []
    for i in range(n):
        blocks.append(
            f"processor\t: {i}\nvendor_id\t: GenuineIntel\nphysical id\t: 0\n"
            f"siblings\t: {n}\ncore id\t\t: {i}\ncpu cores\t: {n}\napicid\t\t: {i}\n\n"
        )
    return "".join(blocks)


class FakeHost:
    """Builds and edits the fake tree."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc = root / "proc"
        self.sys = root / "sys"
        self.cgroup = self.sys / "fs" / "cgroup"
        self.mountinfo = root / "mountinfo"
        self.mountinfo.write_text(V2_MOUNTINFO)
        meminfo = capture_body("real/proc-meminfo", "v2")
        self.write_proc(
            "meminfo",
            meminfo.replace("SwapTotal:             0 kB", "SwapTotal:        262112 kB").replace(
                "SwapFree:              0 kB", "SwapFree:         262112 kB"
            ),
        )
        self.write_proc("cpuinfo", _cpuinfo(4))
        self.write_proc("stat", HOST_STAT)
        self.write_proc("uptime", "1000.00 3000.00\n")
        self.write_proc("loadavg", "0.50 0.40 0.30 1/100 4242\n")
        self.write_proc(
            "swaps",
            "Filename\t\t\t\tType\t\tSize\tUsed\tPriority\n"
            "/swapfile                               file\t\t262112\t0\t-2\n",
        )
        self.write_proc("diskstats", " 254       0 vda 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n")
        self.write_proc("slabinfo", "slabinfo - version: 2.1\n")
        for path in PRESSURE_PATHS:  # every PSI file the table serves
            self.write_proc(path.removeprefix("/proc/"), PSI)
        (self.proc / "self" / "ns").mkdir(parents=True)
        os.symlink(HOST_NS, self.proc / "self" / "ns" / "pid")
        cpu = self.sys / "devices" / "system" / "cpu"
        for name, text in {
            "online": "0-3\n",
            "possible": "0-3\n",
            "present": "0-3\n",
            "offline": "\n",
            "kernel_max": "8191\n",
        }.items():
            self.write(cpu / name, text)
        for i in range(4):
            self.write(cpu / f"cpu{i}" / "topology" / "core_id", f"{i}\n")
            if i:
                self.write(cpu / f"cpu{i}" / "online", "1\n")
            os.symlink("../../../../bus/cpu", cpu / f"cpu{i}" / "subsystem")
        # the v2 root
        self.cgroup_files("/", {
            "cgroup.controllers": "cpuset cpu io memory pids\n",
            "cpuset.cpus.effective": "0-3\n",
            "memory.stat": "anon 1000\nfile 2000\n",
            "cpu.stat": "usage_usec 1\nuser_usec 1\nsystem_usec 0\n",
        })  # fmt: skip

    @staticmethod
    def write(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def write_proc(self, name: str, text: str) -> None:
        self.write(self.proc / name, text)

    def cgroup_files(self, cgroup: str, files: dict[str, str]) -> None:
        directory = self.cgroup / cgroup.lstrip("/")
        for name, text in files.items():
            self.write(directory / name, text)

    def process(
        self, pid: int, cgroup: str, *, ns: str = HOST_NS, nspid: tuple[int, ...] = (),
        ppid: int = 1, start_ticks: int = 100,
    ) -> None:  # fmt: skip
        """A process in ``cgroup`` (v2 path), in pid namespace ``ns``."""
        d = self.proc / str(pid)
        self.write(d / "cgroup", f"0::{cgroup}\n")
        nspid = nspid or (pid,)
        nspid_text = "\t".join(map(str, nspid))
        self.write(d / "status", f"Name:\tx\nPPid:\t{ppid}\nNSpid:\t{nspid_text}\n")
        self.write(d / "stat", f"{pid} (x) S {ppid} " + "0 " * 17 + f"{start_ticks} 0 0\n")
        (d / "ns").mkdir(exist_ok=True)
        os.symlink(ns, d / "ns" / "pid")

    def options(self, **overrides: object) -> FsOptions:
        return FsOptions(
            proc_root=str(self.proc), sys_root=str(self.sys), mountinfo=str(self.mountinfo),
            **overrides,  # type: ignore[arg-type]
        )  # fmt: skip
