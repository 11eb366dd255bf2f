"""The v2 back-end and the whole tree over a fake rooted proc/sys/cgroup tree."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from kube_lxcfs.cgroups.hierarchy import Hierarchy
from kube_lxcfs.cgroups.parse import parse_meminfo_kb
from kube_lxcfs.cgroups.reader import V2
from kube_lxcfs.files import FILES
from kube_lxcfs.render_cache import CachePolicy
from kube_lxcfs.tree import ProcTree, build_tree
from unit.fakehost import PRESSURE_PATHS, FakeHost

STAT_256M = (
    "anon 67108864\nfile 1048576\nshmem 0\nactive_anon 0\ninactive_anon 67108864\n"
    "active_file 524288\ninactive_file 524288\nslab_reclaimable 2097152\n"
    "slab_unreclaimable 1048576\nfile_mapped 4096\n"
)
CPU_PSI = (
    "some avg10=5.00 avg60=1.00 avg300=0.20 total=777\n"
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
)
CTR_CPU_STAT = "usage_usec 100000000\nuser_usec 100000000\nsystem_usec 0\n"


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    h = FakeHost(tmp_path)
    h.cgroup_files("/test", {
        "memory.max": "268435456\n",
        "memory.current": "71303168\n",  # 68 MiB
        "memory.stat": STAT_256M,
        "memory.swap.max": "67108864\n",
        "memory.swap.current": "1048576\n",
        "cpu.max": "150000 100000\n",
        "cpu.stat": "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\n",
        "cpuset.cpus.effective": "0-3\n",
        "io.stat": "254:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
        "cpu.pressure": CPU_PSI,
    })  # fmt: skip
    h.cgroup_files("/ctr", {"memory.max": "536870912\n", "memory.swap.max": "max\n",
                            "cpu.max": "max 100000\n", "cpuset.cpus.effective": "2-3\n",
                            "cpu.stat": CTR_CPU_STAT})  # fmt: skip
    h.cgroup_files("/ctr/sub", {
        "memory.max": "max\n", "memory.current": "1048576\n", "memory.stat": "anon 1048576\n",
        "memory.swap.max": "max\n", "memory.swap.current": "0\n", "cpu.max": "100000 100000\n",
        "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
    })  # fmt: skip
    h.process(100, "/test")
    h.process(101, "/")
    # a container: its own pid namespace; init 200 in /ctr, a child 201 in /ctr/sub
    h.process(200, "/ctr", ns="pid:[7]", nspid=(200, 1), ppid=1, start_ticks=60000)
    h.process(201, "/ctr/sub", ns="pid:[7]", nspid=(201, 5), ppid=200)
    return h


def test_v2_memory_snapshot_hierarchical(host: FakeHost) -> None:
    h = Hierarchy(2, frozenset({"memory"}), str(host.cgroup))
    sub = V2.memory(h, "/ctr/sub")
    assert sub.limit == 512 << 20  # from /ctr; /ctr/sub says max
    assert sub.swap_limit is None
    assert sub.usage == 1 << 20
    test = V2.memory(h, "/test")
    assert (test.limit, test.swap_limit, test.swap_usage) == (256 << 20, 64 << 20, 1 << 20)
    assert test.stat.slab_reclaimable == 2 << 20
    assert test.stat.file_mapped == 4096


def test_v2_cpu_quota_minimum_and_cpuset(host: FakeHost) -> None:
    h = Hierarchy(2, frozenset({"cpu", "cpuset"}), str(host.cgroup))
    assert V2.cpu_quota(h, "/test") == 1.5
    assert V2.cpu_quota(h, "/ctr/sub") == 1.0
    assert V2.cpu_quota(h, "/ctr") is None
    assert V2.cpuset(h, "/ctr/sub") == {2, 3}  # nearest ancestor with the file


def mem(tree: ProcTree, pid: int) -> dict[str, int]:
    return parse_meminfo_kb(tree.read("/proc/meminfo", pid).decode())


def test_layout_and_listing(host: FakeHost) -> None:
    tree = build_tree(host.options())
    assert tree.listdir("/") == ["proc", "sys"]
    served = {f.path.split("/")[2] for f in FILES if f.path.startswith("/proc/")}
    assert set(tree.listdir("/proc")) == served
    assert tree.listdir("/proc/pressure") == [p.rsplit("/", 1)[1] for p in PRESSURE_PATHS]
    assert tree.lookup("/proc/meminfo").mode == 0o444
    assert tree.lookup("/proc/nothing") is None
    assert tree.lookup("/sys/devices/system").kind == "dir"
    assert "cpu0" in tree.listdir("/sys/devices/system/cpu")
    assert "online" in tree.listdir("/sys/devices/system/cpu/cpu0")  # added where the host has none
    assert tree.lookup("/sys/devices/system/cpu/cpu0/online").kind == "file"
    link = tree.lookup("/sys/devices/system/cpu/cpu0/subsystem")
    assert (link.kind, link.target) == ("symlink", "../../../../bus/cpu")
    assert tree.lookup("/sys/devices/system/cpu/cpu9") is None


def test_no_pressure_dir_without_host_psi(host: FakeHost) -> None:
    for path in PRESSURE_PATHS:
        (host.root / path.lstrip("/")).unlink()
    tree = build_tree(host.options())
    assert "pressure" not in tree.listdir("/proc")
    assert tree.lookup("/proc/pressure") is None


def test_limited_reader(host: FakeHost) -> None:
    tree = build_tree(host.options())
    m = mem(tree, 100)
    assert m["MemTotal"] == 262144
    assert m["MemFree"] == 262144 - 69632
    assert m["MemAvailable"] == 262144 - 69632 + 1024 + 2048  # file LRU + reclaimable slab
    assert m["SwapTotal"] == 65536
    assert m["SwapFree"] == 65536 - 1024
    swaps = tree.read("/proc/swaps", 100).decode()
    assert swaps.splitlines()[1].split() == ["none", "virtual", "65536", "1024", "0"]
    cpuinfo = tree.read("/proc/cpuinfo", 100).decode()
    assert cpuinfo.count("processor") == 2  # ceil(1.5)
    assert "processor\t: 1\n" in cpuinfo
    assert "cpu cores\t: 2\n" in cpuinfo
    stat = [
        line
        for line in tree.read("/proc/stat", 100).decode().splitlines()
        if line.startswith("cpu")
    ]
    # user 2 s = 200 ticks, system 100 ticks over 2 CPUs; wall 1000 s = 100000 ticks
    assert stat == [
        "cpu  200 0 100 199700 0 0 0 0 0 0",
        "cpu0 100 0 50 99850 0 0 0 0 0 0",
        "cpu1 100 0 50 99850 0 0 0 0 0 0",
    ]
    assert tree.read("/sys/devices/system/cpu/online", 100) == b"0-1\n"
    assert tree.read("/sys/devices/system/cpu/offline", 100) == b"2-3\n"
    assert tree.read("/sys/devices/system/cpu/cpu0/online", 100) == b"1\n"
    assert tree.read("/sys/devices/system/cpu/cpu3/online", 100) == b"0\n"
    assert tree.read("/sys/devices/system/cpu/possible", 100) == b"0-3\n"
    assert tree.read("/sys/devices/system/cpu/cpu2/topology/core_id", 100) == b"2\n"
    assert tree.read("/proc/pressure/cpu", 100).startswith(b"some avg10=5.00")
    assert tree.read("/proc/pressure/memory", 100).startswith(b"some avg10=0.00")  # no own file
    assert (
        tree.read("/proc/diskstats", 100) == b" 254       0 vda 1 0 8 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
    )
    assert tree.read("/proc/slabinfo", 100) == b"slabinfo - version: 2.1\n"


def test_cpuset_view_option(host: FakeHost) -> None:
    tree = build_tree(host.options(cpu_view="cpuset"))
    assert tree.read("/sys/devices/system/cpu/online", 100) == b"0-3\n"
    assert tree.read("/proc/cpuinfo", 100).count(b"processor") == 4


def test_swap_disabled_option(host: FakeHost) -> None:
    tree = build_tree(host.options(swap=False))
    m = mem(tree, 100)
    assert m["SwapTotal"] == m["SwapFree"] == 0
    assert tree.read("/proc/swaps", 100).count(b"\n") == 1


def test_root_reader_sees_host(host: FakeHost) -> None:
    tree = build_tree(host.options())
    assert tree.read("/proc/meminfo", 101) == (host.proc / "meminfo").read_bytes()
    assert tree.read("/proc/stat", 101) == (host.proc / "stat").read_bytes()
    assert tree.read("/sys/devices/system/cpu/online", 101) == b"0-3\n"
    assert tree.read("/proc/uptime", 101) == b"1000.00 3000.00\n"


def test_reader_rule_vs_init_rule(host: FakeHost) -> None:
    reader = build_tree(host.options())
    init = build_tree(host.options(cgroup_of="init"))
    # 201 sits in /ctr/sub (cpu.max 1 CPU, memory unlimited under /ctr's 512 MiB)
    assert mem(reader, 201)["MemTotal"] == 524288
    assert reader.read("/sys/devices/system/cpu/online", 201) == b"2\n"
    # lxcfs's rule: the namespace init 200 answers, /ctr: no quota, cpuset 2-3
    assert init.read("/sys/devices/system/cpu/online", 201) == b"2-3\n"
    # host-namespace readers keep their own cgroup under both rules
    assert init.read("/sys/devices/system/cpu/online", 100) == b"0-1\n"


def test_uptime_of_container_init(host: FakeHost) -> None:
    tree = build_tree(host.options())
    # now 1000 s; init 200 started at 60000 ticks = 600 s; /ctr used 100 s of 2 CPUs
    assert tree.read("/proc/uptime", 201) == b"400.00 700.00\n"


def test_faults_fall_back_to_host_and_log_once(
    host: FakeHost, caplog: pytest.LogCaptureFixture
) -> None:
    tree = build_tree(host.options())
    host_meminfo = (host.proc / "meminfo").read_bytes()
    caplog.set_level(logging.WARNING, logger="kube_lxcfs.tree")
    assert tree.read("/proc/meminfo", 999) == host_meminfo  # vanished pid
    host.cgroup_files("/test", {"memory.stat": "anon lots\n"})  # malformed
    assert tree.read("/proc/meminfo", 100) == host_meminfo
    assert tree.read("/proc/meminfo", 100) == host_meminfo
    records = [r for r in caplog.records if "/proc/meminfo" in r.getMessage()]
    assert len(records) == 2  # CgroupUnavailable once, ParseError once
    assert "anon lots" in records[1].getMessage()


def test_removed_cgroup_falls_back(host: FakeHost) -> None:
    tree = build_tree(host.options())
    host.process(300, "/gone")
    assert tree.read("/proc/cpuinfo", 300) == (host.proc / "cpuinfo").read_bytes()
    assert tree.read("/sys/devices/system/cpu/online", 300) == b"0-3\n"


def test_loadavg_sampler_through_tree(host: FakeHost) -> None:
    now = [100.0]
    # no render cache: the fake clock jumps 5 s between two reads a real instant apart
    tree = ProcTree(host.options(), clock=lambda: now[0], cache=CachePolicy.off())
    host.cgroup_files("/test", {"cgroup.procs": "100\n"})
    task = host.proc / "100" / "task" / "100"
    task.mkdir(parents=True)
    (task / "stat").write_text("100 (x) R 1 0 0\n")
    assert tree.read("/proc/loadavg", 100) == b"0.00 0.00 0.00 0/1 100\n"
    now[0] = 105.0
    tree.context.sampler.tick(now[0])
    assert tree.read("/proc/loadavg", 100) == b"0.08 0.02 0.01 1/1 100\n"
    assert tree.read("/proc/loadavg", 101) == b"0.50 0.40 0.30 1/100 4242\n"  # root: host
    off = build_tree(host.options(loadavg=False))
    assert off.read("/proc/loadavg", 100) == b"0.50 0.40 0.30 1/100 4242\n"


def test_start_and_close_are_prompt(host: FakeHost) -> None:
    tree = build_tree(host.options())
    tree.start()
    tree.close()
    tree.close()


def test_init_of_a_process_that_joined_with_setns(host: FakeHost) -> None:
    # 202 entered namespace 7 with setns: its parent (1) is outside, so the init is
    # found by scanning /proc for the namespace's pid 1 (200, in /ctr)
    host.process(202, "/ctr/sub", ns="pid:[7]", nspid=(202, 9), ppid=1)
    init = build_tree(host.options(cgroup_of="init"))
    assert init.read("/sys/devices/system/cpu/online", 202) == b"2-3\n"
    assert init.context.processes.namespace_init(202) == 200


def test_init_cache_is_revalidated(host: FakeHost) -> None:
    tree = build_tree(host.options())
    assert tree.context.processes.namespace_init(201) == 200
    # the init exits and its pid is reused by an unrelated process in another namespace
    shutil.rmtree(host.proc / "200")
    host.process(200, "/", start_ticks=999999)
    host.process(210, "/ctr", ns="pid:[7]", nspid=(210, 1), ppid=1)
    assert tree.context.processes.namespace_init(201) == 210


def test_sysinfo_matches_meminfo_and_loadavg(host: FakeHost) -> None:
    tree = build_tree(host.options())
    info = tree.sysinfo(100)
    m = mem(tree, 100)
    assert info.totalram == m["MemTotal"] * 1024 == 256 << 20
    assert info.freeram == m["MemFree"] * 1024
    assert (info.totalswap, info.freeswap) == (64 << 20, 63 << 20)
    assert info.uptime == 1000  # host namespace: the host's uptime
    assert info.loads == (0, 0, 0)  # a new cgroup's loadavg starts at zero
    root = tree.sysinfo(101)
    assert root.totalram == parse_meminfo_kb((host.proc / "meminfo").read_text())["MemTotal"] * 1024
    assert root.loads == (1024, 819, 614)  # host loadavg 0.50 0.40 0.30 in fixed point
    assert root.procs == 100


def test_unserved_paths_read_nothing(host: FakeHost) -> None:
    tree = build_tree(host.options())
    (host.sys / "secret").write_text("no\n")
    assert tree.read("/sys/secret", 100) == b""
    assert tree.read("/sys/devices/system/cpu/../../../secret", 100) == b""
    assert tree.read("/proc/version", 100) == b""


def test_v2_controller_not_enabled_in_subtree_uses_nearest_ancestor(host: FakeHost) -> None:
    # /ctr/sub/leaf has no memory files: memory is not enabled below /ctr/sub
    host.cgroup_files("/ctr/sub/leaf", {"cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"})
    h = Hierarchy(2, frozenset({"memory"}), str(host.cgroup))
    snap = V2.memory(h, "/ctr/sub/leaf")
    assert snap.cgroup == "/ctr/sub"
    assert snap.limit == 512 << 20
    assert V2.io(h, "/ctr/sub/leaf") is None  # no io.stat up to the root: the host's


def test_swap_files_unread_when_the_host_has_no_swap(host: FakeHost) -> None:
    meminfo = (host.proc / "meminfo").read_text()
    host.write_proc(
        "meminfo", meminfo.replace("SwapTotal:        262112 kB", "SwapTotal:             0 kB")
    )
    # a malformed swap file would fall back to the host if it were read
    host.cgroup_files("/test", {"memory.swap.max": "garbage\n"})
    tree = build_tree(host.options())
    m = mem(tree, 100)
    assert m["MemTotal"] == 262144
    assert m["SwapTotal"] == 0
