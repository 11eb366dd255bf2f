"""``kube-lxcfs fs`` end to end: the real daemon, real v1 cgroups, real readers.

Each reader is a new process placed in a cgroup made by cgroups/transient.py
(and sometimes in a new pid or mount namespace); what it reads through the
mount must be its cgroup's view.  Expected values come from the limits the test
sets and from the host's own files, never from the code under test.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kube_lxcfs.cgroups.transient import Limits, MiB, create_cgroup, unique_name
from kube_lxcfs.files import FILES, Presence
from kube_lxcfs.fuse.mounts import MountState, mount_at, mount_state
from support.fsdaemons import RunningFs, start_kube_lxcfs
from support.readers import (
    KeptOpenReader,
    behind_bind_mounts,
    in_pid_namespace,
    meminfo_kb,
    processors,
    read_files,
    read_with_init_elsewhere,
    stat_cpus,
)

pytestmark = [pytest.mark.root, pytest.mark.fuse]

CPU = "sys/devices/system/cpu"
HOST_CPUS = sorted(os.sched_getaffinity(0))


def _host(name: str) -> str:
    return Path("/proc", name).read_text()


def _needs_cpus(count: int) -> None:
    online = Path("/sys/devices/system/cpu/online").read_text().strip()
    if len(HOST_CPUS) < count or (online != f"0-{count - 1}" and count > 1):
        pytest.skip(f"needs CPUs 0-{count - 1} online (host has {online})")


def _paths(fs: RunningFs, *names: str) -> list[str]:
    return [str(fs.path(name)) for name in names]


def _by_name(fs: RunningFs, texts: dict[str, str]) -> dict[str, str]:
    prefix = str(fs.mountpoint) + "/"
    return {path.removeprefix(prefix): text for path, text in texts.items()}


def _read(fs: RunningFs, *names: str, **kwargs: object) -> dict[str, str]:
    return _by_name(fs, read_files(_paths(fs, *names), **kwargs))  # type: ignore[arg-type]


DONE_WHEN_FILES = (
    "proc/meminfo",
    "proc/cpuinfo",
    "proc/stat",
    "proc/uptime",
    f"{CPU}/online",
    f"{CPU}/offline",
    f"{CPU}/cpu0/online",
    f"{CPU}/cpu1/online",
)


def test_done_when_scenario(kube_lxcfs_fs: RunningFs) -> None:
    """The issue's acceptance: 256 MiB, 50000/100000, cpuset 0-1; then the root cgroup."""
    _needs_cpus(2)
    limits = Limits(memory=256 * MiB, cpu_quota=50_000, cpu_period=100_000, cpuset="0-1")
    with create_cgroup(unique_name(), limits) as cg:
        got = _read(kube_lxcfs_fs, *DONE_WHEN_FILES, cgroup=cg)
    assert "MemTotal:         262144 kB" in got["proc/meminfo"].splitlines()
    assert processors(got["proc/cpuinfo"]) == [0]
    assert got[f"{CPU}/online"] == "0\n"
    assert got[f"{CPU}/offline"] == "1\n"
    assert stat_cpus(got["proc/stat"]) == [0]
    assert got[f"{CPU}/cpu0/online"] == "1\n"
    assert got[f"{CPU}/cpu1/online"] == "0\n"
    up, idle = map(float, got["proc/uptime"].split())
    host_up = float(_host("uptime").split()[0])
    assert 0 < up <= host_up + 1
    assert idle >= 0

    root = _read(kube_lxcfs_fs, *DONE_WHEN_FILES, root_cgroup=True)
    host_meminfo = meminfo_kb(_host("meminfo"))
    assert meminfo_kb(root["proc/meminfo"])["MemTotal"] == host_meminfo["MemTotal"]
    assert processors(root["proc/cpuinfo"]) == processors(_host("cpuinfo"))
    assert root[f"{CPU}/online"] == Path("/sys/devices/system/cpu/online").read_text()
    assert root[f"{CPU}/offline"] == "\n"
    assert stat_cpus(root["proc/stat"]) == stat_cpus(_host("stat"))
    assert root[f"{CPU}/cpu1/online"] == "1\n"


