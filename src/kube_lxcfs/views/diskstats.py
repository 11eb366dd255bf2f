"""/proc/diskstats: the host's devices with the cgroup's own IO counters."""

from __future__ import annotations

from kube_lxcfs.cgroups.parse import IoCounters
from kube_lxcfs.cgroups.snapshot import IoSnapshot

SECTOR = 512


def _fields(io: IoCounters) -> list[int]:
    """The kernel's diskstats columns we can know from cgroup counters (times are 0)."""
    return [
        io.rios, 0, io.rbytes // SECTOR, 0,  # reads: completed, merged, sectors, ms
        io.wios, 0, io.wbytes // SECTOR, 0,  # writes
        0, 0, 0,  # in progress, io ms, weighted io ms
        io.dios, 0, io.dbytes // SECTOR, 0,  # discards (Linux 4.18+)
        0, 0,  # flushes (Linux 5.5+)
    ]  # fmt: skip


def render_diskstats(host_text: str, io: IoSnapshot | None) -> bytes:
    """One line per host device the cgroup did IO on, in the host's order and width.

    ``io is None`` (no per-cgroup source, or the root cgroup): the host file.
    Devices without IO from this cgroup are left out, as lxcfs does.
    """
    if io is None:
        return host_text.encode()
    out = []
    for line in host_text.splitlines():
        parts = line.split()
        if len(parts) < 4 or not parts[0].isdigit() or not parts[1].isdigit():
            continue
        counters = io.devices.get((int(parts[0]), int(parts[1])))
        if counters is None or not any(counters):
            continue
        values = _fields(counters)[: len(parts) - 3]
        values += [0] * (len(parts) - 3 - len(values))
        out.append(f"{parts[0]:>4} {parts[1]:>7} {parts[2]} " + " ".join(map(str, values)))
    return ("\n".join(out) + "\n").encode() if out else b""
