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

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024
LIMIT_MEMORY = 256 * MiB
LIMIT_CPU_QUOTA_US = 50_000
LIMIT_CPU_PERIOD_US = 100_000
VISIBLE_CPUS = math.ceil(LIMIT_CPU_QUOTA_US / LIMIT_CPU_PERIOD_US)
"""Our rounding: ceil(quota/period), capped by the cpuset and the host's CPUs."""

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "what-programs-see.md"
MEASURED = Path(__file__).resolve().parent / "measured"
COLUMNS = {"cgroup-v1": "cgroup v1 (runc)", "cgroup-v2": "cgroup v2 (VM)"}
"""Known columns, in table order: file stem → heading."""

ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>])")


@dataclass(frozen=True)
class Host:
    """Facts of the machine outside the container that bypassing programs report."""

    cpus: int
    memtotal_kb: int
    uptime_s: float


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


def _busybox_uptime(out: str, host: Host) -> Verdict:
    shown = _field(r"up\s+(.+?),\s+\d+ users?", out)
    # The container is seconds old; the host has been up for minutes.
    ok = host.uptime_s >= 120 and shown != "0 min"
    return Verdict("host's uptime (sysinfo(2))", ok, f"got 'up {shown}'")


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
    meters = re.findall(r"CPU\[([^\]]*)\]", screen)
    active = [m for m in meters if "offline" not in m]
    offline = len(meters) - len(active)
    ok = len(active) == VISIBLE_CPUS and len(meters) == host.cpus
    return (
        Verdict(
            f"{len(active)} CPU meter; the other host CPUs shown 'offline'",
            ok,
            f"meters {meters!r}",
        )
        if offline
        else Verdict(f"{len(active)} CPU meter", ok, f"meters {meters!r}")
    )


def _htop_memory(out: str, host: Host) -> Verdict:
    value = _field(r"Mem\[[^\]]*?/([0-9.]+[KMG])\]", ANSI.sub("", out))
    return _equals("256M")(value)


PY = ("python3", "-c")
NODE = ("node", "-e")
HTOP = (
    "sh",
    "-c",
    "TERM=xterm COLUMNS=100 LINES=24 timeout -s INT 2 script -qfec 'htop -d 100' /dev/null"
    " | head -c 4000",
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
        "`free`/`uptime` and glibc's `_SC_PHYS_PAGES` use sysinfo(2). Give a cpuset (pods of the",
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
    ]
    return "\n".join(lines)
