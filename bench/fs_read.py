"""Read throughput and latency of the virtual files: raw /proc vs lxcfs vs kube-lxcfs.

Every row is measured in this one run, on the same cgroups, with the same C
reader (bench/reader.c: open + read to EOF + close, timed per round), so the
ratio column compares like with like.  Modes:

* pinned: daemon threads and readers all on CPU 0, so reads/s is the inverse of
  the total cost per read (daemon + kernel + reader);
* unpinned: everything may run anywhere; latency is then dominated by
  cross-CPU wake-ups, for every daemon.

Usage (as root)::

    python bench/fs_read.py            # full run, for docs/performance.md
    python bench/fs_read.py --quick    # a few seconds: CI smoke
    python bench/fs_read.py --json out.json

Bind-mounted rows read /proc/meminfo the way a container does: the daemon's file
bind-mounted over /proc/meminfo in the reader's own mount namespace, so the kernel
walks one FUSE path component (the file) instead of three from the mount point.

Scale rows move one reader through 1, 100 and 500 distinct cgroups (it joins the
next cgroup every few reads; the move itself is not timed) and then repeat the
1-cgroup row on the daemon that has seen them all.  "kube-lxcfs (no render
cache)" is our daemon with ``KUBE_LXCFS_CACHE=off``: every read renders afresh,
the cost of a render-cache miss.  The stall rows make one cgroup's cgroup reads take 50 ms
inside kube-lxcfs (fault injection through ``KUBE_LXCFS_FAULT_STALL``, see
kube_lxcfs.cgroups.reader): four unpinned meminfo readers, one of them in the
stalled cgroup; the rows show the three others' latency, next to the same layout
without a stall, and on the uncached daemon (no slow-cgroup isolation).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))

from kube_lxcfs.cgroups.transient import (  # noqa: E402
    Limits,
    MiB,
    TransientCgroup,
    create_cgroup,
    unique_name,
)

CACHE = Path(os.environ.get("KUBE_LXCFS_CACHE", "/var/cache/kube-lxcfs")) / "bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FILES = (
    "proc/meminfo",
    "proc/stat",
    "proc/cpuinfo",
    "proc/uptime",
    "proc/loadavg",
    "sys/devices/system/cpu/online",
)
READY_TIMEOUT = 20.0
STALL_MS = 50


# --- the reader ----------------------------------------------------------------


def build_reader() -> Path:
    """Compile bench/reader.c once per source version."""
    source = HERE / "reader.c"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    binary = CACHE / f"reader-{digest}"
    if not binary.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = binary.with_suffix(".tmp")
        subprocess.run(["cc", "-O2", "-o", str(tmp), str(source)], check=True)
        tmp.rename(binary)
    return binary


# --- targets -----------------------------------------------------------------


@dataclass
class Target:
    """Where the files are read from, and the daemon serving them (None for raw)."""

    name: str
    root: Path
    daemon_pid: int | None


def _wait_mounted(mountpoint: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    probe = mountpoint / "proc" / "meminfo"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before mounting")
        if os.path.ismount(mountpoint):
            with contextlib.suppress(OSError):
                if probe.read_bytes():
                    return
        time.sleep(0.01)  # polling a condition with a deadline
    raise RuntimeError(f"{mountpoint} was not mounted within {READY_TIMEOUT}s")


@contextlib.contextmanager
def daemon(name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Iterator[Target]:
    """Start a FUSE daemon on a fresh temp mountpoint; unmount and stop it after."""
    workdir = Path(tempfile.mkdtemp(prefix=f"kube-lxcfs-bench-{name}-"))
    mountpoint = workdir / "mnt"
    mountpoint.mkdir()
    full = [a.replace("{mnt}", str(mountpoint)).replace("{dir}", str(workdir)) for a in argv]
    proc = subprocess.Popen(full, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_mounted(mountpoint, proc)
        yield Target(name, mountpoint, proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if os.path.ismount(mountpoint):
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        shutil.rmtree(workdir, ignore_errors=True)


def lxcfs_target() -> contextlib.AbstractContextManager[Target]:
    """Debian's lxcfs with the options matching our defaults (quota view, loadavg)."""
    return daemon("lxcfs", ["lxcfs", "-f", "-l", "--enable-cfs", "-p", "{dir}/pid", "{mnt}"])


