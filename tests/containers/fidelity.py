"""The fidelity matrix: what real programs report inside a limited container.

Each :class:`Row` runs one program inside the container and turns its output into the value
the table shows.  The value is deterministic on a correct system (host-dependent numbers are
shown as what they are, e.g. "host RAM"), so the table generated from a run can be checked for
drift.  The judging is done against numbers computed here from the limits and the host, never
from the code under test.

Measured values are kept per column (one JSON file per environment under ``measured/``:
``cgroup-v1`` from the runc tests here, ``cgroup-v2`` from the VM tier) and
docs/what-programs-see.md is rendered from all of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
LIMIT_MEMORY = 256 * MiB
LIMIT_CPU_QUOTA_US = 50_000
LIMIT_CPU_PERIOD_US = 100_000
VISIBLE_CPUS = math.ceil(LIMIT_CPU_QUOTA_US / LIMIT_CPU_PERIOD_US)
"""Our rounding: ceil(quota/period), capped by the cpuset and the host's CPUs."""

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "what-programs-see.md"
MEASURED = Path(__file__).resolve().parent / "measured"
COLUMNS = {
    "cgroup-v1": "kube-lxcfs, cgroup v1 (runc)",
    "cgroup-v2": "kube-lxcfs, cgroup v2 (VM)",
    "runtime-cgroup-v1": "kube-lxcfs + `kube-lxcfs-runc` (files and sysinfo(2)), cgroup v1 (runc)",
    "lxcfs-cgroup-v1": "lxcfs 5.0.3 `-l --enable-cfs`, cgroup v1 (for comparison)",
}
"""Known columns, in table order: file stem → heading."""

ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>])")


@dataclass(frozen=True)
class Host:
    """Facts of the machine outside the container that bypassing programs report."""

    cpus: int
    memtotal_kb: int
    uptime_s: float
    cpu_cores: str
    """``cpu cores`` of the host's /proc/cpuinfo."""


@dataclass(frozen=True)
class Verdict:
    """What the table shows for one row, and whether it is what we expect."""

    shown: str
    ok: bool
    detail: str = ""


Judge = Callable[[str, Host], Verdict]


@dataclass(frozen=True)
class Row:
    """One program and one number it reports."""

    key: str
    program: str
    call: str
    reads: str
    command: tuple[str, ...]
    judge: Judge
    container: str = "main"
    """``main``: the limits above; ``cpuset``: the same plus cpuset 0."""


@dataclass(frozen=True)
class Unmeasured:
    """A consumer we do not run here, with the reason and what it computes."""

    program: str
    call: str
    reads: str
    note: str


def _equals(expected: str, shown: str | None = None) -> Callable[[str], Verdict]:
    def verdict(value: str) -> Verdict:
        return Verdict(shown or value, value == expected, f"expected {expected!r}, got {value!r}")

    return verdict


def _field(pattern: str, text: str) -> str:
    match = re.search(pattern, text, re.MULTILINE)
    return match.group(1) if match else f"<no match for {pattern!r}>"


def exact(pattern: str, expected: str) -> Judge:
    """The first group of ``pattern`` must be ``expected``."""
    return lambda out, host: _equals(expected)(_field(pattern, out))


def host_cpus(pattern: str, shown: str) -> Judge:
    """The first group of ``pattern`` must be the host's CPU count (a /proc bypass)."""
    return lambda out, host: _equals(str(host.cpus), shown)(_field(pattern, out))


def _free_memory(out: str, host: Host) -> Verdict:
    value = int(out.strip()) if out.strip().isdigit() else -1
    ok = 0 < value <= LIMIT_MEMORY
    return Verdict(f"≤ {LIMIT_MEMORY} (MemAvailable of the cgroup)", ok, f"got {value}")


def _busybox_free(out: str, host: Host) -> Verdict:
    total = _field(r"^Mem:\s+(\d+)", out)
    return Verdict(
        "host RAM (sysinfo(2) totalram)", total == str(host.memtotal_kb), f"got {total} kB"
    )


def _phys_pages(out: str, host: Host) -> Verdict:
    pages, page_size = (int(x) for x in out.split())
    ok = pages * page_size // 1024 == host.memtotal_kb
    return Verdict("host RAM (sysinfo(2))", ok, f"got {pages} pages of {page_size}")