def test_memory_limit_alone(kube_lxcfs_fs: RunningFs) -> None:
    with create_cgroup(unique_name(), Limits(memory=100 * MiB)) as cg:
        got = _read(kube_lxcfs_fs, "proc/meminfo", "proc/cpuinfo", cgroup=cg)
    values = meminfo_kb(got["proc/meminfo"])
    assert values["MemTotal"] == 100 * 1024
    assert 0 < values["MemFree"] <= values["MemTotal"]
    assert 0 < values["MemAvailable"] <= values["MemTotal"]
    # no CPU limit: every host CPU
    assert processors(got["proc/cpuinfo"]) == processors(_host("cpuinfo"))


def test_memsw_limit_sets_swap_consistently(start_fs) -> None:
    fs = start_fs("kube-lxcfs")
    no_swap = start_fs("kube-lxcfs", "--disable-swap")
    limits = Limits(memory=128 * MiB, memory_swap=384 * MiB)
    with create_cgroup(unique_name(), limits) as cg:
        if not (cg.directories["memory"] / "memory.memsw.limit_in_bytes").exists():
            pytest.skip("kernel without swap accounting")
        got = _read(fs, "proc/meminfo", "proc/swaps", cgroup=cg)
        off = _read(no_swap, "proc/meminfo", "proc/swaps", cgroup=cg)
    host_swap_kb = meminfo_kb(_host("meminfo"))["SwapTotal"]
    values = meminfo_kb(got["proc/meminfo"])
    assert values["MemTotal"] == 128 * 1024
    assert values["SwapTotal"] == min(256 * 1024, host_swap_kb)
    assert 0 <= values["SwapFree"] <= values["SwapTotal"]
    swap_lines = got["proc/swaps"].splitlines()[1:]
    if values["SwapTotal"]:
        assert [int(line.split()[2]) for line in swap_lines] == [values["SwapTotal"]]
    else:
        assert swap_lines == []
    off_values = meminfo_kb(off["proc/meminfo"])
    assert (off_values["SwapTotal"], off_values["SwapFree"]) == (0, 0)
    assert off["proc/swaps"].splitlines()[1:] == []


@pytest.mark.parametrize(
    ("quota", "expected"),
    [(50_000, 1), (100_000, 1), (150_000, 2), (400_000, 2)],
)
def test_cpu_quota_sets_the_cpu_count(kube_lxcfs_fs: RunningFs, quota: int, expected: int) -> None:
    _needs_cpus(2)
    with create_cgroup(unique_name(), Limits(cpu_quota=quota)) as cg:
        got = _read(kube_lxcfs_fs, "proc/cpuinfo", "proc/stat", f"{CPU}/online", cgroup=cg)
    assert processors(got["proc/cpuinfo"]) == list(range(expected))
    assert stat_cpus(got["proc/stat"]) == list(range(expected))
    assert got[f"{CPU}/online"] == ("0\n" if expected == 1 else "0-1\n")


def test_cpuset_keeps_real_cpu_ids(kube_lxcfs_fs: RunningFs) -> None:
    _needs_cpus(2)
    with create_cgroup(unique_name(), Limits(cpuset="1")) as cg:
        got = _read(
            kube_lxcfs_fs,
            "proc/cpuinfo",
            "proc/stat",
            f"{CPU}/online",
            f"{CPU}/offline",
            f"{CPU}/cpu0/online",
            f"{CPU}/cpu1/online",
            f"{CPU}/possible",
            f"{CPU}/present",
            cgroup=cg,
        )
    assert processors(got["proc/cpuinfo"]) == [1]
    assert re.search(r"^siblings\s*: 1$", got["proc/cpuinfo"], re.M)
    assert re.search(r"^cpu cores\s*: 1$", got["proc/cpuinfo"], re.M)
    assert stat_cpus(got["proc/stat"]) == [1]
    assert (got[f"{CPU}/online"], got[f"{CPU}/offline"]) == ("1\n", "0\n")
    assert (got[f"{CPU}/cpu0/online"], got[f"{CPU}/cpu1/online"]) == ("0\n", "1\n")
    # possible/present stay the host's, so per-CPU arrays still cover every id
    for name in ("possible", "present"):
        assert got[f"{CPU}/{name}"] == Path("/sys/devices/system/cpu", name).read_text()


