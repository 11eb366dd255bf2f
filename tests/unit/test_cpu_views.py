"""cpuinfo, stat, the sys cpu files, uptime, loadavg, diskstats, pressure: pure renderers."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kube_lxcfs.cgroups.parse import CpuTimes, IoCounters, parse_cpuacct_usage_all
from kube_lxcfs.cgroups.snapshot import CpuUsage, IoSnapshot
from kube_lxcfs.views.cpuinfo import render_cpuinfo
from kube_lxcfs.views.cpus import visible_cpus
from kube_lxcfs.views.diskstats import render_diskstats
from kube_lxcfs.views.loadavg import Loads, advance, render_loadavg
from kube_lxcfs.views.pressure import render_pressure
from kube_lxcfs.views.stat import render_stat
from kube_lxcfs.views.sysfs_cpu import render_cpu_online, render_offline, render_online
from kube_lxcfs.views.uptime import render_uptime
from unit.captures import capture_body, cgroup_files

ALL2 = frozenset({0, 1})
ALL4 = frozenset({0, 1, 2, 3})


# --- which CPUs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpuset", "quota", "view", "visible"),
    [
        (None, None, "quota", (0, 1, 2, 3)),
        (frozenset({1, 2}), None, "quota", (1, 2)),
        (frozenset({1, 2, 3}), 1.5, "quota", (1, 2)),  # ceil(1.5) = 2, lowest ids
        (frozenset({1, 2, 3}), 1.5, "cpuset", (1, 2, 3)),
        (ALL4, 0.5, "quota", (0,)),
        (ALL4, 0.001, "quota", (0,)),
        (ALL4, 2.0, "quota", (0, 1)),  # exactly 2: no rounding up to 3
        (ALL4, 64.0, "quota", (0, 1, 2, 3)),
        (frozenset({7}), None, "quota", (7,)),  # a cpuset outside online is still shown
    ],
)
def test_visible_cpus(cpuset, quota, view, visible) -> None:
    assert visible_cpus(cpuset, quota, ALL4, view) == visible


# --- cpuinfo -------------------------------------------------------------------------------------


def test_cpuinfo_keeps_real_id_and_rewrites_counts() -> None:
    host = capture_body("host2.proc-cpuinfo.txt")
    out = render_cpuinfo(host, (1,)).decode()
    assert out.count("processor\t:") == 1
    assert "processor\t: 1\n" in out  # lxcfs would print 0
    assert "siblings\t: 1\n" in out
    assert "cpu cores\t: 1\n" in out
    assert "core id\t\t: 1\n" in out  # other fields of the real CPU stay
    assert out.endswith("\n\n")  # the block keeps its blank separator line


def test_cpuinfo_all_cpus_is_host_file() -> None:
    host = capture_body("host2.proc-cpuinfo.txt")
    assert render_cpuinfo(host, (0, 1)).decode() == host


def test_cpuinfo_quota_view_count() -> None:
    host = capture_body("host2.proc-cpuinfo.txt")
    visible = visible_cpus(ALL2, 0.5, ALL2)
    out = render_cpuinfo(host, visible).decode()
    assert [line for line in out.splitlines() if line.startswith("processor")] == ["processor\t: 0"]
    assert {line for line in out.splitlines() if line.startswith("cpu cores")} == {"cpu cores\t: 1"}


# --- stat ----------------------------------------------------------------------------------------


def _cpu_lines(out: bytes) -> list[str]:
    return [line for line in out.decode().splitlines() if line.startswith("cpu")]


def test_stat_v1_research_full() -> None:
    host = capture_body("host2.proc-stat.txt")
    files = cgroup_files("lxcfs503-researchfull")
    per_cpu = parse_cpuacct_usage_all(
        files["/sys/fs/cgroup/cpuacct/research-full/cpuacct.usage_all"]
    )
    usage = CpuUsage(5423870239, 167940574, per_cpu)
    out = render_stat(host, (1,), usage, clk_tck=100, uptime=0.0)
    # user 5423870239 ns = 542 ticks, system 167940574 ns = 16 ticks; host cpu1 is
    # "9851 0 2044 22023 473 0 114 12 0 0": busy 12494, so idle = 22023 + 12494 - 558
    assert _cpu_lines(out) == ["cpu  542 0 16 33959 0 0 0 0 0 0", "cpu1 542 0 16 33959 0 0 0 0 0 0"]
    rest = [line for line in out.decode().splitlines() if not line.startswith("cpu")]
    assert rest == [line for line in host.splitlines() if not line.startswith("cpu")]


def test_stat_v1_hidden_cpus_fold_into_visible() -> None:
    host = "cpu  0 0 0 0 0 0 0 0 0 0\ncpu0 100 0 0 900 0 0 0 0 0 0\ncpu1 100 0 0 900 0 0 0 0 0 0\n"
    usage = CpuUsage(3 * 10**9, 0, {0: CpuTimes(10**9, 0), 1: CpuTimes(2 * 10**9, 0)})
    out = render_stat(host, (0,), usage, clk_tck=100, uptime=0.0)
    # 300 ticks exceed the host's busy 100 on cpu0: idle stays the host's
    assert _cpu_lines(out) == ["cpu  300 0 0 900 0 0 0 0 0 0", "cpu0 300 0 0 900 0 0 0 0 0 0"]


def test_stat_v2_spread_and_wall_idle() -> None:
    host = capture_body("real/proc-stat.head", "v2")
    usage = CpuUsage(1_510_000_000, 500_000_000)  # 151 and 50 ticks
    out = render_stat(host, (1, 2), usage, clk_tck=100, uptime=100.0)
    assert _cpu_lines(out) == [
        "cpu  151 0 50 19799 0 0 0 0 0 0",
        "cpu1 76 0 25 9899 0 0 0 0 0 0",
        "cpu2 75 0 25 9900 0 0 0 0 0 0",
    ]
    for line in _cpu_lines(out)[1:]:
        user, _, system, idle = (int(v) for v in line.split()[1:5])
        assert user + system + idle == 100 * 100  # busy + idle = wall time


def test_stat_root_cgroup_copies_host_lines_of_visible_cpus() -> None:
    host = capture_body("host2.proc-stat.txt")
    out = render_stat(host, (0, 1), None, clk_tck=100, uptime=0.0)
    assert out.decode() == host


# --- /sys/devices/system/cpu ---------------------------------------------------------------------


def test_sys_online_offline() -> None:
    possible = frozenset(range(4))
    assert render_online((1, 2)) == b"1-2\n"
    assert render_offline(possible, (1, 2)) == b"0,3\n"
    assert render_offline(possible, (0, 1, 2, 3)) == b"\n"
    assert render_cpu_online(0, (1, 2)) == b"0\n"
    assert render_cpu_online(2, (1, 2)) == b"1\n"


# --- uptime, loadavg -----------------------------------------------------------------------------


def test_uptime_age_of_init_and_idle() -> None:
    # now 1000 s after boot; init started at 50000 ticks = 500 s; used 100 s on 2 CPUs
    assert render_uptime(1000.0, 50000, 100, 100 * 10**9, 2) == b"500.00 900.00\n"
    assert render_uptime(1000.0, 50000, 100, None, 1) == b"500.00 500.00\n"
    assert render_uptime(1000.0, 50000, 100, 10**13, 1) == b"500.00 0.00\n"


def test_loadavg_kernel_arithmetic() -> None:
    one = advance(Loads(), running=1, total=3, last_pid=42)
    # after one 5-second step: 1 - exp(-5/60) = 0.080, 1 - exp(-5/300) = 0.0165,
    # 1 - exp(-5/900) = 0.0055, each shown rounded to two decimals
    assert render_loadavg(one) == b"0.08 0.02 0.01 1/3 42\n"
    steady = advance(Loads(), running=2, total=5, last_pid=7, steps=2000)
    assert render_loadavg(steady) == b"2.00 2.00 2.00 2/5 7\n"
    decayed = advance(steady, running=0, total=5, last_pid=7, steps=12)  # one minute
    assert render_loadavg(decayed).startswith(b"0.73 ")  # 2 * exp(-1) = 0.74 (fixed point)


def test_loadavg_first_read_is_zero() -> None:
    assert render_loadavg(Loads(0, 0, 0, 0, 1, 123)) == b"0.00 0.00 0.00 0/1 123\n"


# --- diskstats, pressure -------------------------------------------------------------------------


def test_diskstats_v2_counters_on_host_devices() -> None:
    host = capture_body("host2.proc-diskstats.txt")
    io = IoSnapshot("/test", {(254, 0): IoCounters(1024 * 512, 2048 * 512, 10, 20, 0, 3)})
    out = render_diskstats(host, io).decode()
    # the host line has 17 numbers; ours too, with the cgroup's counts
    assert out == " 254       0 vda 10 0 1024 0 20 0 2048 0 0 0 0 3 0 0 0 0 0\n"


def test_diskstats_drops_idle_devices_and_root_is_host() -> None:
    host = capture_body("host2.proc-diskstats.txt")
    assert render_diskstats(host, IoSnapshot("/c", {(254, 0): IoCounters()})) == b""
    assert render_diskstats(host, None) == host.encode()


def test_pressure_own_or_host() -> None:
    host = capture_body("host2.proc-pressure-cpu.txt")
    own = (
        "some avg10=1.00 avg60=0.50 avg300=0.10 total=123\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    )
    assert render_pressure(host, own) == own.encode()
    assert render_pressure(host, None) == host.encode()


@given(
    cpuset=st.one_of(st.none(), st.frozensets(st.integers(0, 7), max_size=8)),
    quota=st.one_of(st.none(), st.floats(0.01, 16.0)),
    view=st.sampled_from(["quota", "cpuset"]),
)
def test_visible_cpus_invariants(cpuset, quota, view) -> None:
    online = frozenset(range(8))
    visible = visible_cpus(cpuset, quota, online, view)
    assert visible
    assert list(visible) == sorted(set(visible))
    if cpuset:
        assert set(visible) <= cpuset
    if view == "quota" and quota is not None:
        assert len(visible) <= max(1, math.ceil(quota))


@given(
    user=st.integers(0, 10**13),
    system=st.integers(0, 10**13),
    cpus=st.lists(st.integers(0, 3), min_size=1, max_size=4, unique=True),
    uptime=st.floats(0, 10**6),
)
def test_stat_v2_lines_add_up(user: int, system: int, cpus: list[int], uptime: float) -> None:
    visible = tuple(sorted(cpus))
    out = render_stat(HOST_STAT_4, visible, CpuUsage(user, system), clk_tck=100, uptime=uptime)
    lines = [line.split() for line in out.decode().splitlines() if line.startswith("cpu")]
    assert [line[0] for line in lines] == ["cpu"] + [f"cpu{c}" for c in visible]
    per_cpu = [[int(v) for v in line[1:]] for line in lines[1:]]
    assert [int(v) for v in lines[0][1:]] == [sum(col) for col in zip(*per_cpu, strict=True)]
    assert sum(v[0] for v in per_cpu) == int(user * 100 / 1e9)
    assert sum(v[2] for v in per_cpu) == int(system * 100 / 1e9)
    for values in per_cpu:
        assert values[3] == max(0, int(uptime * 100) - values[0] - values[2])


HOST_STAT_4 = (
    "cpu  4 0 4 4 0 0 0 0 0 0\n"
    + "".join(f"cpu{i} 1 0 1 1 0 0 0 0 0 0\n" for i in range(4))
    + "intr 1\nctxt 2\n"
)
