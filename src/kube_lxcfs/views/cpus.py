"""Which CPUs a cgroup sees: the one decision cpuinfo, stat and sys/devices/system/cpu share."""

from __future__ import annotations

import math
from typing import Literal


def visible_cpus(
    cpuset: frozenset[int] | None,
    quota: float | None,
    host_online: frozenset[int],
    view: Literal["quota", "cpuset"] = "quota",
) -> tuple[int, ...]:
    """The CPUs to show, by real id, ascending.

    The effective cpuset (the host's online CPUs when there is none); in the quota
    view only its lowest ``ceil(quota)`` ids, since a 0.5-CPU container can run one
    thread at a time.  Never empty.
    """
    base = host_online if cpuset is None else (cpuset & host_online or cpuset)
    if not base:
        base = host_online or frozenset({0})
    ordered = sorted(base)
    if view == "quota" and quota is not None:
        ordered = ordered[: max(1, min(len(ordered), math.ceil(quota - 1e-9)))]
    return tuple(ordered)