def test_cpu_view_cpuset_ignores_the_quota(start_fs) -> None:
    _needs_cpus(2)
    fs = start_fs("kube-lxcfs", "--cpu-view=cpuset")
    with create_cgroup(unique_name(), Limits(cpu_quota=50_000, cpuset="0-1")) as cg:
        got = _read(fs, "proc/cpuinfo", f"{CPU}/online", cgroup=cg)
    assert processors(got["proc/cpuinfo"]) == [0, 1]
    assert got[f"{CPU}/online"] == "0-1\n"


def test_nested_limits_take_the_minimum(kube_lxcfs_fs: RunningFs) -> None:
    _needs_cpus(2)
    outer_limits = Limits(memory=256 * MiB, cpu_quota=50_000)
    with create_cgroup(unique_name(), outer_limits) as outer:
        with outer.child("loose", Limits(memory=1024 * MiB)) as loose:
            got_loose = _read(kube_lxcfs_fs, "proc/meminfo", "proc/cpuinfo", cgroup=loose)
        with outer.child("tight", Limits(memory=64 * MiB, cpuset="1")) as tight:
            got_tight = _read(kube_lxcfs_fs, "proc/meminfo", "proc/cpuinfo", cgroup=tight)
    assert meminfo_kb(got_loose["proc/meminfo"])["MemTotal"] == 256 * 1024
    assert processors(got_loose["proc/cpuinfo"]) == [0]  # the parent's quota applies
    assert meminfo_kb(got_tight["proc/meminfo"])["MemTotal"] == 64 * 1024
    assert processors(got_tight["proc/cpuinfo"]) == [1]


def test_reader_in_a_new_pid_namespace(kube_lxcfs_fs: RunningFs) -> None:
    with create_cgroup(unique_name(), Limits(memory=192 * MiB)) as cg:
        got = _read(
            kube_lxcfs_fs, "proc/meminfo", "proc/uptime", cgroup=cg, prefix=in_pid_namespace()
        )
    assert meminfo_kb(got["proc/meminfo"])["MemTotal"] == 192 * 1024
    up, _idle = map(float, got["proc/uptime"].split())
    assert 0 <= up < 60, "uptime is the age of the namespace's init, which just started"


def test_cgroup_of_init_answers_with_the_namespace_init(start_fs) -> None:
    """A reader in another cgroup than its pid-namespace init: ours by default, init's in
    lxcfs mode (the shared-process-namespace pod case of lxcfs issue #543)."""
    reader_mode = start_fs("kube-lxcfs")
    init_mode = start_fs("kube-lxcfs", "--cgroup-of=init")
    files = [str(fs.path("proc/meminfo")) for fs in (reader_mode, init_mode)]
    with (
        create_cgroup(unique_name(), Limits(memory=300 * MiB)) as init_cg,
        create_cgroup(unique_name(), Limits(memory=100 * MiB)) as reader_cg,
    ):
        texts = read_with_init_elsewhere(init_cg, reader_cg, files)
    assert meminfo_kb(texts[files[0]])["MemTotal"] == 100 * 1024
    assert meminfo_kb(texts[files[1]])["MemTotal"] == 300 * 1024


def test_bind_mount_over_proc_meminfo(kube_lxcfs_fs: RunningFs) -> None:
    """What an injector does: bind the file over /proc/meminfo; free(1) then reports it."""
    binds = {
        str(kube_lxcfs_fs.path("proc/meminfo")): "/proc/meminfo",
        str(kube_lxcfs_fs.path("proc/cpuinfo")): "/proc/cpuinfo",
    }
    limits = Limits(memory=256 * MiB, cpuset="0")
    with create_cgroup(unique_name(), limits) as cg:
        got = read_files(
            ["/proc/meminfo", "/proc/cpuinfo"], cgroup=cg, prefix=behind_bind_mounts(binds)
        )
        free = cg.run([*behind_bind_mounts(binds), "free", "-b"])
        nproc = cg.run([*behind_bind_mounts(binds), "grep", "-c", "^processor", "/proc/cpuinfo"])
    assert meminfo_kb(got["/proc/meminfo"])["MemTotal"] == 262144
    assert processors(got["/proc/cpuinfo"]) == [0]
    assert free.returncode == 0, free.stderr
    mem_line = next(line for line in free.stdout.splitlines() if line.startswith("Mem:"))
    assert int(mem_line.split()[1]) == 256 * MiB
    assert nproc.stdout.strip() == "1"
    # the host's /proc is untouched outside that mount namespace
    assert meminfo_kb(_host("meminfo"))["MemTotal"] != 262144