def kube_lxcfs_target(
    stall: str | None = None, *, cache: bool = True, metrics: bool = False
) -> contextlib.AbstractContextManager[Target]:
    """Our daemon; ``cache=False`` renders every read (no render cache: KUBE_LXCFS_CACHE=off);
    ``metrics=True`` counts every read (``--metrics-address``, on a free loopback port)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src")
    env.pop("KUBE_LXCFS_FAULT_STALL", None)
    env.pop("KUBE_LXCFS_CACHE", None)
    if stall:
        env["KUBE_LXCFS_FAULT_STALL"] = stall
    if not cache:
        env["KUBE_LXCFS_CACHE"] = "off"
    name = "kube-lxcfs" if cache else "kube-lxcfs (no render cache)"
    argv = [sys.executable, "-m", "kube_lxcfs", "fs", "--no-repair", "--state-dir", "{dir}/state"]
    if metrics:
        name += " (metrics on)"
        argv += ["--metrics-address", "127.0.0.1:0"]
    return daemon(name, [*argv, "{mnt}"], env)


# --- measurement -------------------------------------------------------------


def _threads(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return []


def pin_daemon(pid: int | None, cpus: set[int]) -> None:
    """Set the CPU affinity of every thread of the daemon."""
    if pid is None:
        return
    for tid in _threads(pid):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, cpus)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of the whole process (all threads)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int | None) -> float:
    if pid is None:
        return 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Row:
    target: str
    file: str
    readers: int
    mode: str
    cgroups: int
    reads_per_s: float
    p50_us: float
    p99_us: float
    daemon_us_per_read: float
    daemon_rss_mib: float
    bytes_per_read: int
    scenario: str = "main"
    ratio_vs_lxcfs: float | None = None


def measure(
    reader: Path,
    target: Target,
    *,
    file: str,
    cgroups: Sequence[TransientCgroup],
    readers: int,
    pinned: bool,
    duration: float,
    hop_every: int = 0,
    label: str | None = None,
    scenario: str = "main",
    skip_readers: int = 0,
    bind_mounted: bool = False,
) -> Row:
    """Run ``readers`` readers of one file for ``duration`` seconds; one row.

    Reader ``i`` runs in ``cgroups[i % len(cgroups)]``; the first ``skip_readers``
    readers run but are left out of the figures (the stalled reader of the stall rows).
    ``bind_mounted``: each reader reads /<file> in its own mount namespace where the
    daemon's file is bind-mounted over it, as a container does (one path component on
    the FUSE side instead of the whole walk from the mount point).
    """
    all_cpus = set(range(os.cpu_count() or 1))
    cpus = {0} if pinned else all_cpus
    pin_daemon(target.daemon_pid, cpus)
    path = target.root / file
    prefix: list[str] = []
    if bind_mounted:
        bind = f'mount --bind {path} /{file} && exec "$@"'
        prefix = ["unshare", "--mount", "sh", "-c", bind, "sh"]
        path = Path("/", file)
    with tempfile.TemporaryDirectory(prefix="kube-lxcfs-bench-") as tmp:
        hop_args: list[str] = []
        if hop_every and len(cgroups) > 1:
            listing = Path(tmp, "cgroups.txt")
            listing.write_text(
                "".join(";".join(str(p) for p in cg.procs_files) + "\n" for cg in cgroups)
            )
            hop_args = [str(listing), str(hop_every)]
        procs = []
        for i in range(readers):
            cg = cgroups[i % len(cgroups)]
            procs.append(
                cg.popen(
                    [
                        *prefix,
                        str(reader),
                        str(path),
                        str(int(duration * 1000)),
                        f"{tmp}/lat{i}",
                        *hop_args,
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    preexec_fn=lambda: os.sched_setaffinity(0, cpus),
                )
            )
        cpu_before = cpu_seconds(target.daemon_pid)
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(b"g")
            p.stdin.flush()
        outputs = [p.communicate(timeout=duration + 60)[0] for p in procs]
        cpu_after = cpu_seconds(target.daemon_pid)
        for p in procs:
            if p.returncode != 0:
                raise RuntimeError(f"reader of {path} failed with {p.returncode}")
        total = sum(int(o.split()[0]) for o in outputs)
        counted = sum(int(o.split()[0]) for o in outputs[skip_readers:])
        size = int(outputs[skip_readers].split()[1])
        latencies = array("Q")
        for i in range(skip_readers, readers):
            latencies.frombytes(Path(tmp, f"lat{i}").read_bytes())
    ordered = sorted(latencies)
    pct = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000  # noqa: E731
    return Row(
        target=label or target.name,
        file=file,
        readers=readers - skip_readers,
        mode="pinned" if pinned else "unpinned",
        cgroups=len(set(map(id, cgroups))),
        reads_per_s=counted / duration,
        p50_us=pct(0.50),
        p99_us=pct(0.99),
        daemon_us_per_read=(cpu_after - cpu_before) * 1e6 / max(1, total),
        daemon_rss_mib=rss_mib(target.daemon_pid),
        bytes_per_read=size,
        scenario=scenario,
    )


# --- the run -----------------------------------------------------------------


def add_ratios(rows: list[Row]) -> None:
    """Throughput ratio of each row to the lxcfs row of the same scenario."""
    key = lambda r: (r.scenario, r.file, r.readers, r.mode, r.cgroups)  # noqa: E731
    lxcfs = {key(r): r for r in rows if r.target.startswith("lxcfs")}
    for r in rows:
        ref = lxcfs.get(key(r))
        if ref is not None and ref.reads_per_s:
            r.ratio_vs_lxcfs = r.reads_per_s / ref.reads_per_s


HEADER = (
    f"{'target':<42} {'file':<30} {'rd':>2} {'mode':<8} {'cg':>4} {'reads/s':>9} "
    f"{'p50us':>7} {'p99us':>8} {'cpu us/rd':>9} {'rss MiB':>7} {'vs lxcfs':>8}"
)


def print_header() -> None:
    print(HEADER)
    print("-" * len(HEADER), flush=True)


def print_row(r: Row) -> None:
    ratio = f"{r.ratio_vs_lxcfs:.2f}" if r.ratio_vs_lxcfs is not None else "-"
    print(
        f"{r.target:<42} {r.file:<30} {r.readers:>2} {r.mode:<8} {r.cgroups:>4} "
        f"{r.reads_per_s:>9.0f} {r.p50_us:>7.1f} {r.p99_us:>8.1f} "
        f"{r.daemon_us_per_read:>9.1f} {r.daemon_rss_mib:>7.1f} {ratio:>8}",
        flush=True,
    )


def print_table(rows: Sequence[Row]) -> None:
    print_header()
    for r in rows:
        print_row(r)


def check_virtual(target: Target, cgroup: TransientCgroup, limits: Limits) -> None:
    """Refuse to measure a daemon that does not render the reader's cgroup."""
    assert limits.memory is not None
    first = cgroup.run(["head", "-1", str(target.root / "proc/meminfo")]).stdout.split()
    expected = str(limits.memory // 1024)
    if first[1:2] != [expected]:
        raise RuntimeError(f"{target.name} shows {first} for a {expected} kB cgroup")
    print(f"# {target.name}: MemTotal {first[1]} kB in the benchmark cgroup", flush=True)


def run(quick: bool, targets: Sequence[str]) -> list[Row]:
    reader = build_reader()
    duration = 0.3 if quick else 2.0
    files = ("proc/meminfo", "proc/stat") if quick else FILES
    reader_counts = (1,) if quick else (1, 4)
    modes = (True,) if quick else (True, False)
    scale_counts = (1, 10) if quick else (1, 100, 500)
    rows: list[Row] = []
    prefix = unique_name("kube-lxcfs-bench")
    limits = Limits(memory=512 * MiB, cpu_quota=100_000, cpu_period=100_000, cpuset="0-1")
    print_header()
    with contextlib.ExitStack() as stack:
        main_cg = stack.enter_context(create_cgroup(f"{prefix}/main", limits))
        raw = Target("raw", Path("/"), None) if "raw" in targets else None
        lx = stack.enter_context(lxcfs_target()) if "lxcfs" in targets else None
        kl = stack.enter_context(kube_lxcfs_target()) if "kube-lxcfs" in targets else None
        nocache = (
            stack.enter_context(kube_lxcfs_target(cache=False))
            if "kube-lxcfs-nocache" in targets
            else None
        )
        counted = (
            stack.enter_context(kube_lxcfs_target(metrics=True))
            if "kube-lxcfs-metrics" in targets
            else None
        )
        chosen = [t for t in (raw, lx, kl, counted, nocache) if t is not None]
        for daemon_target in (lx, kl, counted, nocache):
            if daemon_target is not None:
                check_virtual(daemon_target, main_cg, limits)
        for file in files:
            for n in reader_counts:
                for pinned in modes:
                    for target in chosen:
                        row = measure(
                            reader,
                            target,
                            file=file,
                            cgroups=[main_cg],
                            readers=n,
                            pinned=pinned,
                            duration=duration,
                        )
                        rows.append(row)
                        print_row(row)
        for file in files[:1]:
            for target in (t for t in (lx, kl) if t is not None):
                row = measure(
                    reader,
                    target,
                    file=file,
                    cgroups=[main_cg],
                    readers=1,
                    pinned=True,
                    duration=duration,
                    label=f"{target.name} (bind-mounted)",
                    scenario="bind-mounted",
                    bind_mounted=True,
                )
                rows.append(row)
                print_row(row)
        rows += scale_rows(
            reader,
            daemons=[t for t in (lx, kl, counted, nocache) if t is not None],
            prefix=prefix,
            limits=limits,
            counts=scale_counts,
            duration=duration,
        )
        if kl is not None:
            rows += stall_rows(
                reader,
                main_cg=main_cg,
                prefix=prefix,
                limits=limits,
                duration=duration,
                without_isolation=nocache is not None,
            )
    add_ratios(rows)
    return rows


def scale_rows(
    reader: Path,
    *,
    daemons: Sequence[Target],
    prefix: str,
    limits: Limits,
    counts: Sequence[int],
    duration: float,
) -> list[Row]:
    """One pinned reader of meminfo hopping over N cgroups, for both daemons."""
    rows: list[Row] = []
    biggest = max(counts)
    cgroups = [create_cgroup(f"{prefix}/scale/c{i}", limits) for i in range(biggest)]
    try:
        for n in counts:
            for target in daemons:
                row = measure(
                    reader,
                    target,
                    file="proc/meminfo",
                    cgroups=cgroups[:n],
                    readers=1,
                    pinned=True,
                    duration=duration,
                    hop_every=20,
                    scenario="scale",
                )
                rows.append(row)
                print_row(row)
        for target in daemons:
            row = measure(
                reader,
                target,
                file="proc/meminfo",
                cgroups=cgroups[:1],
                readers=1,
                pinned=True,
                duration=duration,
                label=f"{target.name} (after {biggest})",
                scenario="after",
            )
            rows.append(row)
            print_row(row)
    finally:
        for cg in reversed(cgroups):
            cg.remove()
    return rows


def stall_rows(
    reader: Path,
    *,
    main_cg: TransientCgroup,
    prefix: str,
    limits: Limits,
    duration: float,
    without_isolation: bool,
) -> list[Row]:
    """Other readers' latency while one reader's cgroup stalls ``STALL_MS`` per lookup.

    Four unpinned meminfo readers: reader 0 in its own cgroup (left out of the
    figures), three in the benchmark cgroup.  The reference row has reader 0 in a
    cgroup that does not stall; the stall rows put it in one that does, on our
    daemon and (``without_isolation``) on the uncached daemon, which has no
    slow-cgroup isolation: what the single-threaded loop does without it.
    """
    rows: list[Row] = []
    stalled_name = f"{prefix}/stalled"
    fault = f"{stalled_name}={STALL_MS}"
    with (
        create_cgroup(f"{prefix}/calm", limits) as calm,
        create_cgroup(stalled_name, limits) as stalled,
    ):
        runs = [(True, "no stall", calm), (True, "1 of 4 stalls", stalled)]
        if without_isolation:
            runs.append((False, "1 of 4 stalls", stalled))
        for cache, what, first in runs:
            with kube_lxcfs_target(stall=fault, cache=cache) as target:
                check_virtual(target, main_cg, limits)
                row = measure(
                    reader,
                    target,
                    file="proc/meminfo",
                    cgroups=[first, main_cg, main_cg, main_cg],
                    readers=4,
                    pinned=False,
                    duration=duration,
                    label=f"{target.name} ({what})" if cache else f"{target.name[:-1]}, {what})",
                    scenario="stall",
                    skip_readers=1,
                )
            rows.append(row)
            print_row(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds: CI smoke")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument(
        "--targets",
        default="raw,lxcfs,kube-lxcfs,kube-lxcfs-metrics,kube-lxcfs-nocache",
        help=(
            "comma-separated subset of raw,lxcfs,kube-lxcfs,kube-lxcfs-metrics,"
            "kube-lxcfs-nocache (default: all; kube-lxcfs-metrics: our daemon with "
            "--metrics-address, every read counted; kube-lxcfs-nocache: our daemon with "
            "KUBE_LXCFS_CACHE=off, every read renders)"
        ),
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("fs_read: needs root (cgroups and FUSE mounts)", file=sys.stderr)
        return 2
    started = time.monotonic()
    rows = run(args.quick, args.targets.split(","))
    print()
    print_table(rows)
    stall = [r for r in rows if r.scenario == "stall"]
    if len(stall) >= 2 and stall[0].p99_us:
        print(f"\nstall ({STALL_MS} ms in one reader's cgroup): the other readers' p99")
        for r in stall:
            print(f"  {r.target:<44} {r.p99_us:>9.0f} us  x{r.p99_us / stall[0].p99_us:.2f}")
    print(f"\n{len(rows)} rows in {time.monotonic() - started:.1f}s")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
