"""meminfo and swaps over the recorded v1 captures; expected values computed by hand."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kube_lxcfs.cgroups.parse import parse_flat_keyed, parse_meminfo_kb
from kube_lxcfs.cgroups.reader import V1_STAT_KEYS, memory_stat_from
from kube_lxcfs.cgroups.snapshot import MemorySnapshot, MemoryStat
from kube_lxcfs.views.meminfo import kb_line, render_meminfo
from kube_lxcfs.views.swaps import SWAPS_HEADER, render_swaps
from unit.captures import capture_body, cgroup_files

MEM = "/sys/fs/cgroup/memory/research-full/"


def research_full(scenario: str) -> MemorySnapshot:
    files = cgroup_files(scenario)
    limit = int(files[MEM + "memory.limit_in_bytes"])
    usage = int(files[MEM + "memory.usage_in_bytes"])
    memsw_limit = int(files[MEM + "memory.memsw.limit_in_bytes"])
    memsw_usage = int(files[MEM + "memory.memsw.usage_in_bytes"])
    stat = memory_stat_from(parse_flat_keyed(files[MEM + "memory.stat"]), V1_STAT_KEYS)
    return MemorySnapshot(
        "/research-full", limit, usage, stat, memsw_limit - limit, memsw_usage - usage, 60
    )


def values(text: bytes) -> dict[str, int]:
    return parse_meminfo_kb(text.decode())


def test_research_full_v1() -> None:
    host = capture_body("host2.proc-meminfo.txt")
    out = render_meminfo(host, research_full("lxcfs503-researchfull"))
    v = values(out)
    # limit 134217728 B; usage 66686976 B = 65124 kB
    assert v["MemTotal"] == 131072
    assert v["MemFree"] == 131072 - 65124
    # + total_active_file 8192 + total_inactive_file 90112 = 96 kB
    assert v["MemAvailable"] == 131072 - 65124 + 96
    assert v["Cached"] == 16875520 // 1024 == 16480
    assert v["Buffers"] == 0
    assert v["Active"] == (8192 + 8192) // 1024
    assert v["Inactive"] == (66064384 + 90112) // 1024
    assert v["Active(anon)"] == 8
    assert v["Inactive(anon)"] == 64516
    assert v["Dirty"] == 72
    assert v["AnonPages"] == (8192 + 66064384 - 16777216) // 1024
    assert v["Shmem"] == 16384
    assert v["Slab"] == v["SReclaimable"] == v["SUnreclaim"] == 0
    # host2 has no swap: swap stays 0 whatever memsw allows
    assert v["SwapTotal"] == v["SwapFree"] == 0


def test_keeps_every_host_key_in_order_and_format() -> None:
    host = capture_body("host2.proc-meminfo.txt")
    out = render_meminfo(host, research_full("lxcfs503-researchfull")).decode()
    host_keys = [line.split(":")[0] for line in host.splitlines()]
    assert [line.split(":")[0] for line in out.splitlines()] == host_keys
    assert "MemTotal:         131072 kB" in out.splitlines()
    # untouched lines are the host's bytes
    for key in ("Hugepagesize", "HugePages_Total", "CommitLimit", "DirectMap1G", "VmallocTotal"):
        host_line = next(line for line in host.splitlines() if line.startswith(key + ":"))
        assert host_line in out.splitlines()


def test_kb_line_format() -> None:
    assert kb_line("MemTotal", 131072) == "MemTotal:         131072 kB"
    assert kb_line("Inactive(file)", 28) == "Inactive(file):       28 kB"
    assert kb_line("SwapTotal", 0) == "SwapTotal:             0 kB"


def test_swap_v1_is_memsw_minus_memory() -> None:
    host = capture_body("host-swap.proc-meminfo.txt")  # SwapTotal 262140 kB
    mem = research_full("lxcfs503-researchfull-swap")
    v = values(render_meminfo(host, mem))
    # memsw 201326592 - limit 134217728 = 64 MiB of swap
    assert v["SwapTotal"] == 65536
    # memsw.usage 179134464 - usage 131702784 = 47431680 B = 46320 kB
    assert v["SwapFree"] == 65536 - 46320
    swaps = render_swaps(host, capture_body("host-swap.proc-swaps.txt"), mem).decode()
    assert swaps == SWAPS_HEADER + "none" + " " * 36 + "virtual\t\t65536\t46320\t0\n"


def test_swap_disabled_option() -> None:
    host = capture_body("host-swap.proc-meminfo.txt")
    mem = research_full("lxcfs503-researchfull-swap")
    v = values(render_meminfo(host, mem, swap=False))
    assert v["SwapTotal"] == v["SwapFree"] == 0
    assert render_swaps(host, "", mem, swap=False).decode() == SWAPS_HEADER
    root = values(render_meminfo(host, None, swap=False))
    assert root["SwapTotal"] == 0
    assert root["MemTotal"] == 24684084


def test_swap_unlimited_is_host_swap_and_clamped() -> None:
    host = capture_body("host-swap.proc-meminfo.txt")
    mem = MemorySnapshot("/c", 256 << 20, 0, MemoryStat(), None, 0)
    assert values(render_meminfo(host, mem))["SwapTotal"] == 262140
    huge = MemorySnapshot("/c", 256 << 20, 0, MemoryStat(), 1 << 40, 0)
    assert values(render_meminfo(host, huge))["SwapTotal"] == 262140


def test_swappiness_zero_caps_swap_at_usage() -> None:
    host = capture_body("host-swap.proc-meminfo.txt")
    mem = MemorySnapshot("/c", 256 << 20, 0, MemoryStat(), 64 << 20, 1 << 20, swappiness=0)
    v = values(render_meminfo(host, mem))
    assert v["SwapTotal"] == 1024
    assert v["SwapFree"] == 0


def test_no_swap_accounting_shows_none() -> None:
    host = capture_body("host-swap.proc-meminfo.txt")
    mem = MemorySnapshot("/c", 256 << 20, 0, MemoryStat(), None, None)
    v = values(render_meminfo(host, mem))
    assert v["SwapTotal"] == v["SwapFree"] == 0


def test_saturation_never_wraps() -> None:
    host = capture_body("host-swap.proc-meminfo.txt")
    # usage above the limit (possible for a moment) and swap usage above swap limit
    mem = MemorySnapshot("/c", 64 << 20, 80 << 20, MemoryStat(shmem=10 << 20), 1 << 20, 8 << 20)
    v = values(render_meminfo(host, mem))
    assert v["MemFree"] == 0
    assert v["SwapFree"] == 0
    assert v["AnonPages"] == 0
    assert v["MemAvailable"] == 0


def test_memtotal_never_zero_nor_above_host() -> None:
    host = capture_body("host2.proc-meminfo.txt")
    tiny = MemorySnapshot("/c", 100, 0, MemoryStat(), None, None)
    assert values(render_meminfo(host, tiny))["MemTotal"] == 1
    big = MemorySnapshot("/c", 1 << 50, 0, MemoryStat(), None, None)
    v = values(render_meminfo(host, big))
    assert v["MemTotal"] == 24684084
    # an unlimited cgroup never sees more free memory than the host has
    assert v["MemFree"] == 22943096
    assert v["MemAvailable"] <= 24112872


def test_v2_slab_and_mapped_and_zswap() -> None:
    host = capture_body("host2.proc-meminfo.txt")
    stat = MemoryStat(
        file=4 << 20, active_file=1 << 20, inactive_file=2 << 20, file_mapped=3 << 20,
        slab_reclaimable=5 << 20, slab_unreclaimable=6 << 20, zswap=7 << 20, zswapped=8 << 20,
    )  # fmt: skip
    mem = MemorySnapshot("/test", 256 << 20, 100 << 20, stat, None, 0)
    v = values(render_meminfo(host, mem))
    assert v["MemFree"] == 156 * 1024
    assert v["MemAvailable"] == (156 + 1 + 2 + 5) * 1024
    assert v["Mapped"] == 3 * 1024
    assert v["Slab"] == 11 * 1024
    assert v["SReclaimable"] == 5 * 1024
    assert v["Zswap"] == 7 * 1024
    assert v["Zswapped"] == 8 * 1024


def test_root_cgroup_is_host_file() -> None:
    host = capture_body("host2.proc-meminfo.txt")
    assert render_meminfo(host, None) == host.encode()


_bytes = st.integers(min_value=0, max_value=1 << 45)


_maybe = st.one_of(st.none(), _bytes)


@given(
    memory=st.tuples(_maybe, _bytes),
    lru=st.tuples(_bytes, _bytes, _bytes, _bytes, _bytes),
    swap=st.tuples(_maybe, _maybe, st.one_of(st.none(), st.integers(0, 100))),
)
def test_meminfo_invariants(
    memory: tuple[int | None, int],
    lru: tuple[int, int, int, int, int],
    swap: tuple[int | None, int | None, int | None],
) -> None:
    host = capture_body("host-swap.proc-meminfo.txt")
    host_v = parse_meminfo_kb(host)
    stat = MemoryStat(
        active_file=lru[0], inactive_file=lru[1], active_anon=lru[2], inactive_anon=lru[3],
        shmem=lru[4],
    )  # fmt: skip
    mem = MemorySnapshot("/c", memory[0], memory[1], stat, *swap)
    out = render_meminfo(host, mem).decode()
    v = parse_meminfo_kb(out)
    assert [line.split(":")[0] for line in out.splitlines()] == [
        line.split(":")[0] for line in host.splitlines()
    ]
    assert 1 <= v["MemTotal"] <= host_v["MemTotal"]
    assert 0 <= v["MemFree"] <= min(v["MemTotal"], host_v["MemFree"])
    assert v["MemFree"] <= v["MemAvailable"] <= v["MemTotal"]
    assert 0 <= v["SwapFree"] <= v["SwapTotal"] <= host_v["SwapTotal"]
    assert v["AnonPages"] >= 0
    swaps = render_swaps(host, "", mem).decode().splitlines()
    if v["SwapTotal"]:
        size, used = (int(x) for x in swaps[1].split()[2:4])
        assert (size, size - used) == (v["SwapTotal"], v["SwapFree"])
    else:
        assert len(swaps) == 1