def test_reads_are_rendered_per_read_not_per_open(kube_lxcfs_fs: RunningFs) -> None:
    """lseek(0) on a kept-open fd renders again, for the cgroup the reader is in now."""
    from kube_lxcfs.cgroups.transient import host_layout
    from support.cgroups import move_to_root

    layout = host_layout()
    with KeptOpenReader(
        kube_lxcfs_fs.path("proc/meminfo"),
        preexec_fn=lambda: move_to_root(0, layout=layout),
    ) as reader:
        before = reader.first_line()
        with create_cgroup(unique_name(), Limits(memory=256 * MiB)) as cg:
            cg.add_pid(reader.pid)
            after = reader.first_line()
            reader.close()
    host_total = meminfo_kb(_host("meminfo"))["MemTotal"]
    assert meminfo_kb(before)["MemTotal"] == host_total
    assert meminfo_kb(after)["MemTotal"] == 262144


def test_small_reads_and_reads_at_offsets_are_consistent(kube_lxcfs_fs: RunningFs) -> None:
    path = kube_lxcfs_fs.path("proc/meminfo")
    fd = os.open(path, os.O_RDONLY)
    try:
        pieces = []
        while chunk := os.read(fd, 3):
            pieces.append(chunk)
    finally:
        os.close(fd)
    text = b"".join(pieces).decode()
    lines = text.splitlines()
    assert lines[0].startswith("MemTotal:")
    assert all(re.fullmatch(r"[\w()]+:\s+\d+( kB)?", line) for line in lines), lines
    assert len(lines) == len(_host("meminfo").splitlines())
    # a first read at an offset returns data (lxcfs returns EOF there)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, 16, 0 + len("MemTotal:")) != b""
    finally:
        os.close(fd)


def test_every_served_file_reads(kube_lxcfs_fs: RunningFs) -> None:
    rows = [f for f in FILES if f.path.startswith("/proc/")]
    names = [f.path[6:] for f in rows if f.present is Presence.ALWAYS]
    assert set(names) <= set(os.listdir(kube_lxcfs_fs.path("proc")))
    names += [f.path[6:] for f in rows if f.present is Presence.HOST_FILE and Path(f.path).exists()]
    with create_cgroup(unique_name(), Limits(memory=64 * MiB)) as cg:
        got = _read(kube_lxcfs_fs, *[f"proc/{n}" for n in names], cgroup=cg)
    for name, text in got.items():
        assert not text.startswith("ERROR"), (name, text)
    assert re.fullmatch(r"\d+\.\d\d \d+\.\d\d \d+\.\d\d \d+/\d+ \d+\n", got["proc/loadavg"])
    cpu_dir = sorted(os.listdir(kube_lxcfs_fs.path(CPU)))
    assert cpu_dir == sorted(set(os.listdir("/sys/devices/system/cpu")) | {"offline", "online"})


def test_a_removed_cgroup_while_a_file_is_open_falls_back_cleanly(
    kube_lxcfs_fs: RunningFs,
) -> None:
    """The reader's cgroup disappears between two reads of one open file."""
    from support.cgroups import move_to_root

    with create_cgroup(unique_name(), Limits(memory=256 * MiB)) as cg:
        reader = KeptOpenReader(kube_lxcfs_fs.path("proc/meminfo"), start=cg.popen)
        try:
            inside = reader.first_line()
            move_to_root(reader.pid)
            cg.disown(reader.process)  # it lives on outside; removing the cgroup must not kill it
            cg.remove()
            outside = reader.first_line()
        finally:
            reader.close()
    assert meminfo_kb(inside)["MemTotal"] == 262144
    assert meminfo_kb(outside)["MemTotal"] == meminfo_kb(_host("meminfo"))["MemTotal"]
    assert kube_lxcfs_fs.process.poll() is None


