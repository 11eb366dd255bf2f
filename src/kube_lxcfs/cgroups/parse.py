"""Pure parsers for the kernel files the cgroup layer reads: text in, typed values out.

No IO here.  Every parser raises :class:`ParseError` (with the offending text) on a
layout it does not know, and nothing else.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from kube_lxcfs.cgroups.errors import ParseError

V1_UNLIMITED_FLOOR = 1 << 62
"""v1 reports "no limit" as PAGE_COUNTER_MAX * PAGE_SIZE (9223372036854771712 on 4 KiB
pages, a little less on 64 KiB pages); anything this large is treated as unlimited."""


# --- /proc/<pid>/cgroup ------------------------------------------------------------------


class CgroupEntry(NamedTuple):
    """One line of /proc/<pid>/cgroup: ``hierarchy-id:controller-list:path``."""

    hierarchy_id: int
    controllers: tuple[str, ...]
    """Empty for the cgroup2 line (``0::/path``); ``name=systemd`` kept literally."""
    path: str


@functools.lru_cache(maxsize=4096)
def kernel_lines(text: str) -> list[str]:
    """The lines of a kernel file that carries names chosen by others: split at ``\n`` only.

    ``str.splitlines`` also splits at ``\r``, ``\v``, ``\f``, ``\x1c``-``\x1e``, U+0085 and
    U+2028, which a cgroup name (the kernel refuses only ``\n``), a comm or a mount path may
    contain: a process in a cgroup named ``x\r4:memory:/other`` would otherwise be read as a
    member of ``/other`` and be shown that cgroup's limits.
    """
    return text.split("\n")


def parse_proc_cgroup(text: str) -> tuple[CgroupEntry, ...]:
    """Parse /proc/<pid>/cgroup.  The path may contain ':' and starts with '/'.

    Memoized on the text: many readers share a few cgroups, and the result is immutable.
    """
    entries = []
    for line in kernel_lines(text):
        if not line:
            continue
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[0].isdigit() or not parts[2].startswith("/"):
            raise ParseError("/proc/<pid>/cgroup", line)
        controllers = tuple(c for c in parts[1].split(",") if c)
        entries.append(CgroupEntry(int(parts[0]), controllers, parts[2]))
    return tuple(entries)


# --- cpuset lists ------------------------------------------------------------------------


def parse_cpu_list(text: str) -> frozenset[int]:
    """Parse a kernel CPU list such as ``0-3,8,10-11`` (cpuset.cpus, online, possible).

    Empty text is the empty set.  Whitespace around the list is ignored.
    """
    text = text.strip()
    cpus: set[int] = set()
    if not text:
        return frozenset()
    for token in text.split(","):
        lo, dash, hi = token.partition("-")
        try:
            first = int(lo)
            last = int(hi) if dash else first
        except ValueError as exc:
            raise ParseError("cpu list", text) from exc
        if first < 0 or last < first or not lo.strip().isdigit():
            raise ParseError("cpu list", text)
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def format_cpu_list(cpus: frozenset[int] | set[int] | list[int] | tuple[int, ...]) -> str:
    """The kernel's compact form: ascending ranges joined by commas (``0-2,5``)."""
    ordered = sorted(cpus)
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


# --- flat "key value" files (memory.stat, cpu.stat, cpuacct.stat) ------------------------


def parse_flat_keyed(text: str, source: str = "flat keyed file") -> dict[str, int]:
    """Parse ``key value`` lines (memory.stat, cpu.stat, ...) into a dict of ints."""
    words = text.split()
    if len(words) == 2 * text.count("\n") + (not text.endswith("\n") and bool(words)):
        # the well-formed shape (one key and one value per line), parsed in C;
        # anything else, or a value that is not a number, takes the line walk below
        keys = words[::2]
        if not any(map(str.isdigit, keys)):  # a number in a key's place: misaligned
            try:
                return dict(zip(keys, map(int, words[1::2]), strict=True))
            except ValueError:
                pass
    values: dict[str, int] = {}
    for line in text.splitlines():
        if not line:
            continue
        key, _, value = line.partition(" ")
        try:
            values[key] = int(value)
        except ValueError as exc:
            raise ParseError(source, line) from exc
    return values


# --- single values -----------------------------------------------------------------------