def _busybox_free_virtual(out: str, host: Host) -> Verdict:
    total = _field(r"^Mem:\s+(\d+)", out)
    expected = str(LIMIT_MEMORY // 1024)
    return Verdict(
        f"{expected} (sysinfo(2) answered from the cgroup)", total == expected, f"got {total} kB"
    )


def _phys_pages_virtual(out: str, host: Host) -> Verdict:
    pages, page_size = (int(x) for x in out.split())
    ok = pages * page_size == LIMIT_MEMORY
    return Verdict(
        f"{LIMIT_MEMORY} (sysinfo(2) answered from the cgroup)",
        ok,
        f"got {pages} pages of {page_size}",
    )


def uptime_minutes(text: str) -> int:
    """Minutes in busybox's ``up 2 days, 1:05`` / ``up 16 min`` / ``up 1 day, 5 min``."""
    days = re.search(r"(\d+) days?", text)
    clock = re.search(r"(\d+):(\d+)", text)
    minutes = re.search(r"(\d+) min", text)
    total = int(days.group(1)) * 1440 if days else 0
    if clock:
        total += int(clock.group(1)) * 60 + int(clock.group(2))
    elif minutes:
        total += int(minutes.group(1))
    elif not days:
        raise ValueError(f"no uptime in {text!r}")
    return total


def _busybox_uptime(out: str, host: Host) -> Verdict:
    shown = _field(r"up\s+(.+?),\s+(?:load|\d+ users?)", out)
    # Whatever the host's uptime, busybox must report it (give or take the minute boundary).
    ok = abs(uptime_minutes(shown) - int(host.uptime_s // 60)) <= 1
    return Verdict("host's uptime (sysinfo(2))", ok, f"got 'up {shown}', host {host.uptime_s}s")


def _busybox_uptime_virtual(out: str, host: Host) -> Verdict:
    shown = _field(r"up\s+(.+?),\s+(?:load|\d+ users?)", out)
    return Verdict(
        "up 0 min (the container's age)", uptime_minutes(shown) == 0, f"got 'up {shown}'"
    )


SYSINFO_JUDGES: Mapping[str, Judge] = {
    "getconf-phys-pages": _phys_pages_virtual,
    "busybox-free": _busybox_free_virtual,
    "busybox-uptime": _busybox_uptime_virtual,
}
"""With the runtime wrapper, sysinfo(2) is answered from the cgroup: these rows change."""


def _load_below_one(pattern: str) -> Judge:
    def judge(out: str, host: Host) -> Verdict:
        value = _field(pattern, out)
        try:
            ok = float(value) < 1.0
        except ValueError:
            ok = False
        return Verdict("< 1.00 (the idle container's own load)", ok, f"got {value}")

    return judge


def _htop_cpus(out: str, host: Host) -> Verdict:
    screen = ANSI.sub("", out)
    meters = re.findall(r"(?:CPU|\b\d+)\[([^\]]*)\]", screen)  # "CPU[" or "0[", "1[", ...
    active = [m for m in meters if "offline" not in m]
    offline = len(meters) - len(active)
    ok = len(active) == VISIBLE_CPUS and len(meters) == host.cpus
    if len(active) == host.cpus != VISIBLE_CPUS:
        shown = "a meter for every host CPU"
    else:
        shown = f"{len(active)} CPU meter{'s' if len(active) != 1 else ''}"
    if offline:
        shown += "; the other host CPUs shown 'offline'"
    return Verdict(shown, ok, f"meters {meters!r}")


def _cpuinfo_cores(out: str, host: Host) -> Verdict:
    values = sorted(set(re.findall(r"^cpu cores\s*:\s*(\d+)", out, re.M)))
    if values == [str(VISIBLE_CPUS)]:
        return Verdict(str(VISIBLE_CPUS), True)
    shown = "the host CPU's" if values == [host.cpu_cores] else ", ".join(values)
    return Verdict(shown, False, f"got {values}, want [{VISIBLE_CPUS!r}]")


def _htop_memory(out: str, host: Host) -> Verdict:
    value = _field(r"Mem\[[^\]]*?/([0-9.]+[KMG])\]", ANSI.sub("", out))
    return _equals("256M")(value)


PY = ("python3", "-c")
NODE = ("node", "-e")
# htop needs a few screen updates; under emulation (the cgroup v2 VM) everything is slower.
HTOP_SECONDS = 2 * float(os.environ.get("KUBE_LXCFS_TEST_SLOWDOWN", "1"))
HTOP = (
    "sh",
    "-c",
    f"TERM=xterm COLUMNS=100 LINES=24 timeout -s INT {HTOP_SECONDS:g} "
    "script -qfec 'htop -d 100' /dev/null | head -c 4000",
)

ROWS: tuple[Row, ...] = (
    Row(
        "free-total",
        "procps `free`",
        "`free -b`: Mem total",
        "/proc/meminfo",
        ("free", "-b"),
        exact(r"^Mem:\s+(\d+)", str(LIMIT_MEMORY)),
    ),
    Row(
        "free-swap",
        "procps `free`",
        "`free -b`: Swap total",
        "/proc/meminfo",
        ("free", "-b"),
        exact(r"^Swap:\s+(\d+)", "0"),
    ),
    Row(
        "top-memory",
        "procps `top`",
        "`top -bn1`: MiB Mem total",
        "/proc/meminfo",
        ("top", "-bn1"),
        exact(r"^MiB Mem :\s+([0-9.]+) total", "256.0"),
    ),
    Row(
        "top-cpus",
        "procps `top`",
        "`top -1 -bn1`: per-CPU lines",
        "/proc/stat cpuN lines",
        ("sh", "-c", "top -1 -bn1 | grep -c '^%Cpu[0-9]'"),
        exact(r"^(\d+)$", str(VISIBLE_CPUS)),
    ),
    Row(
        "top-uptime",
        "procps `top`",
        "`top -bn1`: up",
        "/proc/uptime",
        ("top", "-bn1"),
        exact(r"^top - \S+ (up [^,]+),", "up 0 min"),
    ),
    Row(
        "vmstat-memory",
        "procps `vmstat`",
        "`vmstat -s`: total memory",
        "/proc/meminfo",
        ("vmstat", "-s"),
        exact(r"^\s*(\d+ K) total memory", f"{LIMIT_MEMORY // 1024} K"),
    ),
    Row(
        "uptime-load",
        "procps `uptime`",
        "`uptime`: 1-min load average",
        "/proc/loadavg",
        ("uptime",),
        _load_below_one(r"load average: ([0-9.]+)"),
    ),
    Row(
        "uptime-up",
        "procps `uptime`",
        "`uptime`: up",
        "/proc/uptime",
        ("uptime",),
        exact(r"(up [^,]+),", "up 0 min"),
    ),
    Row(
        "cpuinfo-processors",
        "/proc/cpuinfo",
        "`grep -c ^processor`",
        "/proc/cpuinfo",
        ("grep", "-c", "^processor", "/proc/cpuinfo"),
        exact(r"^(\d+)$", str(VISIBLE_CPUS)),
    ),
    Row(
        "cpuinfo-cores",
        "/proc/cpuinfo",
        "`grep 'cpu cores'`",
        "/proc/cpuinfo",
        ("grep", "cpu cores", "/proc/cpuinfo"),
        _cpuinfo_cores,
    ),
    Row(
        "lscpu-online",
        "util-linux `lscpu`",
        "On-line CPU(s) list",
        "/sys/devices/system/cpu/online",
        ("lscpu",),
        exact(r"^On-line CPU\(s\) list:\s+(\S+)$", "0"),
    ),
    Row(
        "htop-cpus",
        "`htop`",
        "CPU meters (run on a pty)",
        "cpuN dirs + cpuN/online in /sys/devices/system/cpu",
        HTOP,
        _htop_cpus,
    ),
    Row(
        "htop-memory",
        "`htop`",
        "Mem meter total",
        "/proc/meminfo",
        HTOP,
        _htop_memory,
    ),
    Row(
        "nproc",
        "coreutils `nproc`",
        "`nproc`",
        "sched_getaffinity(2), not /proc",
        ("nproc",),
        host_cpus(r"^(\d+)$", "all host CPUs (affinity: a quota does not narrow it)"),
    ),
    Row(
        "nproc-cpuset",
        "coreutils `nproc`",
        "`nproc` with cpuset 0",
        "sched_getaffinity(2) = the cpuset",
        ("nproc",),
        exact(r"^(\d+)$", "1"),
        container="cpuset",
    ),
    Row(
        "getconf-onln",
        "glibc",
        "`getconf _NPROCESSORS_ONLN`",
        "/sys/devices/system/cpu/online",
        ("getconf", "_NPROCESSORS_ONLN"),
        exact(r"^(\d+)$", str(VISIBLE_CPUS)),
    ),
    Row(
        "getconf-conf",
        "glibc",
        "`getconf _NPROCESSORS_CONF`",
        "cpuN dirs in /sys/devices/system/cpu",
        ("getconf", "_NPROCESSORS_CONF"),
        host_cpus(r"^(\d+)$", "all host CPUs (cpuN dirs are the host's)"),
    ),
    Row(
        "getconf-phys-pages",
        "glibc",
        "`getconf _PHYS_PAGES` × PAGESIZE",
        "sysinfo(2), not /proc",
        ("sh", "-c", "echo $(getconf _PHYS_PAGES) $(getconf PAGESIZE)"),
        _phys_pages,
    ),
    Row(
        "python-cpu-count",
        "Python 3",
        "`os.cpu_count()`",
        "sysconf(_SC_NPROCESSORS_ONLN) → /sys/devices/system/cpu/online",
        (*PY, "import os; print(os.cpu_count())"),
        exact(r"^(\d+)$", str(VISIBLE_CPUS)),
    ),
    Row(
        "psutil-total",
        "psutil",
        "`psutil.virtual_memory().total`",
        "/proc/meminfo",
        (*PY, "import psutil; print(psutil.virtual_memory().total)"),
        exact(r"^(\d+)$", str(LIMIT_MEMORY)),
    ),
    Row(
        "psutil-cpu-count",
        "psutil",
        "`psutil.cpu_count()`",
        "os.cpu_count()",
        (*PY, "import psutil; print(psutil.cpu_count())"),
        exact(r"^(\d+)$", str(VISIBLE_CPUS)),
    ),
    Row(
        "node-cpus",
        "Node.js",
        "`os.cpus().length`",
        "/proc/stat cpuN lines + /proc/cpuinfo",
        (*NODE, "console.log(require('os').cpus().length)"),
        exact(r"^(\d+)$", str(VISIBLE_CPUS)),
    ),
    Row(
        "node-totalmem",
        "Node.js",
        "`os.totalmem()`",
        "/proc/meminfo MemTotal",
        (*NODE, "console.log(require('os').totalmem())"),
        exact(r"^(\d+)$", str(LIMIT_MEMORY)),
    ),
    Row(
        "node-freemem",
        "Node.js",
        "`os.freemem()`",
        "/proc/meminfo MemAvailable",
        (*NODE, "console.log(require('os').freemem())"),
        _free_memory,
    ),
    Row(
        "node-parallelism",
        "Node.js 18 (libuv 1.44)",
        "`os.availableParallelism()`",
        "sched_getaffinity(2), not /proc",
        (*NODE, "console.log(require('os').availableParallelism())"),
        host_cpus(r"^(\d+)$", "all host CPUs (affinity)"),
    ),
    Row(
        "busybox-top-memory",
        "busybox `top`",
        "`top -bn1`: Mem used + free",
        "/proc/meminfo",
        ("sh", "-c", "busybox top -bn1 | awk '/^Mem:/ {print $2 + $4 \"K\"}'"),
        exact(r"^(\d+K)$", f"{LIMIT_MEMORY // 1024}K"),
    ),
    Row(
        "busybox-top-load",
        "busybox `top`",
        "`top -bn1`: Load average",
        "/proc/loadavg",
        ("sh", "-c", "busybox top -bn1 | grep '^Load average'"),
        _load_below_one(r"^Load average: ([0-9.]+)"),
    ),
    Row(
        "busybox-free",
        "busybox `free`",
        "`free`: Mem total",
        "sysinfo(2), not /proc",
        ("busybox", "free"),
        _busybox_free,
    ),
    Row(
        "busybox-uptime",
        "busybox `uptime`",
        "`uptime`: up",
        "sysinfo(2), not /proc",
        ("busybox", "uptime"),
        _busybox_uptime,
    ),
)

UNMEASURED: tuple[Unmeasured, ...] = (
    Unmeasured(
        "musl libc (Alpine)",
        "`sysconf(_SC_NPROCESSORS_ONLN)`, `_SC_PHYS_PAGES`",
        "sched_getaffinity(2), sysinfo(2)",
        "no /proc at all: the affinity and the host's RAM; a FUSE file cannot change that",
    ),
    Unmeasured(
        "JVM (HotSpot ≥ 17)",
        "`Runtime.availableProcessors()`, max heap",
        "cgroup files directly",
        f"ceil(quota/period) = {VISIBLE_CPUS}, like our files; heap from the cgroup limit",
    ),
    Unmeasured(
        ".NET",
        "`Environment.ProcessorCount`, GC heap limit",
        "cgroup files directly",
        f"ceil(quota/period) = {VISIBLE_CPUS}, like our files; heap from the cgroup limit",
    ),
    Unmeasured(
        "Go ≥ 1.25",
        "default `GOMAXPROCS`",
        "cgroup CPU limit directly; `runtime.NumCPU()` = affinity",
        "follows the cgroup, not /proc; NumCPU is the affinity (all host CPUs here)",
    ),
)


def host_facts() -> Host:
    """The facts of this machine (read outside any container)."""
    meminfo = Path("/proc/meminfo").read_text()
    memtotal_kb = int(meminfo.split("MemTotal:")[1].split()[0])
    uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    cores = re.search(r"^cpu cores\s*:\s*(\d+)", Path("/proc/cpuinfo").read_text(), re.M)
    return Host(
        cpus=os.cpu_count() or 1,
        memtotal_kb=memtotal_kb,
        uptime_s=uptime_s,
        cpu_cores=cores.group(1) if cores else "",
    )


def measure_all(
    rootfs: Path,
    mount_dir: Path | None,
    *,
    session: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
    virtual_sysinfo: bool = False,
) -> dict[str, tuple[Verdict, str]]:
    """Run every row in fresh runc containers with the matrix limits; key → (verdict, output).

    Each distinct command runs once per container; containers are removed afterwards.
    ``session`` makes the runc to use (the runtime wrapper's, which adds the files
    itself: then ``mount_dir`` is None); ``virtual_sysinfo`` judges the sysinfo(2) rows
    against the limits instead of the host.
    """
    from runc_harness import Resources, runc_session

    session = session or runc_session
    limits = {
        "memory": LIMIT_MEMORY,
        "memory_swap": LIMIT_MEMORY,
        "cpu_quota": LIMIT_CPU_QUOTA_US,
        "cpu_period": LIMIT_CPU_PERIOD_US,
    }
    with session() as runc:
        containers = {
            "main": runc.start(rootfs, resources=Resources(**limits), mount_dir=mount_dir),
            "cpuset": runc.start(
                rootfs, resources=Resources(cpuset="0", **limits), mount_dir=mount_dir
            ),
        }
        outputs: dict[tuple[str, tuple[str, ...]], str] = {}
        results = {}
        for row in ROWS:
            if (row.container, row.command) not in outputs:
                proc = containers[row.container].exec(row.command, check=False)
                outputs[row.container, row.command] = (
                    proc.stdout
                    if proc.returncode == 0
                    else f"exit {proc.returncode}: {proc.stderr}"
                )
            # read right after the program ran: the rows take minutes under emulation (VM tier)
            host = host_facts()
            output = outputs[row.container, row.command]
            judged = row
            if virtual_sysinfo and row.key in SYSINFO_JUDGES:
                judged = dataclasses.replace(row, judge=SYSINFO_JUDGES[row.key])
            results[row.key] = (measure_row(judged, output, host), output)
    return results


def measure_row(row: Row, output: str, host: Host) -> Verdict:
    """Judge one program's output."""
    try:
        return row.judge(output, host)
    except (ValueError, IndexError) as exc:
        return Verdict(f"<unparsable: {exc}>", False, output[:200])


def load_columns(directory: Path = MEASURED) -> dict[str, dict[str, str]]:
    """Every recorded column: stem → {row key → shown value}."""
    return {
        path.stem: json.loads(path.read_text())
        for path in sorted(directory.glob("*.json"))
        if path.stem in COLUMNS
    }


CHANGING_LIMITS = (
    "## Limits that change while a program runs",
    "",
    "Kubernetes resizes pods in place (`kubectl patch pod P --subresource resize`), and",
    "`docker update` does the same to a container: the cgroup's limits change under a running",
    "process. Every kube-lxcfs file is rendered from the cgroup when it is read (limits kept",
    "at most 0.5 s, docs/performance.md), so the next read shows the new figures; what a",
    "program then reports depends on whether it reads again. Measured under `kube-lxcfs run",
    "--memory 512Mi --cpus 1 --keep-affinity`, then the cgroup set to 1Gi / 2 CPUs while the",
    "program ran (cgroup v1, a 2-CPU machine; `tests/containers/limit_change.py`). On cgroup",
    "v2, `memory.max` and `cpu.max` changes are tested the same way in the VM tier",
    "(`test_memory_max_and_cpu_max_changed_in_place_are_seen`).",
    "",
    "| Program | Call | After the change |",
    "|---|---|---|",
    "| /proc readers (`free`, `top`, `cat`) | MemTotal, `grep -c ^processor /proc/cpuinfo`,"
    " /sys/devices/system/cpu/online | the new figures within 0.6 s, up and down"
    " (`test_a_limit_changed_in_place_is_seen_at_once`, every run: 450-570 ms measured) |",
    "| Python 3.11 | `os.cpu_count()` | sysconf reads /sys/devices/system/cpu/online on every"
    " call: the new count with the files (same test) |",
    "| psutil 5.9.4 | `cpu_count()`, `virtual_memory().total` | re-read on every call: 2 and"
    " 1 GiB within 0.4 s (measured by hand) |",
    "| Node.js 20.20 | `os.cpus().length`, `os.totalmem()` | re-read on every call: 2 and 1 GiB"
    " within 0.44 s; `os.availableParallelism()` is the affinity and stays (measured by hand) |",
    "| OpenJDK 17.0.15 | `Runtime.availableProcessors()`, OperatingSystemMXBean"
    " `getTotalMemorySize()` | re-read from the cgroup itself: 2 and 1 GiB at once (measured"
    " by hand) |",
    "| OpenJDK 17.0.15 | `Runtime.maxMemory()` (the heap's maximum) | fixed at start (about a"
    " quarter of the 512 MiB limit: 129761280): a bigger heap needs a restart (measured by hand) |",
    "| Go ≥ 1.25 | default `GOMAXPROCS` | Go 1.25's release notes: the runtime periodically updates"
    " it when the cgroup CPU limit or the CPU count changes (reads the cgroup, not /proc);"
    " not observable here: Go 1.26 chose 2 under a 1-CPU limit on this 2-CPU machine |",
    "| nginx | `worker_processes auto` | counted once when the master starts"
    " (`ngx_os_init`, src/os/unix/ngx_posix_init.c, sets `ngx_ncpu` only while it is 0):"
    " a reload keeps the old count, a restart picks up the new one (source, not measured) |",
    "",
    "On a real node (`tests/node`: kubelet 1.33, containerd 1.6, cgroup v1, two CPUs),",
    "`kubectl patch pod P --subresource resize` of a pod with `resizePolicy` NotRequired from",
    "cpu 1 / 1Gi to cpu 2 / 2Gi, then to cpu 1, is seen inside the pod — MemTotal, the",
    "`processor` count, /sys/devices/system/cpu/online and `getconf _NPROCESSORS_ONLN`, and in",
    "RuntimeClass mode busybox `free` (sysinfo(2)) too — by a reader polling five times a second",
    "and by `kubectl exec`, within 1 s of the kubelet reporting the resize done (asserted; the",
    "kubelet writes the cgroup first, so the reader often had the new figures before the status",
    "said so: -1.1 to +0.3 s measured over three runs, `kubectl exec` 0.2-0.6 s). `nproc`"
    " stays the node's 2 (the",
    "affinity). Kubernetes 1.33 refuses to lower a memory limit in place with NotRequired",
    "(`memory limits cannot be decreased unless resizePolicy is RestartContainer`; 1.34 allows",
    "it): the memory decrease is covered by `kube-lxcfs run`'s test above. Found on the way:",
    "cpuinfo and the cpu online files kept their render 0.5 s on top of the limits' own 0.5 s,",
    "so a changed CPU count took up to 1 s to show; their render is now kept 0.1 s",
    "(`test_a_cpu_limit_change_shows_in_cpuinfo_within_the_documented_600_ms`).",
    "",
    "Not changed by a resize: the affinity mask (`nproc`, `os.process_cpu_count()`, Node's",
    "`os.availableParallelism()`), which `kube-lxcfs run --cpus` narrows once at start, and",
    "anything a program sized at start from the figures it read then: thread and worker pools",
    "(`make -j\"$(nproc)\"`, Python's `multiprocessing.Pool()`, nginx), heaps (the JVM's",
    "above), caches.",
    "Restart those, or size them from a fixed setting, when a resize should reach them.",
    "",
)
"""The section on in-place limit changes: measured values, stated with how they were measured."""


def render(columns: Mapping[str, Mapping[str, str]]) -> str:
    """docs/what-programs-see.md from the recorded columns."""
    stems = [stem for stem in COLUMNS if stem in columns]
    head = "| Program | Call | Reads | " + " | ".join(COLUMNS[s] for s in stems) + " |"
    rule = "|---|---|---|" + "---|" * len(stems)
    lines = [
        "# What programs see",
        "",
        "<!-- GENERATED by tests/containers/test_fidelity.py from the measured values in",
        "     tests/containers/measured/*.json; do not edit. Regenerate with",
        "     KUBE_LXCFS_UPDATE_DOCS=1 python -m pytest tests/containers/test_fidelity.py -->",
        "",
        f"Inside a container limited to **memory {LIMIT_MEMORY // MiB}Mi** (memory+swap the same)",
        f"and a **CPU quota of {LIMIT_CPU_QUOTA_US / LIMIT_CPU_PERIOD_US:g} CPU**"
        f" ({LIMIT_CPU_QUOTA_US}/{LIMIT_CPU_PERIOD_US} µs), no cpuset, with the",
        "kube-lxcfs files bound over /proc and /sys/devices/system/cpu exactly as the webhook",
        "injects them, each program below was run and its answer judged by the test; every value",
        "in the table is the measured one (host-dependent answers are named, not numbered).",
        "The `kube-lxcfs-runc` column is the same run with the OCI runtime wrapper as runc",
        "(the RuntimeClass mode, docs/runtime.md): it adds the same files and answers sysinfo(2)",
        "from the cgroup, so the sysinfo rows show the limits there.",
        "The lxcfs column is the same run with Debian's lxcfs serving the files, recorded for",
        "comparison.",
        "",
        head,
        rule,
    ]
    for row in ROWS:
        cells = [columns[s].get(row.key, "not measured") for s in stems]
        lines.append(f"| {row.program} | {row.call} | {row.reads} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Programs that bypass /proc",
        "",
        "No FUSE file can change what these report; they are listed so nobody expects it.",
        "",
        "| Program | Call | Reads | What it reports |",
        "|---|---|---|---|",
    ]
    lines += [f"| {u.program} | {u.call} | {u.reads} | {u.note} |" for u in UNMEASURED]
    lines += [
        "",
        "Measured above: `nproc`, Node's `os.availableParallelism()` (libuv < 1.49) and glibc's",
        "`_SC_NPROCESSORS_CONF` follow the affinity mask or the host's cpuN directories; busybox",
        "`free`/`uptime` and glibc's `_SC_PHYS_PAGES` use sysinfo(2), which only the runtime",
        "wrapper (RuntimeClass mode) virtualizes. Give a cpuset (pods of the",
        "static CPU manager, `kube-lxcfs run --cpuset`) and the affinity agrees; `kube-lxcfs run",
        "--cpus` narrows the affinity itself.",
        "",
        "## Rounding of fractional quotas",
        "",
        "The visible CPU count is **ceil(quota / period)**, capped at the cpuset and at the host's",
        "online CPUs: 0.5 CPU shows 1, 1.5 CPUs show 2. Using up a quota of 1.5 CPUs takes two",
        "threads running at once, and rounding down would show 0 CPUs for quotas below one. It",
        "is lxcfs's rule and what the cgroup-reading runtimes compute: the JVM and .NET round up",
        "too, so a JVM or .NET process and /proc agree. libuv ≥ 1.49",
        "(`os.availableParallelism()`) and MySQL ≥ 9.3 round down; they read the cgroup",
        "themselves, so /proc cannot change them either way.",
        "",
        *CHANGING_LIMITS,
    ]
    return "\n".join(lines)
