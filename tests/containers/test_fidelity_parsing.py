"""The parsers of the fidelity matrix, on recorded program output (pure)."""

from __future__ import annotations

import pytest
from fidelity import ROWS, Host, measure_row, uptime_minutes

HOST = Host(cpus=2, memtotal_kb=24684092, uptime_s=1000.0, cpu_cores="2")
ROW = {row.key: row for row in ROWS}


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("16 min", 16), ("1:05", 65), ("2 days, 1:05", 2945), ("1 day, 5 min", 1445), ("0 min", 0)],
)
def test_busybox_uptime_formats(text: str, minutes: int) -> None:
    assert uptime_minutes(text) == minutes


def test_busybox_uptime_must_be_the_hosts() -> None:
    line = " 00:13:22 up 16 min,  0 users,  load average: 5.44, 2.91, 1.23\n"
    assert measure_row(ROW["busybox-uptime"], line, HOST).ok
    young = " 00:13:22 up 0 min,  0 users,  load average: 0.00, 0.00, 0.00\n"
    assert not measure_row(ROW["busybox-uptime"], young, HOST).ok


def test_htop_meters_with_numbered_and_offline_labels() -> None:
    ours = "\x1b[2;3H  CPU\x1b[39m[0.0%] Tasks CPU[offline] Load Mem[|2.16M/256M]"
    verdict = measure_row(ROW["htop-cpus"], ours, HOST)
    assert verdict.ok
    assert verdict.shown == "1 CPU meter; the other host CPUs shown 'offline'"
    lxcfs = "    0[0.0%] Tasks: 7  1[0.0%] Load average Mem[|2.50M/256M]"
    verdict = measure_row(ROW["htop-cpus"], lxcfs, HOST)
    assert not verdict.ok
    assert verdict.shown == "a meter for every host CPU"
    assert measure_row(ROW["htop-memory"], ours, HOST).shown == "256M"


def test_cpu_cores_of_the_host_are_named() -> None:
    assert measure_row(ROW["cpuinfo-cores"], "cpu cores\t: 1\n", HOST).ok
    verdict = measure_row(ROW["cpuinfo-cores"], "cpu cores\t: 2\ncpu cores\t: 2\n", HOST)
    assert (verdict.ok, verdict.shown) == (False, "the host CPU's")


def test_free_memory_must_be_within_the_limit() -> None:
    assert measure_row(ROW["node-freemem"], "253595648\n", HOST).ok
    assert not measure_row(ROW["node-freemem"], "25000000000\n", HOST).ok
