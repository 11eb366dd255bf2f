"""Change a running command's cgroup limits in place and record what it sees, before and after.

What an in-place pod resize (or ``docker update``) does to a container's cgroup, done by hand
under ``kube-lxcfs run``. The command prints its pid, then one line of what it sees per line
of input; ``changing_limits/`` has such probes for Python/psutil, Node, the JVM and Go. The
test of ``kube-lxcfs run`` uses the helpers; the other programs were measured by hand with

    .venv/bin/python tests/containers/limit_change.py node tests/containers/changing_limits/probe.js

(run as root; it starts at 512Mi / 1 CPU, then sets 1Gi / 2 CPUs and polls for 2.5 s).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

MiB = 1024 * 1024


def limit_files(pid: int) -> tuple[Path, Path]:
    """The memory and CPU limit files of ``pid``'s cgroup (v1 or v2)."""
    from kube_lxcfs.cgroups.transient import host_layout

    layout = host_layout()
    paths = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    memory, cpu = layout.hierarchy("memory"), layout.hierarchy("cpu")
    assert memory is not None and cpu is not None
    if memory.version == 2:
        unified = Path(memory.directory(paths[""]))
        return unified / "memory.max", unified / "cpu.max"
    return (
        Path(memory.directory(paths["memory"]), "memory.limit_in_bytes"),
        Path(cpu.directory(paths["cpu"]), "cpu.cfs_quota_us"),
    )


def cpu_limit_text(cpu_file: Path, cpus: int) -> str:
    """``cpus`` CPUs as cpu.max ("quota period") or cfs_quota_us (the period is 100 ms)."""
    return f"{cpus * 100_000} 100000" if cpu_file.name == "cpu.max" else str(cpus * 100_000)


def set_limits(pid: int, memory_mib: int, cpus: int) -> None:
    """Write new limits into ``pid``'s cgroup, as the kubelet's resize (runc update) does."""
    memory_file, cpu_file = limit_files(pid)
    memory_file.write_text(str(memory_mib * MiB))
    cpu_file.write_text(cpu_limit_text(cpu_file, cpus))


class Viewer:
    """A command under ``kube-lxcfs run`` that answers one line per line of input."""

    def __init__(self, run_options: Sequence[str], command: Sequence[str]) -> None:
        argv = [sys.executable, "-m", "kube_lxcfs", "run", *run_options, "--", *command]
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.pid = int(self._line())

    def _line(self, deadline_s: float = 60.0) -> str:
        import select

        ready, _, _ = select.select([self.process.stdout], [], [], deadline_s)
        assert ready, "no output from the command before the deadline"
        return self.process.stdout.readline().strip()

    def view(self) -> str:
        self.process.stdin.write("?\n")
        self.process.stdin.flush()
        return self._line()

    def close(self) -> int:
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def main(command: Sequence[str]) -> int:
    """Print the command's view at 512Mi / 1 CPU, then each change after 1Gi / 2 CPUs."""
    viewer = Viewer(["--memory", "512Mi", "--cpus", "1", "--keep-affinity"], command)
    try:
        print("512Mi, 1 CPU:", viewer.view())
        set_limits(viewer.pid, 1024, 2)
        changed = time.monotonic()
        last = viewer.view()
        print("1Gi, 2 CPUs, at once:", last)
        while time.monotonic() - changed < 2.5:
            now = viewer.view()
            if now != last:
                print(f"after {time.monotonic() - changed:.2f} s:", now)
                last = now
            time.sleep(0.05)  # sampling a changing value, not synchronising
        print("after 2.5 s:", last)
    finally:
        viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