def parse_int(text: str, source: str = "integer file") -> int:
    """A file that holds one integer (memory.usage_in_bytes, cpu.cfs_quota_us, ...)."""
    try:
        return int(text.strip())
    except ValueError as exc:
        raise ParseError(source, text) from exc


def parse_v1_limit(text: str, source: str = "v1 limit") -> int | None:
    """A v1 byte limit; the huge "no limit" sentinel becomes ``None``."""
    value = parse_int(text, source)
    if value < 0:
        raise ParseError(source, text, "negative limit")
    return None if value >= V1_UNLIMITED_FLOOR else value


def parse_v2_max(text: str, source: str = "v2 max") -> int | None:
    """A v2 ``memory.max``-style value: ``max`` is ``None``."""
    stripped = text.strip()
    if stripped == "max":
        return None
    value = parse_int(stripped, source)
    if value < 0:
        raise ParseError(source, text, "negative limit")
    return value


class CpuMax(NamedTuple):
    """cgroup v2 ``cpu.max``: quota (``None`` = no quota) and period, in µs."""

    quota: int | None
    period: int


def parse_cpu_max(text: str) -> CpuMax:
    """Parse ``cpu.max``: ``max 100000`` or ``50000 100000``."""
    parts = text.split()
    if len(parts) != 2:
        raise ParseError("cpu.max", text)
    try:
        period = int(parts[1])
        quota = None if parts[0] == "max" else int(parts[0])
    except ValueError as exc:
        raise ParseError("cpu.max", text) from exc
    if period <= 0 or (quota is not None and quota <= 0):
        raise ParseError("cpu.max", text, "non-positive quota or period")
    return CpuMax(quota, period)


# --- cpuacct (v1) ------------------------------------------------------------------------


class CpuTimes(NamedTuple):
    """Busy time of one CPU, in nanoseconds."""

    user: int
    system: int


def parse_cpuacct_usage_all(text: str) -> dict[int, CpuTimes]:
    """Parse ``cpuacct.usage_all``: header ``cpu user system``, then ``N user_ns sys_ns``."""
    lines = text.splitlines()
    if not lines or lines[0].split() != ["cpu", "user", "system"]:
        raise ParseError("cpuacct.usage_all", text[:100], "missing header")
    usage: dict[int, CpuTimes] = {}
    for line in lines[1:]:
        parts = line.split()
        if not parts:
            continue
        try:
            cpu, user, system = (int(p) for p in parts)
        except ValueError as exc:
            raise ParseError("cpuacct.usage_all", line) from exc
        usage[cpu] = CpuTimes(user, system)
    return usage


def parse_cpuacct_usage_percpu(text: str) -> tuple[int, ...]:
    """Parse ``cpuacct.usage_percpu``: space-separated nanoseconds, index = CPU id."""
    try:
        return tuple(int(p) for p in text.split())
    except ValueError as exc:
        raise ParseError("cpuacct.usage_percpu", text) from exc


# --- IO ----------------------------------------------------------------------------------


Device = tuple[int, int]
"""(major, minor)."""


class IoCounters(NamedTuple):
    """Per-device IO of a cgroup, as io.stat names it (bytes and operations)."""

    rbytes: int = 0
    wbytes: int = 0
    rios: int = 0
    wios: int = 0
    dbytes: int = 0
    dios: int = 0


def _parse_device(text: str, source: str, line: str) -> Device:
    major, colon, minor = text.partition(":")
    if not colon or not major.isdigit() or not minor.isdigit():
        raise ParseError(source, line, "bad device")
    return int(major), int(minor)


def parse_io_stat(text: str) -> dict[Device, IoCounters]:
    """Parse v2 ``io.stat``: ``8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=5 dios=6``."""
    result: dict[Device, IoCounters] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        device = _parse_device(parts[0], "io.stat", line)
        fields: dict[str, int] = {}
        for part in parts[1:]:
            key, eq, value = part.partition("=")
            if not eq:
                raise ParseError("io.stat", line)
            if key in IoCounters._fields:
                try:
                    fields[key] = int(value)
                except ValueError as exc:
                    raise ParseError("io.stat", line) from exc
        result[device] = IoCounters(**fields)
    return result


