"""The renderer of every row of :data:`kube_lxcfs.files.FILES`, bound to the render context.

A binding gathers a file's inputs (host text, cgroup snapshot, options) from the
:class:`~kube_lxcfs.context.RenderContext` and hands them to a pure renderer of
:mod:`kube_lxcfs.views`.  Rows name their binding (``render="meminfo"``); a binding
is registered under that name with :func:`binding`.  Two shapes, by the row's scope:

* ``cgroup``: ``(ctx, file, entries, pid) -> bytes`` from the deciding process's
  cgroups; the tree keeps the result per (file, cgroup) for the row's freshness;
* ``pid-namespace``: ``(ctx, file, pid) -> bytes``, rendered on every read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kube_lxcfs.cgroups.parse import parse_cpu_list, parse_uptime
from kube_lxcfs.cgroups.reader import read_text
from kube_lxcfs.context import Entries, RenderContext
from kube_lxcfs.files import VirtualFile
from kube_lxcfs.views.cpuinfo import render_cpuinfo
from kube_lxcfs.views.diskstats import render_diskstats
from kube_lxcfs.views.loadavg import render_loadavg
from kube_lxcfs.views.meminfo import render_meminfo
from kube_lxcfs.views.pressure import render_pressure
from kube_lxcfs.views.stat import render_stat
from kube_lxcfs.views.swaps import render_swaps
from kube_lxcfs.views.sysfs_cpu import render_cpu_online, render_offline, render_online
from kube_lxcfs.views.uptime import render_uptime

CgroupRender = Callable[[RenderContext, VirtualFile, Entries, int], bytes]
ProcessRender = Callable[[RenderContext, VirtualFile, int], bytes]

BINDINGS: dict[str, Callable[..., bytes]] = {}
"""Render name (a row's ``render``) → its binding."""


def binding(name: str) -> Callable[[Callable[..., bytes]], Callable[..., bytes]]:
    """Register the decorated function as the binding of rows with ``render=name``."""

    def register(fn: Callable[..., bytes]) -> Callable[..., bytes]:
        assert name not in BINDINGS, f"two bindings named {name!r}"
        BINDINGS[name] = fn
        return fn

    return register


@binding("meminfo")
def meminfo(ctx: RenderContext, file: VirtualFile, entries: Entries, pid: int) -> bytes:
    host = ctx.host_text("meminfo")
    return render_meminfo(host, ctx.memory(entries, host), swap=ctx.options.swap)


@binding("swaps")
def swaps(ctx: RenderContext, file: VirtualFile, entries: Entries, pid: int) -> bytes:
    host = ctx.host_text("meminfo")
    mem = ctx.memory(entries, host)
    return render_swaps(host, ctx.host_text("swaps"), mem, swap=ctx.options.swap)


@binding("cpuinfo")
def cpuinfo(ctx: RenderContext, file: VirtualFile, entries: Entries, pid: int) -> bytes:
    return render_cpuinfo(ctx.host_text("cpuinfo"), ctx.visible(entries))


@binding("stat")
def stat(ctx: RenderContext, file: VirtualFile, entries: Entries, pid: int) -> bytes:
    visible = ctx.visible(entries)
    usage = ctx.cgroups.cpu_usage(entries)
    uptime = parse_uptime(ctx.host_text("uptime"))[0]
    return render_stat(ctx.host_text("stat"), visible, usage, clk_tck=ctx.clk_tck, uptime=uptime)


@binding("diskstats")
def diskstats(ctx: RenderContext, file: VirtualFile, entries: Entries, pid: int) -> bytes:
    return render_diskstats(ctx.host_text("diskstats"), ctx.cgroups.io(entries))


@binding("loadavg")
def loadavg(ctx: RenderContext, file: VirtualFile, entries: Entries, pid: int) -> bytes:
    # The sampler advances every 5 s: a render kept for the usage period is exact.
    h, cg = ctx.cgroups.locate(entries, "cpu")
    if cg == "/":
        return ctx.host_bytes(file.path)
    return render_loadavg(ctx.sampler.observe(h.directory(cg), ctx.clock(), pid))


@binding("pressure")
def pressure(ctx: RenderContext, file: VirtualFile, entries: Entries, pid: int) -> bytes:
    resource = file.path.rsplit("/", 1)[1]
    assert file.controller is not None, f"{file.path}: the table names no controller"
    own = ctx.cgroups.pressure(entries, resource, file.controller)
    return render_pressure(ctx.host_text("pressure/" + resource), own)


@binding("cpus_online")
def cpus_online(ctx: RenderContext, file: VirtualFile, entries: Entries, pid: int) -> bytes:
    return render_online(ctx.visible(entries))


@binding("cpus_offline")
def cpus_offline(ctx: RenderContext, file: VirtualFile, entries: Entries, pid: int) -> bytes:
    possible = parse_cpu_list(read_text(ctx.sys_root + "/devices/system/cpu/possible"))
    return render_offline(possible, ctx.visible(entries))


@binding("cpu_online")
def cpu_online(ctx: RenderContext, file: VirtualFile, entries: Entries, pid: int) -> bytes:
    """``cpuN/online``: the tree binds one row per N, ``file.path`` names the CPU."""
    cpu = int(file.path.rsplit("/", 2)[1][3:])
    return render_cpu_online(cpu, ctx.visible(entries))


@binding("uptime")
def uptime(ctx: RenderContext, file: VirtualFile, pid: int) -> bytes:
    init = ctx.processes.namespace_init(pid)
    if init == 1:
        return ctx.host_bytes(file.path)
    now = parse_uptime(ctx.host_text("uptime"))[0]
    entries = ctx.processes.cgroups(init)
    usage = ctx.cgroups.cpu_usage(entries)
    cpus = len(ctx.visible(entries))
    return render_uptime(
        now,
        ctx.processes.starttime(init),
        ctx.clk_tck,
        None if usage is None else usage.total,
        cpus,
    )


def bound(name: str) -> Any:
    """The binding registered as ``name``; ``KeyError`` names the missing one."""
    try:
        return BINDINGS[name]
    except KeyError:
        raise KeyError(f"no binding named {name!r} in kube_lxcfs.table") from None
