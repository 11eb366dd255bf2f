"""/proc/swaps: one ``none ... virtual`` line whose figures match meminfo's Swap lines."""

from __future__ import annotations

from kube_lxcfs.cgroups.parse import parse_meminfo_kb
from kube_lxcfs.cgroups.snapshot import MemorySnapshot
from kube_lxcfs.views.meminfo import HOST_KEYS, swap_figures

SWAPS_HEADER = "Filename\t\t\t\tType\t\tSize\tUsed\tPriority\n"


def render_swaps(
    host_meminfo_text: str, host_swaps_text: str, mem: MemorySnapshot | None, *, swap: bool = True
) -> bytes:
    """The cgroup's /proc/swaps: one ``none ... virtual`` line consistent with meminfo.

    The root cgroup (``mem is None``) sees the host's file (header only with swap off).
    """
    if mem is None:
        return host_swaps_text.encode() if swap else SWAPS_HEADER.encode()
    total, used = swap_figures(parse_meminfo_kb(host_meminfo_text, HOST_KEYS), mem, swap)
    if total <= 0:
        return SWAPS_HEADER.encode()
    return (SWAPS_HEADER + f"none{' ' * 36}virtual\t\t{total}\t{used}\t0\n").encode()
