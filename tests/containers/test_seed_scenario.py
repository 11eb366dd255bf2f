"""The seed's scenario: a container limited to cpu 2 / memory 4Gi sees a 2-CPU, 4 GiB machine.

On a host with fewer CPUs than the limit the quota cannot show more CPUs than exist, so the
scenario also runs with a quota of 1 CPU, which must show exactly 1 everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from runc_harness import Resources, Runc

GiB = 1024**3
SCRIPT = """
grep "cpu cores" /proc/cpuinfo | uniq
grep -c processor /proc/cpuinfo
grep MemTotal /proc/meminfo
"""


@pytest.mark.parametrize("cpus", [2, 1])
@pytest.mark.parametrize("rootfs", ["tiny_rootfs", "full_rootfs"])
def test_cpu_and_memory_limits_are_what_the_container_sees(
    cpus: int,
    rootfs: str,
    request: pytest.FixtureRequest,
    runc: Runc,
    fs_mount_dir: Path,
) -> None:
    fs_implementation = request.getfixturevalue("fs_implementation")
    host_cpus = len(os.sched_getaffinity(0))
    visible = min(cpus, host_cpus)
    if fs_implementation == "lxcfs" and visible < host_cpus:
        request.applymarker(
            pytest.mark.xfail(
                strict=True, reason="lxcfs copies 'cpu cores' of the host CPU unchanged"
            )
        )
    proc = runc.run(
        request.getfixturevalue(rootfs),
        ["sh", "-c", SCRIPT],
        resources=Resources.of(cpus=cpus, memory=4 * GiB),
        mount_dir=fs_mount_dir,
    )
    assert proc.returncode == 0, proc.stderr
    cores, processors, memtotal = proc.stdout.splitlines()
    assert cores.split() == ["cpu", "cores", ":", str(visible)]
    assert processors == str(visible)
    assert memtotal.split() == ["MemTotal:", "4194304", "kB"]