def test_a_caller_the_daemon_cannot_see_gets_the_host_files(tmp_path: Path) -> None:
    """Daemon in its own pid namespace: host callers have no pid there (pid 0, a
    vanished pid for every purpose); they get the host's content, nothing crashes."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from support.fsdaemons import _start, kube_lxcfs_argv

    mountpoint = tmp_path / "mnt"
    fs = _start(
        "kube-lxcfs fs in a pid namespace",
        ["unshare", "--pid", "--kill-child=SIGTERM", *kube_lxcfs_argv(mountpoint)],
        mountpoint,
        "kube-lxcfs",
        tmp_path / "daemon.log",
    )
    try:
        with create_cgroup(unique_name(), Limits(memory=256 * MiB, cpuset="0")) as cg:
            got = _read(fs, "proc/meminfo", "proc/cpuinfo", f"{CPU}/online", cgroup=cg)
        host_total = meminfo_kb(_host("meminfo"))["MemTotal"]
        assert meminfo_kb(got["proc/meminfo"])["MemTotal"] == host_total
        assert processors(got["proc/cpuinfo"]) == processors(_host("cpuinfo"))
        assert fs.process.poll() is None
        # unshare waits and ignores SIGTERM; the daemon, pid 1 of its namespace, obeys it
        children = Path(f"/proc/{fs.process.pid}/task/{fs.process.pid}/children").read_text()
        for child in children.split():
            os.kill(int(child), signal.SIGTERM)
        assert fs.stop() == 0
        assert "unmounted" in fs.log()
    finally:
        fs.stop()


def test_sigterm_unmounts_and_exits_zero(start_fs) -> None:
    fs = start_fs("kube-lxcfs")
    assert fs.path("proc/meminfo").read_text().startswith("MemTotal:")
    assert fs.stop(signal.SIGTERM) == 0
    assert mount_at(fs.mountpoint) is None
    log = fs.log()
    assert "serving" in log and "unmounted" in log
    assert "Traceback" not in log


def test_kill_then_restart_on_the_same_mountpoint(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    mountpoint = tmp_path / "mnt"
    first = start_kube_lxcfs(mountpoint)
    try:
        first.process.kill()
        first.process.wait(10)
        assert mount_state(mountpoint) is MountState.STALE
        started = time.monotonic()
        second = start_kube_lxcfs(mountpoint, log_path=tmp_path / "second.log")
        try:
            assert second.path("proc/meminfo").read_text().startswith("MemTotal:")
            assert "dead FUSE mount" in second.log()
            assert time.monotonic() - started < 30
        finally:
            assert second.stop() == 0
        assert mount_at(mountpoint) is None
    finally:
        first.stop()


def test_pidfile_is_written_and_removed(start_fs, tmp_path: Path) -> None:
    pidfile = tmp_path / "run" / "kube-lxcfs.pid"
    fs = start_fs("kube-lxcfs", "-p", str(pidfile))
    assert pidfile.read_text() == f"{fs.process.pid}\n"
    assert fs.stop() == 0
    assert not pidfile.exists()


def test_concurrent_readers_in_different_cgroups_never_see_each_other(
    kube_lxcfs_fs: RunningFs,
) -> None:
    """direct_io and per-open snapshots: readers in four cgroups reading at the same time
    each get their own cgroup's MemTotal on every one of their reads."""
    loop = (
        "import os, sys\n"
        "seen = set()\n"
        "for _ in range(200):\n"
        "    fd = os.open(sys.argv[1], os.O_RDONLY)\n"
        "    seen.add(os.read(fd, 64).split(b'\\n')[0].split()[1])\n"
        "    os.close(fd)\n"
        "print(b' '.join(sorted(seen)).decode())\n"
    )
    sizes = [64, 96, 128, 160]
    path = str(kube_lxcfs_fs.path("proc/meminfo"))
    with contextlib.ExitStack() as stack:
        cgroups = [
            stack.enter_context(create_cgroup(unique_name(), Limits(memory=size * MiB)))
            for size in sizes
        ]
        readers = [
            cg.popen([sys.executable, "-c", loop, path], stdout=subprocess.PIPE, text=True)
            for cg in cgroups
        ]
        outputs = [reader.communicate(timeout=120)[0].split() for reader in readers]
    assert outputs == [[str(size * 1024)] for size in sizes]


