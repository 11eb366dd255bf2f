"""Parsers: table cases from real files, malformed input, and hypothesis round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kube_lxcfs.cgroups.errors import ParseError
from kube_lxcfs.cgroups.parse import (
    CgroupEntry,
    CpuMax,
    CpuTimes,
    IoCounters,
    format_cpu_list,
    parse_blkio_recursive,
    parse_cpu_list,
    parse_cpu_max,
    parse_cpuacct_usage_all,
    parse_cpuacct_usage_percpu,
    parse_flat_keyed,
    parse_io_stat,
    parse_meminfo_kb,
    parse_pid_stat_starttime,
    parse_pid_stat_state,
    parse_pid_status,
    parse_pressure,
    parse_proc_cgroup,
    parse_v1_limit,
    parse_v2_max,
)
from kube_lxcfs.mountinfo import MountinfoError, parse_mountinfo
from unit.captures import capture_body

# --- cpu lists (the cases of lxcfs's cpusetrange test, plus ours) --------------------------------


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("1-3,5", {1, 2, 3, 5}),
        ("1,4-5", {1, 4, 5}),
        ("", set()),
        ("\n", set()),
        ("0", {0}),
        ("0-1\n", {0, 1}),
        ("0-3,8,10-11", {0, 1, 2, 3, 8, 10, 11}),
    ],
)
def test_cpu_list_cases(text: str, cpus: set[int]) -> None:
    assert parse_cpu_list(text) == cpus


@pytest.mark.parametrize("text", ["a", "1-", "3-1", "1,,2", "-1", "1-2-3"])
def test_cpu_list_malformed(text: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_cpu_list(text)
    assert text.strip() in str(info.value)


@given(st.frozensets(st.integers(min_value=0, max_value=4096), max_size=64))
def test_cpu_list_round_trip(cpus: frozenset[int]) -> None:
    text = format_cpu_list(cpus)
    assert parse_cpu_list(text) == cpus
    assert " " not in text


def test_format_cpu_list_is_compact() -> None:
    assert format_cpu_list({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert format_cpu_list(set()) == ""


# --- mountinfo -----------------------------------------------------------------------------------

THIS_MACHINE = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def test_mountinfo_fields() -> None:
    entries = parse_mountinfo(THIS_MACHINE)
    assert len(entries) == 4
    cpu = entries[1]
    assert (cpu.mount_id, cpu.parent_id, cpu.dev) == (32, 31, (0, 29))
    assert (cpu.root, cpu.mount_point, cpu.fstype, cpu.source) == (
        "/",
        "/sys/fs/cgroup/cpu",
        "cgroup",
        "cgroup",
    )
    assert cpu.super_options == ("rw", "cpu")


def test_mountinfo_optional_fields_and_escapes() -> None:
    line = "36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=1"
    (entry,) = parse_mountinfo(line)
    assert entry.mount_point == "/mnt two"
    assert entry.root == "/mnt1"
    assert entry.fstype == "ext3"
    assert entry.super_options == ("rw", "errors=1")


def test_mountinfo_malformed() -> None:
    with pytest.raises(MountinfoError):
        parse_mountinfo("31 23 0:28 / /sys/fs/cgroup rw,relatime tmpfs")


_path_chars = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="\\"),
    min_size=1,
    max_size=20,
)


@given(
    mid=st.integers(0, 10**6),
    pid=st.integers(0, 10**6),
    point=st.lists(_path_chars, min_size=1, max_size=4),
    optional=st.lists(
        st.sampled_from(["shared:1", "master:3", "propagate_from:2", "unbindable"]), max_size=3
    ),
    fstype=st.sampled_from(["cgroup", "cgroup2", "tmpfs", "ext4"]),
)
def test_mountinfo_generated(
    mid: int, pid: int, point: list[str], optional: list[str], fstype: str
) -> None:
    mount_point = "/" + "/".join(p.replace(" ", "") for p in point)
    line = " ".join(
        [str(mid), str(pid), "0:1", "/", mount_point, "rw", *optional, "-", fstype, "src", "rw,x"]
    )
    (entry,) = parse_mountinfo(line)
    assert entry.mount_point == mount_point
    assert entry.fstype == fstype
    assert entry.super_options == ("rw", "x")


# --- /proc/<pid>/cgroup --------------------------------------------------------------------------


def test_proc_cgroup_v1_and_unified() -> None:
    text = "9:name=systemd:/\n4:memory:/research-full\n1:cpu,cpuacct:/a:b\n0::/init.scope\n"
    assert parse_proc_cgroup(text) == (
        CgroupEntry(9, ("name=systemd",), "/"),
        CgroupEntry(4, ("memory",), "/research-full"),
        CgroupEntry(1, ("cpu", "cpuacct"), "/a:b"),
        CgroupEntry(0, (), "/init.scope"),
    )


@pytest.mark.parametrize("splitter", ["\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028"])
def test_proc_cgroup_breaks_lines_at_newline_only(splitter: str) -> None:
    """The kernel refuses only ``\n`` in a cgroup name (docs/security.md)."""
    text = f"4:memory:/x{splitter}4:memory:/victim\n0::/\n"
    assert parse_proc_cgroup(text)[0] == CgroupEntry(
        4, ("memory",), f"/x{splitter}4:memory:/victim"
    )
    assert len(parse_proc_cgroup(text)) == 2


def test_mountinfo_breaks_lines_at_newline_only() -> None:
    line = "36 25 0:30 / /run/odd\x0bname rw,nosuid - tmpfs tmpfs rw\n"
    (entry,) = parse_mountinfo(line)
    assert entry.mount_point == "/run/odd\x0bname"


@pytest.mark.parametrize("text", ["memory:/x", "x:memory:/a", "4:memory:relative"])
def test_proc_cgroup_malformed(text: str) -> None:
    with pytest.raises(ParseError):
        parse_proc_cgroup(text)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 20),
            st.lists(
                st.sampled_from(["cpu", "cpuacct", "memory", "name=systemd", "pids"]),
                max_size=3,
                unique=True,
            ),
            st.lists(
                st.text(
                    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/\n"),
                    min_size=1,
                    max_size=8,
                ),
                max_size=4,
            ),
        ),
        max_size=8,
    )
)
def test_proc_cgroup_generated(lines: list[tuple[int, list[str], list[str]]]) -> None:
    text = "".join(f"{h}:{','.join(c)}:/{'/'.join(p)}\n" for h, c, p in lines)
    parsed = parse_proc_cgroup(text)
    assert [(e.hierarchy_id, list(e.controllers), e.path) for e in parsed] == [
        (h, c, "/" + "/".join(p)) for h, c, p in lines
    ]


# --- flat keyed files, limits, cpu.max -----------------------------------------------------------


def test_memory_stat_from_capture() -> None:
    values = parse_flat_keyed("cache 16875520\nrss 49295360\ntotal_shmem 16777216\n")
    assert values == {"cache": 16875520, "rss": 49295360, "total_shmem": 16777216}


def test_flat_keyed_malformed_names_line() -> None:
    with pytest.raises(ParseError, match="total_rss abc"):
        parse_flat_keyed("cache 1\ntotal_rss abc\n", "memory.stat")


@given(st.dictionaries(st.from_regex(r"[a-z_]{1,20}", fullmatch=True), st.integers(0, 2**64)))
def test_flat_keyed_generated(values: dict[str, int]) -> None:
    text = "".join(f"{k} {v}\n" for k, v in values.items())
    assert parse_flat_keyed(text) == values


def test_v1_limit_sentinels() -> None:
    assert parse_v1_limit("9223372036854771712\n") is None  # 4 KiB pages
    assert parse_v1_limit("9223372036854710272\n") is None  # 64 KiB pages
    assert parse_v1_limit("134217728\n") == 134217728
    with pytest.raises(ParseError):
        parse_v1_limit("")


def test_v2_max() -> None:
    assert parse_v2_max("max\n") is None
    assert parse_v2_max("268435456\n") == 268435456
    with pytest.raises(ParseError):
        parse_v2_max("lots")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("max 100000\n", CpuMax(None, 100000)), ("150000 100000\n", CpuMax(150000, 100000))],
)
def test_cpu_max(text: str, parsed: CpuMax) -> None:
    assert parse_cpu_max(text) == parsed


@pytest.mark.parametrize("text", ["", "max", "1 2 3", "x 100000", "0 100000", "100 0"])
def test_cpu_max_malformed(text: str) -> None:
    with pytest.raises(ParseError):
        parse_cpu_max(text)


@given(st.one_of(st.none(), st.integers(1, 10**9)), st.integers(1, 10**7))
def test_cpu_max_generated(quota: int | None, period: int) -> None:
    text = f"{'max' if quota is None else quota} {period}\n"
    assert parse_cpu_max(text) == CpuMax(quota, period)


# --- cpuacct, io, pressure -----------------------------------------------------------------------


def test_cpuacct_usage_all_from_capture() -> None:
    text = "cpu user system\n0 0 0\n1 5423870239 167940574\n"
    assert parse_cpuacct_usage_all(text) == {0: CpuTimes(0, 0), 1: CpuTimes(5423870239, 167940574)}
    with pytest.raises(ParseError):
        parse_cpuacct_usage_all("0 0 0\n")


def test_cpuacct_usage_percpu_from_capture() -> None:
    assert parse_cpuacct_usage_percpu("0 5195999116 \n") == (0, 5195999116)


def test_io_stat() -> None:
    text = (
        "8:0 rbytes=1024 wbytes=4096 rios=2 wios=1 dbytes=0 dios=0\n"
        "253:1 rbytes=0 wbytes=512 rios=0 wios=1 dbytes=0 dios=0 cost.usage=5\n"
    )
    parsed = parse_io_stat(text)
    assert parsed[(8, 0)] == IoCounters(1024, 4096, 2, 1, 0, 0)
    assert parsed[(253, 1)].wbytes == 512
    with pytest.raises(ParseError):
        parse_io_stat("sda rbytes=1")


def test_blkio_throttle() -> None:
    text = (
        "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n"
        "8:0 Discard 0\n8:0 Total 12288\nTotal 12288\n"
    )
    assert parse_blkio_recursive(text) == {
        (8, 0): {
            "Read": 4096,
            "Write": 8192,
            "Sync": 0,
            "Async": 12288,
            "Discard": 0,
            "Total": 12288,
        }
    }
    assert parse_blkio_recursive("Total 0\n") == {}


def test_pressure_from_capture() -> None:
    parsed = parse_pressure(capture_body("host2.proc-pressure-cpu.txt"))
    assert "some" in parsed
    with pytest.raises(ParseError):
        parse_pressure("garbage\n")


# --- /proc/<pid> files, host meminfo -------------------------------------------------------------


def test_pid_status() -> None:
    text = "Name:\tsleep\nPid:\t42\nPPid:\t41\nNSpid:\t42\t1\n"
    status = parse_pid_status(text)
    assert status.ppid == 41
    assert status.nspid == (42, 1)


def test_pid_stat_with_odd_command() -> None:
    text = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 5678 1000 10"
    assert parse_pid_stat_starttime(text) == 5678
    assert parse_pid_stat_state(text) == "S"


def test_meminfo_kb_from_capture() -> None:
    values = parse_meminfo_kb(capture_body("host2.proc-meminfo.txt"))
    assert values["MemTotal"] == 24684084
    assert values["HugePages_Total"] == 0
    with pytest.raises(ParseError):
        parse_meminfo_kb("Foo: 1 kB\n")


@pytest.mark.parametrize(
    "text",
    ["a 1 2\n3\n", "a 1\nb\n", "a x\n", "a 1\nb 2 3\n", "a\n1\n"],
)
def test_flat_keyed_rejects_misshapen_lines(text: str) -> None:
    with pytest.raises(ParseError):
        parse_flat_keyed(text, "memory.stat")


def test_flat_keyed_fast_and_line_paths_agree() -> None:
    assert parse_flat_keyed("a 1\nb 2\n") == parse_flat_keyed("a 1\n\nb 2") == {"a": 1, "b": 2}
    assert parse_flat_keyed("") == {}
