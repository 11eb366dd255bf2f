"""The table of virtual files: every row is served, and renders from the reader's cgroup.

The walk reads every row through the tree for a process of a limited cgroup in
its own pid namespace on the fake host.  A row whose renderer cannot find its
data (a second, hand-kept map somewhere, as the pressure resources once had)
serves the host's file and logs it: the walk fails on either.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from kube_lxcfs import files, table
from kube_lxcfs.files import FILES, INJECTED_FILES, KNOWN_DIRECTORIES, Scope
from kube_lxcfs.render_cache import CachePolicy
from kube_lxcfs.tree import ProcTree
from unit.fakehost import PRESSURE_PATHS, FakeHost

BUSY_PSI = (
    "some avg10=5.00 avg60=1.00 avg300=0.20 total=777\n"
    "full avg10=1.00 avg60=0.50 avg300=0.10 total=333\n"
)
READER, INIT = 301, 300


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    h = FakeHost(tmp_path)
    h.cgroup_files("/walk", {
        "memory.max": "268435456\n",
        "memory.current": "71303168\n",
        "memory.stat": "anon 67108864\nfile 1048576\nactive_file 524288\n",
        "memory.swap.max": "67108864\n",
        "memory.swap.current": "1048576\n",
        "cpu.max": "150000 100000\n",
        "cpu.stat": "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\n",
        "cpuset.cpus.effective": "0-3\n",
        "io.stat": "254:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
        "cgroup.procs": f"{INIT}\n{READER}\n",
        **{p.removeprefix("/proc/pressure/") + ".pressure": BUSY_PSI for p in PRESSURE_PATHS},
    })  # fmt: skip
    h.process(INIT, "/walk", ns="pid:[9]", nspid=(INIT, 1), ppid=1, start_ticks=60000)
    h.process(READER, "/walk", ns="pid:[9]", nspid=(READER, 2), ppid=INIT)
    return h


def concrete(path: str) -> str:
    return path.replace("{n}", "3")  # the reader sees CPUs 0-1 (ceil 1.5): cpu3 is not visible


RENDERED = [f for f in FILES if f.scope is not Scope.HOST]


@pytest.mark.parametrize("file", RENDERED, ids=[f.path for f in RENDERED])
def test_every_row_renders_from_the_readers_cgroup(
    host: FakeHost, file: files.VirtualFile, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kube_lxcfs.tree")
    tree = ProcTree(host.options(), cache=CachePolicy.off())
    path = concrete(file.path)
    assert tree.lookup(path) is not None, f"{path} is in the table but not in the tree"
    ours = tree.read(path, READER)
    assert not caplog.records, f"{path} fell back to the host's file: {caplog.text}"
    host_file = tree.context.host_bytes(path)
    assert ours != host_file, f"{path} shows the host's content, not the cgroup's"


def test_every_row_names_a_binding_and_every_binding_a_row() -> None:
    named = {f.render for f in FILES if f.render is not None}
    assert named == set(table.BINDINGS)


def test_listing_and_lookup_follow_the_table(host: FakeHost) -> None:
    tree = ProcTree(host.options())
    for f in FILES:
        path = concrete(f.path)
        parent, name = path.rsplit("/", 1)
        assert name in tree.listdir(parent), path
        assert tree.lookup(path) is not None, path
    for d in files.DIRECTORIES:
        assert tree.lookup(d.path).kind == "dir"


def test_host_file_rows_are_absent_where_the_host_has_none(host: FakeHost) -> None:
    for path in PRESSURE_PATHS:
        (host.root / path.lstrip("/")).unlink()
    tree = ProcTree(host.options())
    for path in PRESSURE_PATHS:
        assert tree.lookup(path) is None
    assert tree.lookup("/proc/pressure") is None
    assert "pressure" not in tree.listdir("/proc")


def test_disabling_an_option_serves_the_hosts_file(host: FakeHost) -> None:
    tree = ProcTree(host.options(loadavg=False))
    assert tree.read("/proc/loadavg", READER) == (host.proc / "loadavg").read_bytes()


def test_the_injected_list_is_the_tables() -> None:
    assert INJECTED_FILES == (
        "proc/cpuinfo", "proc/diskstats", "proc/meminfo", "proc/stat", "proc/swaps",
        "proc/uptime", "proc/loadavg", "sys/devices/system/cpu/",
    )  # fmt: skip
    assert {"proc/pressure", "sys/devices/system", "sys/devices/system/cpu"} <= KNOWN_DIRECTORIES
