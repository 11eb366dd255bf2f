"""The VM harness itself: a command's output, exit code and result files come back, and no
qemu outlives the process that started it, however that process ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import vmharness
import vmimage

HERE = Path(__file__).resolve().parent

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(os.geteuid() != 0, reason="the VM tier runs qemu and 9p as root"),
]

# Started as a separate process, so that it can be interrupted or killed like a test run.
STARTER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import vmharness, vmimage
vmharness.run_in_vm("sleep 600", image=vmimage.build_image(), results_dir=Path(sys.argv[2]))
"""


def poll(condition, what: str, deadline: float = 60.0):
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:.0f} s waiting for {what}")
        time.sleep(0.05)  # polling a condition with a deadline


def qemu_serving(results_dir: Path) -> int | None:
    """The pid of a live qemu whose command line names ``results_dir``, if any."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        is_qemu = bool(cmdline) and cmdline[0].endswith(b"qemu-system-x86_64") and state != "Z"
        if is_qemu and any(str(results_dir).encode() in arg for arg in cmdline):
            return int(entry.name)
    return None


@pytest.fixture(scope="module")
def image() -> vmimage.VmImage:
    return vmimage.build_image()


def test_output_exit_code_and_result_files_come_back(
    image: vmimage.VmImage, tmp_path: Path
) -> None:
    result = vmharness.run_in_vm(
        "cat /proc/self/cgroup; echo written >/mnt/results/from-guest; exit 7",
        image=image,
        results_dir=tmp_path,
        timeout=300,
    )
    assert result.exit_code == 7, result.console[-2000:]
    assert result.output == "0::/init.scope\n"
    assert (tmp_path / "from-guest").read_text() == "written\n"
    assert result.boot_seconds is not None and result.boot_seconds < result.total_seconds
    assert {"initramfs", "modules", "command", "done"} <= set(result.guest_marks)
    assert qemu_serving(tmp_path) is None


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_no_qemu_outlives_its_starter(image: vmimage.VmImage, tmp_path: Path, how) -> None:
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(HERE), str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        qemu = poll(lambda: qemu_serving(tmp_path), "qemu to start")
        starter.send_signal(how)
        starter.wait(timeout=60)
        poll(lambda: qemu_serving(tmp_path) is None, f"qemu {qemu} to die after {how.name}")
    finally:
        starter.kill()
        starter.wait()
        leftover = qemu_serving(tmp_path)
        if leftover is not None:  # never leave one behind, even when the test fails
            os.kill(leftover, signal.SIGKILL)
