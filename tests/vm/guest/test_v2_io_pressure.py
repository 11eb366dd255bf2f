"""diskstats from io.stat (with io.max and real I/O on a real disk) and PSI files on cgroup v2.

lxcfs 5.0.3 has no blkio controller on v2, so its diskstats is the host's file (#653), and
it serves no /proc/pressure at all; ours render both from the reader's cgroup.
"""

from __future__ import annotations

from pathlib import Path

from v2guest import (
    DATA_DISK,
    block_device_numbers,
    cgroup_dir,
    diskstats_devices,
    pressure_totals,
    read_as,
)

from kube_lxcfs.cgroups.transient import Limits, create_cgroup, unique_name
from support.fsdaemons import RunningFs

MiB = 1024 * 1024
SECTOR = 512


def name() -> str:
    return unique_name("kube-lxcfs-test-v2")


def io_stat(cg_dir: Path, device: str) -> dict[str, int]:
    for line in (cg_dir / "io.stat").read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == device:
            return {k: int(v) for k, v in (f.split("=") for f in fields[1:])}
    return {}


def test_diskstats_comes_from_io_stat_with_io_max(ours: RunningFs, lxcfs: RunningFs) -> None:
    device = block_device_numbers(DATA_DISK)
    with create_cgroup(name(), Limits()) as cg:
        directory = cgroup_dir(cg)
        (directory / "io.max").write_text(f"{device} wbps={64 * MiB} riops=2000")
        assert (directory / "io.max").read_text().split() == [
            device, "rbps=max", f"wbps={64 * MiB}", "riops=2000", "wiops=max",
        ]  # fmt: skip
        dd = ["dd", f"of={DATA_DISK}", "if=/dev/zero", "bs=64k", "count=48", "oflag=direct"]
        assert cg.run(dd).returncode == 0
        read = ["dd", f"if={DATA_DISK}", "of=/dev/null", "bs=64k", "count=16", "iflag=direct"]
        assert cg.run(read).returncode == 0
        counters = io_stat(directory, device)
        assert counters["wbytes"] >= 3 * MiB
        assert counters["rbytes"] >= 1 * MiB

        mine = diskstats_devices(read_as(ours, cg, "proc/diskstats"))
        vdb = mine[DATA_DISK.name]
        assert vdb[0] == counters["rios"]
        assert vdb[2] == counters["rbytes"] // SECTOR
        assert vdb[4] == counters["wios"]
        assert vdb[6] == counters["wbytes"] // SECTOR
        host = diskstats_devices(Path("/proc/diskstats").read_text())
        assert host["vda"][0] > mine.get("vda", [0])[0]  # the host's reads are not ours

        theirs = diskstats_devices(read_as(lxcfs, cg, "proc/diskstats"))
        assert set(theirs) == set(host)  # lxcfs: the host file, every device
        assert theirs["vda"][0] >= host["vda"][0]


def test_a_cgroup_without_io_shows_no_devices(ours: RunningFs) -> None:
    with create_cgroup(name()) as cg:
        mine = diskstats_devices(read_as(ours, cg, "proc/diskstats"))
        assert DATA_DISK.name not in mine


def test_pressure_files_are_the_cgroups(ours: RunningFs, lxcfs: RunningFs) -> None:
    with create_cgroup(name(), Limits.for_cpus(0.05)) as cg:
        directory = cgroup_dir(cg)
        burner = cg.popen(["sh", "-c", "while :; do :; done"])
        try:
            before = pressure_totals((directory / "cpu.pressure").read_text())
            # a 5 % quota throttles the burner: the cgroup's cpu pressure grows
            text = read_as(ours, cg, "proc/pressure/cpu")
            after = pressure_totals((directory / "cpu.pressure").read_text())
        finally:
            burner.kill()
            burner.wait()
        mine = pressure_totals(text)
        assert text.startswith("some avg10=")
        assert before["some"] <= mine["some"] <= after["some"]
        assert after["some"] > 0
        for resource in ("io", "memory"):
            own = read_as(ours, cg, f"proc/pressure/{resource}")
            assert set(pressure_totals(own)) == {"some", "full"}
            assert (
                pressure_totals(own)["some"]
                <= pressure_totals(Path(f"/proc/pressure/{resource}").read_text())["some"]
            )
        assert not lxcfs.path("proc/pressure").exists()  # lxcfs 5.0.3 has no PSI files
