"""The figures sysinfo(2) gives a wrapped container: those of its meminfo, uptime and loadavg.

busybox ``free`` mixes sysinfo's totals with /proc/meminfo's Cached, so both come from
one computation, on the same :class:`~kube_lxcfs.context.RenderContext` as the files.
The seccomp listener (:mod:`kube_lxcfs.runtime.listener`) packs them for the caller
(:func:`kube_lxcfs.views.sysinfo.pack_sysinfo`).
"""

from __future__ import annotations

from kube_lxcfs.cgroups.parse import parse_meminfo_kb
from kube_lxcfs.context import RenderContext
from kube_lxcfs.files import FILES
from kube_lxcfs.table import uptime as render_uptime
from kube_lxcfs.views.loadavg import FIXED_1, Loads
from kube_lxcfs.views.meminfo import HOST_KEYS, memory_figures
from kube_lxcfs.views.sysinfo import SysinfoValues

_UPTIME = next(f for f in FILES if f.path == "/proc/uptime")


def sysinfo_values(ctx: RenderContext, pid: int) -> SysinfoValues:
    """What sysinfo(2) must tell ``pid``: the same figures as its meminfo, uptime and loadavg.

    Raises on faults (the listener then lets the call through to the host).
    """
    host_text = ctx.host_text("meminfo")
    mem = ctx.memory(ctx.entries(pid), host_text)
    if mem is None:
        kb = parse_meminfo_kb(host_text, HOST_KEYS | {"Shmem", "Buffers"})
        if not ctx.options.swap:
            kb["SwapTotal"] = kb["SwapFree"] = 0
    else:
        kb = memory_figures(parse_meminfo_kb(host_text, HOST_KEYS), mem, ctx.options.swap).lines
    uptime = float(render_uptime(ctx, _UPTIME, pid).split()[0])
    loads = _loads(ctx, pid)
    return SysinfoValues(
        uptime=int(uptime),
        loads=(loads.avg1, loads.avg5, loads.avg15),
        totalram=kb["MemTotal"] * 1024,
        freeram=kb["MemFree"] * 1024,
        sharedram=kb.get("Shmem", 0) * 1024,
        bufferram=kb.get("Buffers", 0) * 1024,
        totalswap=kb.get("SwapTotal", 0) * 1024,
        freeswap=kb.get("SwapFree", 0) * 1024,
        procs=loads.total,
    )


def _loads(ctx: RenderContext, pid: int) -> Loads:
    if ctx.options.loadavg:
        h, cg = ctx.cgroups.locate(ctx.entries(pid), "cpu")
        if cg != "/":
            return ctx.sampler.observe(h.directory(cg), ctx.clock(), pid)
    fields = ctx.host_text("loadavg").split()
    running, _, total = fields[3].partition("/")
    a1, a5, a15 = (round(float(v) * FIXED_1) for v in fields[:3])
    return Loads(a1, a5, a15, int(running), int(total), int(fields[4]))
