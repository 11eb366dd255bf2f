"""read_text on real kernel files of many records, larger than one kernel page.

/proc/self/mountinfo and /proc/cpuinfo hand over whole records, a kernel page at a time: a
read ends short before the record that does not fit, and that is not the end. read_text
once took it for the end; on the node tier the agent's mountinfo (its Bidirectional
/var/lib volume carries the node's pod mounts) lost its cgroup mounts that way, and every
container was shown the host. Here a private mount namespace with many stacked tmpfs
mounts makes a mountinfo of more than 64 KiB.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root"),
]

UNSHARE = ("unshare", "--mount", "--propagation", "private")
CHILD = textwrap.dedent(
    """
    import ctypes, os, sys
    from kube_lxcfs.cgroups.reader import read_text

    libc = ctypes.CDLL(None, use_errno=True)
    target = sys.argv[1].encode()
    for _ in range(int(sys.argv[2])):
        if libc.mount(b"kube-lxcfs-test", target, b"tmpfs", 0, b"size=4k") != 0:
            raise OSError(ctypes.get_errno(), "mount")
    with open("/proc/self/mountinfo") as f:
        expected = f.read()
    got = read_text("/proc/self/mountinfo")
    print(len(expected), len(got), got == expected)
    """
)


def test_a_mountinfo_larger_than_one_read_is_read_whole(tmp_path: Path) -> None:
    target = tmp_path / "stack"
    target.mkdir()
    done = subprocess.run(
        [*UNSHARE, sys.executable, "-c", CHILD, str(target), "700"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 0, done.stderr
    expected, got, equal = done.stdout.split()
    assert int(expected) > 65536, "the mountinfo must be larger than one read"
    assert (got, equal) == (expected, "True"), done.stdout


def test_cpuinfo_and_a_one_record_file_are_read_whole() -> None:
    from kube_lxcfs.cgroups.reader import read_text

    for path in ("/proc/cpuinfo", "/proc/meminfo", "/proc/self/cgroup"):
        with open(path) as f:
            assert read_text(path) == f.read(), path
