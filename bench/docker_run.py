"""What ``--runtime kube-lxcfs`` adds to a ``docker run`` over ``--runtime runc``.

One private dockerd (Debian's docker.io, the tests' harness: own data-root, socket, no
network), a ``kube-lxcfs fs`` with its seccomp socket, ``setup-docker`` registering the
wrapper as the user would; then ``docker run --rm -m 512m --cpus 1 IMAGE true`` alternately
with each runtime, so machine load hits both alike. containerd's shim calls the runtime
several times per container (create, start, and two at the exit): the wrapper's cost is a
python3 start per call, plus editing config.json on create.

Usage (as root): ``python bench/docker_run.py [--rounds 10]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO / "src", REPO / "tests", REPO / "tests" / "containers"):
    sys.path.insert(0, str(path))

from containerd_harness import build_oci_archive  # noqa: E402
from engines_harness import Dockerd, running_dockerd  # noqa: E402
from rootfs import TINY, ensure_rootfs  # noqa: E402

from support.fsdaemons import start_kube_lxcfs  # noqa: E402

IMAGE = "kube-lxcfs-bench:docker"


def one_run(dockerd: Dockerd, runtime: str) -> float:
    """Seconds for one ``docker run --rm ... true`` (create to removal)."""
    started = time.perf_counter()
    limits = ["-m", "512m", "--cpus", "1"]
    dockerd.docker("run", "--rm", "--network", "none", "--runtime", runtime, *limits, IMAGE, "true")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="runs per runtime")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kube-lxcfs-bench-docker-") as tmp:
        workdir = Path(tmp)
        archive = workdir / "image.tar"
        build_oci_archive(ensure_rootfs(TINY), archive, IMAGE, ["sh"], docker_manifest=True)
        socket = workdir / "seccomp.sock"
        fs = start_kube_lxcfs(workdir / "mnt", "--seccomp-socket", str(socket))
        try:
            with running_dockerd() as dockerd:
                dockerd.docker("load", "-i", str(archive))
                setup = [
                    *("setup-docker", "--config", str(dockerd.config)),
                    *("--prefix", str(workdir / "prefix"), "--mount-dir", str(fs.mountpoint)),
                    *("--seccomp-socket", str(socket)),
                ]
                subprocess.run([sys.executable, "-m", "kube_lxcfs", *setup], check=True)
                dockerd.reload()
                deadline = time.monotonic() + 30
                while "kube-lxcfs" not in dockerd.runtimes():
                    if time.monotonic() > deadline:
                        raise RuntimeError("dockerd did not load the runtime")
                    time.sleep(0.1)  # polling the reload with a deadline
                one_run(dockerd, "runc")  # the daemon's first container pays for itself
                plain: list[float] = []
                wrapped: list[float] = []
                for _ in range(args.rounds):
                    plain.append(one_run(dockerd, "runc"))
                    wrapped.append(one_run(dockerd, "kube-lxcfs"))
        finally:
            fs.stop()
            shutil.rmtree(workdir / "prefix", ignore_errors=True)
    p, w = statistics.median(plain), statistics.median(wrapped)
    print(f"docker run --runtime runc        median {p * 1000:7.0f} ms  (n={len(plain)})")
    print(f"docker run --runtime kube-lxcfs  median {w * 1000:7.0f} ms  (n={len(wrapped)})")
    print(f"added per container              {(w - p) * 1000:7.0f} ms  ratio {w / p:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
