"""/sys/devices/system/cpu: online, offline and cpuN/online as a machine with hot-unplugged CPUs.

``possible``, ``present`` and the ``cpuN`` directories stay the host's, so per-CPU
arrays sized from them still cover every id the kernel can report.
"""

from __future__ import annotations

from kube_lxcfs.cgroups.parse import format_cpu_list


def render_online(visible: tuple[int, ...]) -> bytes:
    """``online``: the visible CPUs by real id."""
    return (format_cpu_list(visible) + "\n").encode()


def render_offline(possible: frozenset[int], visible: tuple[int, ...]) -> bytes:
    """``offline``: every possible CPU that is not visible (empty line when none)."""
    return (format_cpu_list(possible - frozenset(visible)) + "\n").encode()


def render_cpu_online(cpu: int, visible: tuple[int, ...]) -> bytes:
    """``cpuN/online``: 1 for a visible CPU, 0 otherwise."""
    return b"1\n" if cpu in visible else b"0\n"
