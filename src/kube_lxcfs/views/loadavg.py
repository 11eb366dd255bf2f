"""/proc/loadavg per cgroup: the kernel's fixed-point averages, fed by a sampler.

The arithmetic is the kernel's (and lxcfs's): 11-bit fixed point, one step per
5 s with the 1/5/15-minute decay constants, rounding up while the load rises.
"""

from __future__ import annotations

from typing import NamedTuple

FSHIFT = 11
FIXED_1 = 1 << FSHIFT
EXP = (1884, 2014, 2037)
"""exp(-5s/1min), exp(-5s/5min), exp(-5s/15min) in fixed point."""
INTERVAL = 5.0
"""Seconds per step, the kernel's LOAD_FREQ."""


class Loads(NamedTuple):
    """Three fixed-point load averages plus the last sample's task counts."""

    avg1: int = 0
    avg5: int = 0
    avg15: int = 0
    running: int = 0
    total: int = 0
    last_pid: int = 0


def _step(load: int, exp: int, active: int) -> int:
    new = load * exp + active * (FIXED_1 - exp)
    if active >= load:
        new += FIXED_1 - 1
    return new // FIXED_1


def advance(loads: Loads, running: int, total: int, last_pid: int, steps: int = 1) -> Loads:
    """The averages after ``steps`` 5-second intervals with ``running`` runnable tasks."""
    active = running * FIXED_1
    a1, a5, a15 = loads.avg1, loads.avg5, loads.avg15
    for _ in range(max(steps, 0)):
        a1, a5, a15 = (
            _step(a1, EXP[0], active),
            _step(a5, EXP[1], active),
            _step(a15, EXP[2], active),
        )
    return Loads(a1, a5, a15, running, total, last_pid)


def _fmt(value: int) -> str:
    x = value + FIXED_1 // 200
    return f"{x >> FSHIFT}.{((x & (FIXED_1 - 1)) * 100) >> FSHIFT:02d}"


def render_loadavg(loads: Loads) -> bytes:
    """``a1 a5 a15 running/total last_pid``, as the kernel formats it."""
    return (
        f"{_fmt(loads.avg1)} {_fmt(loads.avg5)} {_fmt(loads.avg15)} "
        f"{loads.running}/{loads.total} {loads.last_pid}\n"
    ).encode()
