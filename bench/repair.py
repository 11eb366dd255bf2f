"""How long a repair pass takes for N containers after a daemon restart.

Setup, all real: our daemon (``kube-lxcfs fs --no-repair``, unique fsname) on a
temporary mount point; N mount namespaces (``unshare -m``), each holding
read-only bind mounts of the 8 files the webhook injects, like N pods. The
daemon is killed with SIGKILL and started again, then one ``repair`` pass is
timed. Reference in the same run: the dry-run pass right before it (discovery
of every namespace, mountinfo parsing and the ENOTCONN probes, no change), so
the ratio is the cost of the swaps themselves.

Usage (as root)::

    python bench/repair.py              # N = 10, 50, 100
    python bench/repair.py --quick      # N = 10
    python bench/repair.py --sizes 200
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from kube_lxcfs import linux  # noqa: E402
from kube_lxcfs.files import INJECTED_FILES  # noqa: E402
from kube_lxcfs.mountinfo import parse_mountinfo, topmost_at  # noqa: E402
from kube_lxcfs.repair import repair  # noqa: E402

FILES = (
    *(path for path in INJECTED_FILES if not path.endswith("/")),
    "sys/devices/system/cpu/online",
)
"""The files a pod gets by default, and one file of the CPU directory it gets."""


def _source_at(path: Path) -> str | None:
    top = topmost_at(parse_mountinfo(Path("/proc/self/mountinfo").read_text()), str(path))
    return top.source if top else None


class Daemon:
    def __init__(self, base: Path) -> None:
        self.mount_dir = base / "mnt"
        self.fsname = f"kube-lxcfs-bench-{uuid.uuid4().hex[:8]}"
        self.log = base / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        argv = [sys.executable, "-m", "kube_lxcfs", "fs", "--no-repair"]
        argv += ["-o", f"fsname={self.fsname}", str(self.mount_dir)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"daemon exited:\n{self.log.read_text()}")
            if _source_at(self.mount_dir) == self.fsname:
                with contextlib.suppress(OSError):
                    if "proc" in os.listdir(self.mount_dir):
                        return
            if time.monotonic() > deadline:
                raise SystemExit("daemon did not mount in 30 s")
            time.sleep(0.02)  # polling the mount with a deadline

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for _ in range(5):
            if _source_at(self.mount_dir) != self.fsname:
                break
            with contextlib.suppress(OSError):
                linux.umount2(str(self.mount_dir))


def holder(mount_dir: Path, base: Path) -> subprocess.Popen[bytes]:
    """A namespace with the injected files bound read-only over placeholder files."""
    script = ["set -e"]
    for relative in FILES:
        target = base / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("placeholder\n")
        script.append(f"mount --bind '{mount_dir / relative}' '{target}'")
        script.append(f"mount -o remount,bind,ro '{target}'")
    script += ["echo ready", "exec sleep 3600"]
    proc = subprocess.Popen(
        ["unshare", "-m", "--propagation=private", "sh", "-c", "\n".join(script)],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        raise SystemExit("holder failed")
    return proc


def measure(n: int, work: Path) -> dict[str, float]:
    base = work / f"n{n}"
    base.mkdir()
    daemon = Daemon(base)
    holders: list[subprocess.Popen[bytes]] = []
    try:
        daemon.start()
        holders = [holder(daemon.mount_dir, base / f"ns{i}") for i in range(n)]
        daemon.kill9()
        daemon.start()
        mount_dir = str(daemon.mount_dir)
        started = time.perf_counter()
        dry = repair(mount_dir, dry_run=True)
        dry_seconds = time.perf_counter() - started
        started = time.perf_counter()
        done = repair(mount_dir)
        seconds = time.perf_counter() - started
        again = repair(mount_dir)
        # each namespace: the injected files + its copy of the mount directory (other
        # namespaces on a busy machine may hold copies too)
        stale = done.count("repaired")
        assert dry.count("stale") >= n * (len(FILES) + 1), dry.summary()
        assert stale >= n * (len(FILES) + 1), done.summary()
        assert not done.failed and again.count("repaired") == 0
        return {
            "containers": n,
            "stale mounts": stale,
            "namespaces scanned": done.namespaces_scanned,
            "dry run s": dry_seconds,
            "repair s": seconds,
            "ms per container": seconds * 1000 / n,
            "ratio repair/dry run": seconds / dry_seconds,
        }
    finally:
        for proc in holders:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        daemon.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only N = 10")
    parser.add_argument("--sizes", type=int, nargs="*", help="the N values to measure")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/repair.py needs root", file=sys.stderr)
        return 2
    sizes = args.sizes or ([10] if args.quick else [10, 50, 100])
    with tempfile.TemporaryDirectory(prefix="kube-lxcfs-bench-repair-") as tmp:
        rows = [measure(n, Path(tmp)) for n in sizes]
    header = list(rows[0])
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