def test_loadavg_per_cgroup_by_default_and_host_with_disable_loadavg(start_fs) -> None:
    """The 4th field counts tasks: the cgroup's few by default, the host's many when off."""
    default = start_fs("kube-lxcfs")
    host_mode = start_fs("kube-lxcfs", "--disable-loadavg")
    with create_cgroup(unique_name(), Limits(memory=64 * MiB)) as cg:
        ours = _read(default, "proc/loadavg", cgroup=cg)["proc/loadavg"]
        texts = read_files([str(host_mode.path("proc/loadavg")), "/proc/loadavg"], cgroup=cg)
    served, host = texts[str(host_mode.path("proc/loadavg"))], texts["/proc/loadavg"]
    running, total = map(int, ours.split()[3].split("/"))
    assert 1 <= total <= 5 and running <= total, ours  # the reader (and its threads)
    host_total = int(host.split()[3].split("/")[1])
    assert host_total > 20, host
    # the host's task count moves with everything else running on the machine
    assert abs(int(served.split()[3].split("/")[1]) - host_total) <= 50, (served, host)


def test_mount_options_reach_the_mount(start_fs) -> None:
    fs = start_fs("kube-lxcfs", "-o", "noexec", "-o", "nonempty")
    mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
    line = next(line for line in mountinfo if f" {fs.mountpoint} " in line)
    mount_flags = line.split()[5].split(",")
    assert "noexec" in mount_flags and "ro" in mount_flags
    assert "allow_other" in line.split(" - ")[1].split()[2].split(",")
    assert "nonempty" in fs.log()  # dropped (libfuse3 refuses it), and said so


def test_a_loop_that_ends_without_a_signal_is_a_failure(tmp_path: Path) -> None:
    """libfuse3 ends its loop at INIT when max_read disagrees with the kernel's: that must
    be exit 1 with the reason, not the exit 0 of a requested stop."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    mountpoint = tmp_path / "mnt"
    done = subprocess.run(
        [sys.executable, "-m", "kube_lxcfs", "fs", "-o", "max_read=65536", str(mountpoint)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "without a stop signal" in done.stderr.splitlines()[-1]
    assert mount_at(mountpoint) is None


def test_debug_logs_every_request(start_fs) -> None:
    fs = start_fs("kube-lxcfs", "--debug")
    assert fs.path("proc/uptime").read_text()
    assert fs.stop() == 0
    log = fs.log()
    assert "opcode: READ" in log
    assert "DEBUG" in log


def test_sigterm_under_load_stops_cleanly(start_fs) -> None:
    """Readers hammering the mount while SIGTERM arrives: the daemon still unmounts and
    exits 0 promptly, and the readers end (with an error once the mount is gone)."""
    fs = start_fs("kube-lxcfs")
    loop = (
        "import os, sys\n"
        "n = 0\n"
        "while True:\n"
        "    try:\n"
        "        fd = os.open(sys.argv[1], os.O_RDONLY)\n"
        "        os.read(fd, 65536)\n"
        "        os.close(fd)\n"
        "    except OSError:\n"
        "        break\n"
        "    n += 1\n"
        "    if n == 20:\n"
        "        print('reading', flush=True)\n"
    )
    paths = [str(fs.path(name)) for name in ("proc/meminfo", "proc/stat", "proc/cpuinfo")]
    with create_cgroup(unique_name(), Limits(memory=128 * MiB)) as cg:
        readers = [
            cg.popen([sys.executable, "-c", loop, path], stdout=subprocess.PIPE, text=True)
            for path in paths
        ]
        for reader in readers:  # every reader is in its loop before the signal
            assert reader.stdout is not None and reader.stdout.readline() == "reading\n"
        started = time.monotonic()
        assert fs.stop(signal.SIGTERM, timeout=20) == 0
        assert time.monotonic() - started < 10
        assert mount_at(fs.mountpoint) is None
        for reader in readers:
            reader.wait(timeout=20)  # they leave their loop: no reader hangs on the mount
    assert "Traceback" not in fs.log()
