"""The ``struct sysinfo`` a container's sysinfo(2) gets, from the same figures as meminfo.

busybox ``free`` mixes sysinfo's totals with /proc/meminfo's Cached, so both
must come from one computation: :mod:`kube_lxcfs.sysinfo` draws the values from
the render context that the virtual files use.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SI_LOAD_SHIFT = 16
"""sysinfo's loads are fixed point with 16 fractional bits (the kernel's FSHIFT is 11)."""
KERNEL_FSHIFT = 11

# struct sysinfo on 64-bit Linux: long uptime; unsigned long loads[3];
# unsigned long totalram, freeram, sharedram, bufferram, totalswap, freeswap;
# unsigned short procs, pad; unsigned long totalhigh, freehigh; unsigned int mem_unit;
# char _f[0]; padded to 8 bytes: 112 bytes.
_LAYOUT = struct.Struct("@l3L6LHHLLI")
SYSINFO_SIZE = 112


@dataclass(frozen=True, slots=True)
class SysinfoValues:
    """What sysinfo(2) reports, in bytes and seconds (mem_unit is 1)."""

    uptime: int
    loads: tuple[int, int, int]
    """In the kernel's 11-bit fixed point, as /proc/loadavg's sampler keeps them."""
    totalram: int
    freeram: int
    sharedram: int
    bufferram: int
    totalswap: int
    freeswap: int
    procs: int


def pack_sysinfo(values: SysinfoValues) -> bytes:
    """The 112 bytes of ``struct sysinfo`` for 64-bit Linux (native byte order)."""
    shift = SI_LOAD_SHIFT - KERNEL_FSHIFT
    ulong_max = (1 << 64) - 1
    clamp = lambda v: min(max(int(v), 0), ulong_max)  # noqa: E731
    body = _LAYOUT.pack(
        max(int(values.uptime), 0),
        *(clamp(load << shift) for load in values.loads),
        clamp(values.totalram),
        clamp(values.freeram),
        clamp(values.sharedram),
        clamp(values.bufferram),
        clamp(values.totalswap),
        clamp(values.freeswap),
        min(max(values.procs, 0), 0xFFFF),
        0,
        0,
        0,
        1,
    )
    return body.ljust(SYSINFO_SIZE, b"\0")


def unpack_sysinfo(data: bytes) -> SysinfoValues:
    """The inverse of :func:`pack_sysinfo` (for tests and diagnostics)."""
    fields = _LAYOUT.unpack_from(data)
    shift = SI_LOAD_SHIFT - KERNEL_FSHIFT
    unit = fields[14] or 1
    return SysinfoValues(
        uptime=fields[0],
        loads=(fields[1] >> shift, fields[2] >> shift, fields[3] >> shift),
        totalram=fields[4] * unit,
        freeram=fields[5] * unit,
        sharedram=fields[6] * unit,
        bufferram=fields[7] * unit,
        totalswap=fields[8] * unit,
        freeswap=fields[9] * unit,
        procs=fields[10],
    )
