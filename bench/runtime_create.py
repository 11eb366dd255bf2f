"""Added latency of ``kube-lxcfs-runc create`` over plain ``runc create``.

Both create (and then delete) the same container from the same bundle, alternately,
so machine load hits both alike; the wrapper's cost is its Python start, reading and
rewriting config.json and a connect to the seccomp socket, then ``exec runc``.

Usage (as root): ``python bench/runtime_create.py [--rounds 20]``.  It builds a
static-busybox bundle in a temp dir; no daemon is needed (the socket probe fails
fast and the wrapper then adds only the mounts, whose sources must exist: a temp
directory stands in for the mount dir).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from kube_lxcfs.files import INJECTED_FILES  # noqa: E402

FILES = tuple(path.removeprefix("proc/") for path in INJECTED_FILES if path.startswith("proc/"))
"""The /proc files the wrapper mounts by default (the sources must exist)."""


def make_bundle(
    workdir: Path,
    install: Callable[[Path], None],
    args: list[str],
    cgroups_path: str,
    memory: int | None = None,
) -> Path:
    """A runc bundle (``runc spec`` defaults) whose rootfs ``install`` fills and whose
    process is ``args``; shared by the runtime benchmarks."""
    bundle = workdir / "bundle"
    rootfs = bundle / "rootfs"
    for d in ("bin", "proc", "sys", "dev", "tmp"):
        (rootfs / d).mkdir(parents=True)
    install(rootfs)
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = args
    config["linux"]["cgroupsPath"] = cgroups_path
    if memory is not None:
        config["linux"]["resources"]["memory"] = {"limit": memory}
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def fake_mount_dir(workdir: Path) -> Path:
    """Empty stand-ins for the daemon's files (bind sources must exist)."""
    mount_dir = workdir / "lxcfs"
    (mount_dir / "proc").mkdir(parents=True)
    (mount_dir / "sys/devices/system/cpu").mkdir(parents=True)
    for name in FILES:
        (mount_dir / "proc" / name).write_text("")
    return mount_dir


def one_create(
    argv: list[str], bundle: Path, pristine: str, root: Path, env: dict[str, str]
) -> float:
    """Seconds for one ``create``; the container is deleted afterwards (not timed)."""
    (bundle / "config.json").write_text(pristine)
    started = time.perf_counter()
    subprocess.run(
        [*argv, "--root", str(root), "create", "--bundle", str(bundle), "bench"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    elapsed = time.perf_counter() - started
    subprocess.run(["runc", "--root", str(root), "delete", "--force", "bench"], check=True)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="creates per runtime")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kube-lxcfs-bench-create-") as tmp:
        workdir = Path(tmp)
        bundle = make_bundle(
            workdir,
            lambda rootfs: shutil.copy("/bin/busybox", rootfs / "bin" / "busybox"),
            ["/bin/busybox", "true"],
            "/kube-lxcfs-bench-create",
        )
        pristine = (bundle / "config.json").read_text()
        env = dict(os.environ)
        env.update(
            PYTHONPATH=str(REPO / "src"),
            KUBE_LXCFS_MOUNT_DIR=str(fake_mount_dir(workdir)),
            KUBE_LXCFS_SECCOMP_SOCKET=str(workdir / "no-daemon.sock"),
            KUBE_LXCFS_RUNTIME_CONFIG=str(workdir / "absent.json"),
        )
        wrapper = [sys.executable, "-m", "kube_lxcfs.runtime"]
        plain: list[float] = []
        wrapped: list[float] = []
        for _ in range(args.rounds):
            plain.append(one_create(["runc"], bundle, pristine, workdir / "state", env))
            wrapped.append(one_create(wrapper, bundle, pristine, workdir / "state", env))
    p, w = statistics.median(plain), statistics.median(wrapped)
    print(f"runc create             median {p * 1000:7.1f} ms  (n={len(plain)})")
    print(f"kube-lxcfs-runc create  median {w * 1000:7.1f} ms  (n={len(wrapped)})")
    print(f"added per create        {(w - p) * 1000:7.1f} ms  ratio {w / p:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
