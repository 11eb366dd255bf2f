"""Gather the inputs of :mod:`kube_lxcfs.repair.plan` from the running host.

Every mount namespace is found through ``/proc/*/ns/mnt`` (deduplicated by the
namespace's inode, one representative process each). Probes stat a mount point
through ``/proc/<pid>/root``, i.e. as the namespace sees it, in a helper thread
so that a hung FUSE connection cannot block the caller. The probe is
``statvfs``: FUSE answers ``stat`` from its attribute cache for a while after
the daemon died, but always sends STATFS to the daemon, so a dead connection
fails at once with ENOTCONN.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from kube_lxcfs.mountinfo import MountEntry
from kube_lxcfs.repair.plan import Probe


@dataclass(frozen=True, slots=True)
class Namespace:
    """One mount namespace and the processes through which we reach it."""

    inode: int
    pids: tuple[int, ...]
    """Its processes, oldest first (a container's init before its short-lived children)."""
    label: str
    """Human name for reports: representative pid, command and cgroup."""
    host: bool
    """True for the namespace this process runs in (where the live mount is)."""

    @property
    def pid(self) -> int:
        """A process still in the namespace (the oldest one that is), to reach it through.

        A process picked at discovery may exit a moment later (a container's
        ``sleep``); any other one of the namespace does as well.
        """
        for pid in self.pids:
            try:
                if os.stat(f"/proc/{pid}/ns/mnt").st_ino == self.inode:
                    return pid
            except OSError:
                continue
        return self.pids[0]


def own_namespace_inode(proc: str = "/proc") -> int:
    return os.stat(f"{proc}/self/ns/mnt").st_ino


def _label(pid: int, proc: str) -> str:
    try:
        with open(f"{proc}/{pid}/comm", encoding="utf-8", errors="replace") as f:
            comm = f.read().strip()
        with open(f"{proc}/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return f"pid {pid}"
    # cgroup v2 line ("0::/path") if there is one, else the first v1 line.
    paths = [ln.split(":", 2)[2] for ln in lines if ln.count(":") >= 2]
    unified = [ln.split(":", 2)[2] for ln in lines if ln.startswith("0::")]
    cgroup = (unified or paths or ["?"])[0]
    return f"pid {pid} ({comm}) cgroup {cgroup}"


def _start_time(pid: int, proc: str) -> int:
    """Clock ticks since boot when ``pid`` started (field 22 of its stat); huge if gone."""
    try:
        with open(f"{proc}/{pid}/stat", encoding="utf-8", errors="replace") as f:
            text = f.read()
        return int(text[text.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return 1 << 62


def list_namespaces(proc: str = "/proc") -> list[Namespace]:
    """Every mount namespace with a process in it, ours first, then by inode."""
    own = own_namespace_inode(proc)
    members: dict[int, list[tuple[int, int]]] = {}
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            inode = os.stat(f"{proc}/{name}/ns/mnt").st_ino
        except OSError:
            continue  # exited, or a kernel thread without a namespace link
        pid = int(name)
        members.setdefault(inode, []).append((_start_time(pid, proc), pid))
    result = []
    for inode, found in members.items():
        pids = tuple(pid for _, pid in sorted(found))
        label = _label(pids[0], proc)
        result.append(Namespace(inode=inode, pids=pids, label=label, host=inode == own))
    result.sort(key=lambda ns: (not ns.host, ns.inode))
    return result


def read_mountinfo(ns: Namespace, proc: str = "/proc") -> str:
    """The mountinfo text of ``ns`` (``OSError`` if its process has exited)."""
    with open(f"{proc}/{ns.pid}/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def still_in(ns: Namespace, proc: str = "/proc") -> bool:
    """Whether a process of ``ns`` still lives in it (not all exited, no pid reused)."""
    try:
        return os.stat(f"{proc}/{ns.pid}/ns/mnt").st_ino == ns.inode
    except OSError:
        return False


def probe(ns: Namespace, entry: MountEntry, timeout: float = 2.0, proc: str = "/proc") -> Probe:
    """statvfs ``entry``'s mount point as ``ns`` sees it, giving up after ``timeout`` seconds."""
    path = f"{proc}/{ns.pid}/root{entry.mount_point}"
    result: list[Probe] = []

    def run() -> None:
        try:
            os.statvfs(path)
            result.append(Probe())
        except OSError as exc:
            result.append(Probe(error=exc.errno))

    worker = threading.Thread(target=run, name="kube-lxcfs-probe", daemon=True)
    worker.start()
    worker.join(timeout)
    return result[0] if result else Probe(timed_out=True)
