"""/proc/stat: one ``cpuN`` line per visible CPU (real ids) from the cgroup's CPU time.

v1 has per-CPU times (cpuacct); v2 only totals (cpu.stat), which are spread over
the visible CPUs.  Idle is what the CPU's wall time leaves, so busy + idle add up
and tools computing utilization from two reads get the cgroup's share.  The
aggregate ``cpu  `` line is the sum of the printed lines; other lines are the host's.
"""

from __future__ import annotations

from kube_lxcfs.cgroups.errors import ParseError
from kube_lxcfs.cgroups.snapshot import CpuUsage

USER, NICE, SYSTEM, IDLE = 0, 1, 2, 3
COLUMNS = 10


def _parse_cpu_line(line: str) -> tuple[int, list[int]]:
    name, _, rest = line.partition(" ")
    try:
        values = [int(v) for v in rest.split()]
        return int(name[3:]), values
    except ValueError as exc:
        raise ParseError("/proc/stat", line) from exc


def _format(name: str, values: list[int]) -> str:
    return name + " " + " ".join(str(v) for v in values)


def _spread(total: int, parts: int, index: int) -> int:
    """An even integer share of ``total`` over ``parts``; the first ones get the remainder."""
    return total // parts + (1 if index < total % parts else 0)


def render_stat(
    host_text: str,
    visible: tuple[int, ...],
    usage: CpuUsage | None,
    *,
    clk_tck: int,
    uptime: float,
) -> bytes:
    """Render /proc/stat for a cgroup.

    ``usage is None``: the host's lines of the visible CPUs (a root cgroup).
    ``usage.per_cpu`` (v1): each visible CPU's own time, plus an even share of what
    the cgroup ran on CPUs it no longer sees; idle = host idle + other busy time,
    as lxcfs does.  Totals only (v2): user and system spread evenly, idle = wall
    time since boot (``uptime``) minus busy.
    """
    host_cpus: dict[int, list[int]] = {}
    rest: list[str] = []
    host_aggregate = ""
    for line in host_text.splitlines():
        if line.startswith("cpu"):
            if line.startswith("cpu "):
                host_aggregate = line
                continue
            cpu, values = _parse_cpu_line(line)
            host_cpus[cpu] = values
        else:
            rest.append(line)
    width = max((len(v) for v in host_cpus.values()), default=COLUMNS)
    shown = [c for c in visible if c in host_cpus] or list(visible)
    lines: dict[int, list[int]] = {}
    if usage is None:
        for cpu in shown:
            lines[cpu] = host_cpus.get(cpu, [0] * width)
    elif usage.per_cpu is not None:
        ticks = clk_tck / 1e9
        hidden = [t for c, t in usage.per_cpu.items() if c not in shown]
        hidden_user = sum(t.user for t in hidden)
        hidden_system = sum(t.system for t in hidden)
        for i, cpu in enumerate(shown):
            own = usage.per_cpu.get(cpu)
            user_ns = (own.user if own else 0) + _spread(hidden_user, len(shown), i)
            system_ns = (own.system if own else 0) + _spread(hidden_system, len(shown), i)
            user, system = int(user_ns * ticks), int(system_ns * ticks)
            host = host_cpus.get(cpu, [0] * width)
            host_busy = sum(host) - host[IDLE]
            idle = host[IDLE] + host_busy - (user + system)
            if user + system > host_busy:
                idle = host[IDLE]
            lines[cpu] = [user, 0, system, idle] + [0] * (width - 4)
    else:
        wall = int(uptime * clk_tck)
        user_total = int(usage.user * clk_tck / 1e9)
        system_total = int(usage.system * clk_tck / 1e9)
        for i, cpu in enumerate(shown):
            user = _spread(user_total, len(shown), i)
            system = _spread(system_total, len(shown), i)
            idle = max(0, wall - user - system)
            lines[cpu] = [user, 0, system, idle] + [0] * (width - 4)
    aggregate = [sum(col) for col in zip(*lines.values(), strict=True)] or [0] * width
    whole_host = usage is None and len(lines) == len(host_cpus)
    out = [host_aggregate if whole_host and host_aggregate else _format("cpu ", aggregate)]
    out.extend(_format(f"cpu{cpu}", values) for cpu, values in lines.items())
    out.extend(rest)
    return ("\n".join(out) + "\n").encode()
