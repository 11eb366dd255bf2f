"""Cost of an intercepted sysinfo(2): calls/s in a wrapped container vs a plain one.

A static C loop calls sysinfo(2) for a while inside a runc container with a 256 MiB
limit: once created by plain runc (the kernel answers, the floor) and once through
``kube-lxcfs-runc`` with a ``kube-lxcfs fs`` daemon answering on its seccomp socket
(each call is a notify round trip: kernel → daemon → cgroup figures → caller's
memory → reply).  Both runs in one process, so the ratio compares like with like.

Usage (as root): ``python bench/sysinfo_notify.py [--seconds 2]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runtime_create import make_bundle

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LIMIT = 256 * 1024 * 1024


def bundle_with_probe(workdir: Path, seconds: float) -> Path:
    """A bundle whose only program is the static sysinfo loop."""

    def install(rootfs: Path) -> None:
        subprocess.run(
            [
                "cc",
                "-static",
                "-O2",
                "-o",
                str(rootfs / "bin" / "loop"),
                str(HERE / "sysinfo_loop.c"),
            ],
            check=True,
        )

    return make_bundle(
        workdir,
        install,
        ["/bin/loop", str(int(seconds * 1000))],
        "/kube-lxcfs-bench-sysinfo",
        memory=LIMIT,
    )


def run_once(argv: list[str], bundle: Path, pristine: str, env: dict[str, str]) -> list[str]:
    (bundle / "config.json").write_text(pristine)
    out = subprocess.run(
        [*argv, "--root", str(bundle.parent / "state"), "run", "--bundle", str(bundle), "bench"],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    ).stdout.split()
    subprocess.run(
        ["runc", "--root", str(bundle.parent / "state"), "delete", "--force", "bench"],
        capture_output=True,
        check=False,
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each loop")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kube-lxcfs-bench-sysinfo-") as tmp:
        workdir = Path(tmp)
        bundle = bundle_with_probe(workdir, args.seconds)
        pristine = (bundle / "config.json").read_text()
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
        socket = workdir / "seccomp.sock"
        mountpoint = workdir / "mnt"
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kube_lxcfs",
                "fs",
                "--seccomp-socket",
                str(socket),
                "--no-repair",
                str(mountpoint),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while not (socket.exists() and os.path.ismount(mountpoint)):
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the daemon did not start")
                time.sleep(0.05)  # polling readiness with a deadline
            env.update(
                KUBE_LXCFS_MOUNT_DIR=str(mountpoint),
                KUBE_LXCFS_SECCOMP_SOCKET=str(socket),
                KUBE_LXCFS_RUNTIME_CONFIG=str(workdir / "absent.json"),
            )
            plain = run_once(["runc"], bundle, pristine, env)
            wrapped = run_once([sys.executable, "-m", "kube_lxcfs.runtime"], bundle, pristine, env)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
    p_rate = int(plain[0]) / float(plain[2])
    w_rate = int(wrapped[0]) / float(wrapped[2])
    print(f"plain runc        {p_rate:12.0f} sysinfo/s  totalram {int(plain[1]) >> 20} MiB (host)")
    print(f"kube-lxcfs-runc   {w_rate:12.0f} sysinfo/s  totalram {int(wrapped[1]) >> 20} MiB")
    print(f"notify round trip {1e6 / w_rate:8.1f} us per call   ratio {w_rate / p_rate:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
