"""kube-lxcfs against Debian's lxcfs 5.0.3 on the same cgroups, read by the same process.

Both daemons run on their own temp mount points (lxcfs with ``-l --enable-cfs``,
the closest to our defaults, and its own pidfile).  One reader process reads
each file through both mounts back to back, so live counters drift only by what
happens between two reads.  Where lxcfs is right the outputs must agree; every
deliberate difference (docs/differences-from-lxcfs.md) has a test here that
shows both sides.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from pathlib import Path

import pytest

from kube_lxcfs.cgroups.transient import Limits, MiB, TransientCgroup, create_cgroup, unique_name
from support.fsdaemons import RunningFs
from support.readers import (
    behind_bind_mounts,
    in_pid_namespace,
    meminfo_kb,
    processors,
    read_files,
    read_with_init_elsewhere,
    stat_cpus,
)

pytestmark = [pytest.mark.root, pytest.mark.fuse, pytest.mark.lxcfs]

CPU = "sys/devices/system/cpu"
DRIFT_KB = 4 * 1024
"""How far a live memory counter may move between the two reads of one reader."""
STATIC_MEMINFO_KEYS = ("Hugepagesize", "HugePages_Total", "VmallocTotal", "CommitLimit")
"""Host lines both daemons pass through and that do not change while a test runs."""


def _two_cpus() -> None:
    if Path("/sys/devices/system/cpu/online").read_text().strip() != "0-1":
        pytest.skip("these scenarios are written for a host with CPUs 0-1 online")


def _both(
    ours: RunningFs, theirs: RunningFs, names: list[str], **kwargs: object
) -> tuple[dict[str, str], dict[str, str]]:
    """(ours, lxcfs): ``name → text`` read by one process, alternating daemons per file."""
    paths = [str(fs.path(name)) for name in names for fs in (ours, theirs)]
    texts = read_files(paths, **kwargs)  # type: ignore[arg-type]
    return (
        {name: texts[str(ours.path(name))] for name in names},
        {name: texts[str(theirs.path(name))] for name in names},
    )


def _cpuinfo_entries(text: str) -> list[dict[str, str]]:
    entries = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            entry[key.strip()] = value.strip()
        entries.append(entry)
    return entries


@pytest.fixture
def limited() -> TransientCgroup:
    _two_cpus()
    limits = Limits(memory=256 * MiB, cpu_quota=50_000, cpu_period=100_000, cpuset="0-1")
    with create_cgroup(unique_name(), limits) as cg:
        yield cg


# --- where lxcfs is right, both agree ---------------------------------------


def test_meminfo_agrees(kube_lxcfs_fs: RunningFs, lxcfs_fs: RunningFs, limited) -> None:
    texts = read_files(
        [
            str(kube_lxcfs_fs.path("proc/meminfo")),
            "/proc/meminfo",
            str(lxcfs_fs.path("proc/meminfo")),
        ],
        cgroup=limited,
    )
    a = meminfo_kb(texts[str(kube_lxcfs_fs.path("proc/meminfo"))])
    b = meminfo_kb(texts[str(lxcfs_fs.path("proc/meminfo"))])
    host = meminfo_kb(texts["/proc/meminfo"])
    assert list(a) == list(b), "same keys in the same order"
    assert a["MemTotal"] == b["MemTotal"] == 262144
    # MemFree = MemTotal - usage in both; ours is also capped at the host's MemFree (a
    # container never has more free memory than the host), which lxcfs does not do
    host_drift = 16 * 1024  # the host's free memory moves with everything else running
    expected_free = min(b["MemFree"], host["MemFree"])
    tolerance = DRIFT_KB if b["MemFree"] <= host["MemFree"] - host_drift else host_drift
    assert abs(a["MemFree"] - expected_free) <= tolerance, (a["MemFree"], b["MemFree"], host)
    for key in ("Cached", "Active(anon)", "Inactive(anon)", "Active(file)", "Inactive(file)"):
        assert abs(a[key] - b[key]) <= DRIFT_KB, key
    for key in ("SwapTotal", "SwapFree", "Buffers", "SwapCached", "Unevictable", "Shmem"):
        assert abs(a[key] - b[key]) <= DRIFT_KB, key
    for key in STATIC_MEMINFO_KEYS:
        assert a[key] == b[key], key


def test_cpu_count_online_and_stat_lines_agree_in_the_quota_view(
    kube_lxcfs_fs: RunningFs, lxcfs_fs: RunningFs, limited
) -> None:
    names = ["proc/cpuinfo", "proc/stat", f"{CPU}/online"]
    ours, theirs = _both(kube_lxcfs_fs, lxcfs_fs, names, cgroup=limited)
    assert processors(ours["proc/cpuinfo"]) == processors(theirs["proc/cpuinfo"]) == [0]
    assert stat_cpus(ours["proc/stat"]) == stat_cpus(theirs["proc/stat"]) == [0]
    assert ours[f"{CPU}/online"] == theirs[f"{CPU}/online"] == "0\n"
    # every field that is not about the CPU count is the host's, in both
    a, b = _cpuinfo_entries(ours["proc/cpuinfo"]), _cpuinfo_entries(theirs["proc/cpuinfo"])
    for key in ("vendor_id", "model name", "flags", "cache size", "cpu family"):
        assert a[0].get(key) == b[0].get(key), key
    # non-cpu lines of stat: the same keys, the same boot time
    a_keys = [line.split()[0] for line in ours["proc/stat"].splitlines()]
    b_keys = [line.split()[0] for line in theirs["proc/stat"].splitlines()]
    assert a_keys == b_keys
    btime = [line for line in ours["proc/stat"].splitlines() if line.startswith("btime")]
    assert btime == [line for line in theirs["proc/stat"].splitlines() if line.startswith("btime")]


def test_swaps_agree(kube_lxcfs_fs: RunningFs, lxcfs_fs: RunningFs, limited) -> None:
    ours, theirs = _both(kube_lxcfs_fs, lxcfs_fs, ["proc/swaps"], cgroup=limited)
    assert (
        ours["proc/swaps"].splitlines()[0].split() == theirs["proc/swaps"].splitlines()[0].split()
    )
    if meminfo_kb(Path("/proc/meminfo").read_text())["SwapTotal"] == 0:
        assert ours["proc/swaps"].splitlines()[1:] == theirs["proc/swaps"].splitlines()[1:] == []


def test_uptime_in_a_pid_namespace_agrees(
    kube_lxcfs_fs: RunningFs, lxcfs_fs: RunningFs, limited
) -> None:
    """Both report the age of the container's init (here: the namespace's pid 1)."""
    ours, theirs = _both(
        kube_lxcfs_fs,
        lxcfs_fs,
        ["proc/uptime", "proc/meminfo"],
        cgroup=limited,
        prefix=in_pid_namespace(),
    )
    our_up = float(ours["proc/uptime"].split()[0])
    their_up = float(theirs["proc/uptime"].split()[0])
    assert 0 <= our_up < 60
    assert abs(our_up - their_up) < 2
    assert meminfo_kb(ours["proc/meminfo"])["MemTotal"] == 262144
    assert meminfo_kb(theirs["proc/meminfo"])["MemTotal"] == 262144


def test_loadavg_format_agrees(kube_lxcfs_fs: RunningFs, lxcfs_fs: RunningFs, limited) -> None:
    ours, theirs = _both(kube_lxcfs_fs, lxcfs_fs, ["proc/loadavg"], cgroup=limited)
    for text in (ours["proc/loadavg"], theirs["proc/loadavg"]):
        fields = text.split()
        assert len(fields) == 5
        assert all(f.count(".") == 1 for f in fields[:3])
        assert "/" in fields[3]


def test_root_cgroup_totals_agree(kube_lxcfs_fs: RunningFs, lxcfs_fs: RunningFs) -> None:
    ours, theirs = _both(
        kube_lxcfs_fs, lxcfs_fs, ["proc/meminfo", "proc/cpuinfo"], root_cgroup=True
    )
    host = meminfo_kb(Path("/proc/meminfo").read_text())
    assert meminfo_kb(ours["proc/meminfo"])["MemTotal"] == host["MemTotal"]
    assert meminfo_kb(theirs["proc/meminfo"])["MemTotal"] == host["MemTotal"]
    assert processors(ours["proc/cpuinfo"]) == processors(theirs["proc/cpuinfo"])


# --- deliberate differences (docs/differences-from-lxcfs.md) -----------------


def test_real_cpu_ids_and_visible_counts(kube_lxcfs_fs: RunningFs, lxcfs_fs: RunningFs) -> None:
    """cpuset 1: we keep id 1 everywhere; lxcfs renumbers to 0 and keeps host counts."""
    _two_cpus()
    names = [
        "proc/cpuinfo",
        "proc/stat",
        f"{CPU}/online",
        f"{CPU}/offline",
        f"{CPU}/cpu0/online",
        f"{CPU}/cpu1/online",
    ]
    with create_cgroup(unique_name(), Limits(cpuset="1")) as cg:
        ours, theirs = _both(kube_lxcfs_fs, lxcfs_fs, names, cgroup=cg)
    assert processors(ours["proc/cpuinfo"]) == [1]
    assert processors(theirs["proc/cpuinfo"]) == [0]
    assert stat_cpus(ours["proc/stat"]) == [1]
    assert stat_cpus(theirs["proc/stat"]) == [0]
    assert ours[f"{CPU}/online"] == "1\n"
    assert theirs[f"{CPU}/online"] == "0\n"
    # siblings / cpu cores: the visible count vs the host's
    our_entry = _cpuinfo_entries(ours["proc/cpuinfo"])[0]
    their_entry = _cpuinfo_entries(theirs["proc/cpuinfo"])[0]
    assert (our_entry["siblings"], our_entry["cpu cores"]) == ("1", "1")
    host_entry = _cpuinfo_entries(Path("/proc/cpuinfo").read_text())[0]
    assert (their_entry["siblings"], their_entry["cpu cores"]) == (
        host_entry["siblings"],
        host_entry["cpu cores"],
    )
    # offline: the hidden CPUs vs the host's (empty) list that contradicts online
    assert ours[f"{CPU}/offline"] == "0\n"
    assert theirs[f"{CPU}/offline"] == Path("/sys/devices/system/cpu/offline").read_text()
    # cpuN/online: by visibility, also for cpu0; lxcfs mirrors the host (cpu0 has none here)
    assert (ours[f"{CPU}/cpu0/online"], ours[f"{CPU}/cpu1/online"]) == ("0\n", "1\n")
    host_cpu0 = Path("/sys/devices/system/cpu/cpu0/online")
    expected_cpu0 = host_cpu0.read_text() if host_cpu0.exists() else f"ERROR {errno.ENOENT}"
    assert theirs[f"{CPU}/cpu0/online"] == expected_cpu0
    assert theirs[f"{CPU}/cpu1/online"] == "1\n"


def test_nested_quota_is_the_minimum_over_ancestors(
    kube_lxcfs_fs: RunningFs, lxcfs_fs: RunningFs
) -> None:
    """Parent 0.5 CPU, child unlimited: 1 CPU for us; lxcfs 5.0.3 reads only the child."""
    _two_cpus()
    with (
        create_cgroup(unique_name(), Limits(cpu_quota=50_000)) as outer,
        outer.child("inner") as inner,
    ):
        ours, theirs = _both(kube_lxcfs_fs, lxcfs_fs, ["proc/cpuinfo"], cgroup=inner)
    assert processors(ours["proc/cpuinfo"]) == [0]
    assert processors(theirs["proc/cpuinfo"]) == [0, 1]


def test_reader_cgroup_rule_vs_init_cgroup_rule(
    kube_lxcfs_fs: RunningFs, lxcfs_fs: RunningFs
) -> None:
    """A reader whose pid-namespace init is in another cgroup (shared process namespace
    pods, lxcfs #543): we answer with the reader's cgroup, lxcfs with the init's."""
    files = [str(fs.path("proc/meminfo")) for fs in (kube_lxcfs_fs, lxcfs_fs)]
    with (
        create_cgroup(unique_name(), Limits(memory=300 * MiB)) as init_cg,
        create_cgroup(unique_name(), Limits(memory=100 * MiB)) as reader_cg,
    ):
        texts = read_with_init_elsewhere(init_cg, reader_cg, files)
    assert meminfo_kb(texts[files[0]])["MemTotal"] == 100 * 1024
    assert meminfo_kb(texts[files[1]])["MemTotal"] == 300 * 1024


def test_mem_available_leaves_out_shmem(kube_lxcfs_fs: RunningFs, lxcfs_fs: RunningFs) -> None:
    """32 MiB in tmpfs count as cache; lxcfs 5.0.3 calls it available, we do not."""
    shm = Path("/dev/shm") / unique_name("kube-lxcfs-test-shm")
    try:
        with create_cgroup(unique_name(), Limits(memory=256 * MiB)) as cg:
            done = cg.run(["dd", "if=/dev/zero", f"of={shm}", "bs=1M", "count=32"])
            assert done.returncode == 0, done.stderr
            ours, theirs = _both(kube_lxcfs_fs, lxcfs_fs, ["proc/meminfo"], cgroup=cg)
            shm.unlink()
    finally:
        shm.unlink(missing_ok=True)
    a, b = meminfo_kb(ours["proc/meminfo"]), meminfo_kb(theirs["proc/meminfo"])
    assert a["Shmem"] >= 32 * 1024 - DRIFT_KB
    assert abs(b["MemAvailable"] - (b["MemFree"] + b["Cached"])) <= DRIFT_KB  # 5.0.3 formula
    assert a["MemAvailable"] <= a["MemFree"] + a["Active(file)"] + a["Inactive(file)"] + 8
    assert b["MemAvailable"] - a["MemAvailable"] >= 32 * 1024 - 2 * DRIFT_KB


def test_diskstats(kube_lxcfs_fs: RunningFs, lxcfs_fs: RunningFs, limited) -> None:
    """lxcfs reads only the CFQ blkio files (gone since Linux 5.0), so it serves the host's
    file.  We read the throttle/BFQ files where the kernel accounts IO in them (the
    hierarchy root lists a device); where it does not, we serve the host's file too."""
    if Path("/sys/fs/cgroup/blkio/blkio.io_serviced_recursive").exists():
        pytest.skip("this kernel still has the CFQ blkio files lxcfs reads")
    ours, theirs = _both(kube_lxcfs_fs, lxcfs_fs, ["proc/diskstats"], cgroup=limited)
    host_devices = [line.split()[2] for line in Path("/proc/diskstats").read_text().splitlines()]
    assert [line.split()[2] for line in theirs["proc/diskstats"].splitlines()] == host_devices
    accounted = any(
        line.split()[0] != "Total"
        for name in ("blkio.throttle.io_serviced_recursive", "blkio.bfq.io_serviced_recursive")
        if (root := Path("/sys/fs/cgroup/blkio", name)).exists()
        for line in root.read_text().splitlines()
    )
    if accounted:  # the difference: a fresh cgroup that did no block IO shows none
        assert ours["proc/diskstats"] == ""
    else:  # agreement: nothing per-cgroup to show on this kernel, both serve the host's
        assert [line.split()[2] for line in ours["proc/diskstats"].splitlines()] == host_devices


def test_first_read_at_an_offset(kube_lxcfs_fs: RunningFs, lxcfs_fs: RunningFs) -> None:
    """lxcfs returns EOF when a file's first read is not at offset 0; we return the data."""
    results = {}
    for fs in (kube_lxcfs_fs, lxcfs_fs):
        fd = os.open(fs.path("proc/meminfo"), os.O_RDONLY)
        try:
            results[fs.name] = os.pread(fd, 100, 100)
        finally:
            os.close(fd)
    assert len(results["kube-lxcfs fs"]) == 100
    assert results["lxcfs"] == b""


def test_attributes_layout_and_writes(kube_lxcfs_fs: RunningFs, lxcfs_fs: RunningFs) -> None:
    """st_size: the reader's text's length (lxcfs: the host file's size); no /cgroup tree;
    proc/pressure when the host has PSI; `online` listed once; writes refused at open
    (EROFS)."""
    ours, theirs = kube_lxcfs_fs, lxcfs_fs
    with create_cgroup(unique_name("diff-size"), Limits(cpuset="0")) as cg:
        script = (
            "import os, sys\n"
            "for p in sys.argv[1:]:\n"
            "    print(os.stat(p).st_size, len(open(p, 'rb').read()))\n"
        )
        paths = [str(fs.path("proc/cpuinfo")) for fs in (ours, theirs)]
        done = cg.run([sys.executable, "-c", script, *paths])
        (our_size, our_len), (their_size, their_len) = (
            line.split() for line in done.stdout.splitlines()
        )
    assert our_size == our_len
    assert int(their_size) == len(Path("/proc/cpuinfo").read_bytes())
    if len(os.sched_getaffinity(0)) > 1:
        assert int(their_len) < int(their_size)  # one CPU's text, the host's size
    assert sorted(os.listdir(ours.mountpoint)) == ["proc", "sys"]
    assert "cgroup" in os.listdir(theirs.mountpoint)
    has_psi = Path("/proc/pressure").is_dir()
    assert ("pressure" in os.listdir(ours.path("proc"))) == has_psi
    assert "pressure" not in os.listdir(theirs.path("proc"))
    assert os.listdir(ours.path(CPU)).count("online") == 1
    assert os.listdir(theirs.path(CPU)).count("online") == 2
    with pytest.raises(OSError) as exc:
        os.open(ours.path("proc/meminfo"), os.O_WRONLY)
    assert exc.value.errno == errno.EROFS
    fd = os.open(theirs.path("proc/meminfo"), os.O_WRONLY)  # lxcfs: EINVAL on write
    try:
        with pytest.raises(OSError) as exc:
            os.write(fd, b"x")
        assert exc.value.errno == errno.EINVAL
    finally:
        os.close(fd)


def test_uptime_of_a_host_reader(kube_lxcfs_fs: RunningFs, lxcfs_fs: RunningFs) -> None:
    """Host-namespace reader: we serve the host's /proc/uptime; lxcfs the age of pid 1 with
    idle = age - usage (at most the uptime, where the kernel sums idle over CPUs)."""
    ours, theirs = _both(kube_lxcfs_fs, lxcfs_fs, ["proc/uptime"], root_cgroup=True)
    host_up, host_idle = map(float, Path("/proc/uptime").read_text().split())
    our_up, our_idle = map(float, ours["proc/uptime"].split())
    their_up, their_idle = map(float, theirs["proc/uptime"].split())
    assert abs(our_up - host_up) < 2 and abs(their_up - host_up) < 5
    assert abs(our_idle - host_idle) < 2 * os.cpu_count()  # type: ignore[operator]
    assert their_idle <= their_up


def test_sendfile_after_a_shorter_container(kube_lxcfs_fs: RunningFs, lxcfs_fs: RunningFs) -> None:
    """busybox cat (sendfile) in a 2-CPU container right after a 1-CPU one, each behind its
    own bind mount: ours prints 2 processors; lxcfs cuts the text at the first container's
    length (the shared inode's size shrank; nothing fetches the attributes again)."""
    _two_cpus()
    busybox = shutil.which("busybox")
    assert busybox is not None, "busybox is needed (deps/apt)"
    counts = {}
    with (
        create_cgroup(unique_name("diff-one"), Limits(cpuset="0")) as one,
        create_cgroup(unique_name("diff-two"), Limits(cpuset="0-1")) as two,
    ):
        for fs in (kube_lxcfs_fs, lxcfs_fs):
            binds = behind_bind_mounts({str(fs.path("proc/cpuinfo")): "/proc/cpuinfo"})
            seen = []
            for cg in (one, two):
                done = cg.run([*binds, busybox, "cat", "/proc/cpuinfo"])
                seen.append(len(processors(done.stdout)))
            counts[fs.name] = seen
    assert counts["kube-lxcfs fs"] == [1, 2]
    assert counts["lxcfs"] == [1, 1]
