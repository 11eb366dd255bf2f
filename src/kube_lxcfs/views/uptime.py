"""/proc/uptime: the age of the reader's container (its pid-namespace init)."""

from __future__ import annotations


def render_uptime(
    now: float, init_start_ticks: int, clk_tck: int, busy_ns: int | None, cpus: int
) -> bytes:
    """``age idle`` with two decimals.

    ``now`` is seconds since boot; the init started ``init_start_ticks`` after boot.
    Like the kernel's, idle is summed over the container's CPUs: its CPU time
    (``cpus`` * age) minus what the cgroup used (``busy_ns``), never below 0.
    """
    age = max(0.0, now - init_start_ticks / clk_tck)
    busy = (busy_ns or 0) / 1e9
    idle = max(0.0, age * max(cpus, 1) - busy)
    return f"{age:.2f} {idle:.2f}\n".encode()