def parse_blkio_recursive(text: str, source: str = "blkio") -> dict[Device, dict[str, int]]:
    """Parse a v1 ``blkio.*_recursive`` file: ``8:0 Read 123`` lines and a ``Total N`` line."""
    result: dict[Device, dict[str, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts or (len(parts) == 2 and parts[0] == "Total"):
            continue
        if len(parts) != 3:
            raise ParseError(source, line)
        device = _parse_device(parts[0], source, line)
        try:
            result.setdefault(device, {})[parts[1]] = int(parts[2])
        except ValueError as exc:
            raise ParseError(source, line) from exc
    return result


# --- pressure ----------------------------------------------------------------------------


class PressureLine(NamedTuple):
    """One line of a PSI file (``some`` or ``full``)."""

    avg10: float
    avg60: float
    avg300: float
    total: int


def parse_pressure(text: str) -> dict[str, PressureLine]:
    """Parse a PSI file (``some avg10=0.00 avg60=0.00 avg300=0.00 total=0``)."""
    result: dict[str, PressureLine] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        try:
            kv = dict(p.split("=", 1) for p in parts[1:])
            result[parts[0]] = PressureLine(
                float(kv["avg10"]), float(kv["avg60"]), float(kv["avg300"]), int(kv["total"])
            )
        except (ValueError, KeyError) as exc:
            raise ParseError("pressure", line) from exc
    if "some" not in result:
        raise ParseError("pressure", text, "no 'some' line")
    return result


# --- /proc/<pid>/status and /proc/<pid>/stat ---------------------------------------------


class PidStatus(NamedTuple):
    """What /proc/<pid>/status tells about pid namespaces."""

    ppid: int
    nspid: tuple[int, ...]
    """The pid in each nested pid namespace, outermost (our view) first."""


def parse_pid_status(text: str) -> PidStatus:
    """Extract PPid and NSpid from /proc/<pid>/status."""
    ppid: int | None = None
    nspid: tuple[int, ...] = ()
    for line in kernel_lines(text):  # the Name: line holds the process's own comm
        if line.startswith("PPid:"):
            ppid = parse_int(line[5:], "status PPid")
        elif line.startswith("NSpid:"):
            try:
                nspid = tuple(int(p) for p in line[6:].split())
            except ValueError as exc:
                raise ParseError("status NSpid", line) from exc
    if ppid is None or not nspid:
        raise ParseError("/proc/<pid>/status", text[:200], "no PPid/NSpid")
    return PidStatus(ppid, nspid)


def parse_pid_stat_starttime(text: str) -> int:
    """Field 22 of /proc/<pid>/stat: start time after boot, in clock ticks.

    The command name (field 2) may contain spaces and parentheses, so fields are
    counted from the last ')'.
    """
    close = text.rfind(")")
    fields = text[close + 2 :].split()
    try:
        return int(fields[19])
    except (ValueError, IndexError) as exc:
        raise ParseError("/proc/<pid>/stat", text) from exc


def parse_pid_stat_state(text: str) -> str:
    """Field 3 of /proc/<pid>/stat: the one-letter task state."""
    close = text.rfind(")")
    if close < 0 or len(text) < close + 3:
        raise ParseError("/proc/<pid>/stat", text)
    return text[close + 2]


# --- host /proc files the renderers share --------------------------------------------------


def parse_meminfo_kb(text: str, keys: frozenset[str] | None = None) -> dict[str, int]:
    """The numeric values of /proc/meminfo by key (kB, or a count for HugePages_*).

    With ``keys``, only those are converted (a renderer needs five of ~55 lines).
    """
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, colon, rest = line.partition(":")
        if not colon or (keys is not None and key not in keys):
            continue
        parts = rest.split()
        if parts:
            try:
                values[key] = int(parts[0])
            except ValueError as exc:
                raise ParseError("/proc/meminfo", line) from exc
    if "MemTotal" not in values:
        raise ParseError("/proc/meminfo", text[:200], "no MemTotal")
    return values


def parse_uptime(text: str) -> tuple[float, float]:
    """/proc/uptime: seconds since boot and summed idle seconds."""
    parts = text.split()
    try:
        return float(parts[0]), float(parts[1])
    except (ValueError, IndexError) as exc:
        raise ParseError("/proc/uptime", text) from exc
