"""Root filesystems for the runc tests, built once and cached by a hash of their inputs.

Two images:

- ``FULL``: ``mmdebstrap --variant=minbase`` from the Debian archive with the programs whose
  view of /proc the fidelity matrix records (procps, python3, psutil, busybox, nodejs, htop).
- ``TINY``: only Debian's static busybox (extracted, not installed), with one symlink per
  applet so ``sh`` and friends exist: the smallest real userland, no libc at all.

A build goes to a temporary directory next to the cache entry and is renamed into place when
complete, under an exclusive lock, so an interrupted build never leaves a half rootfs behind
and concurrent test runs build once.  Containers mount the result read-only.

Run ``python tests/containers/rootfs.py`` to build (or find) both and print the times.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

CACHE_ROOT = Path(os.environ.get("KUBE_LXCFS_ROOTFS_CACHE", "/var/cache/kube-lxcfs/rootfs"))
DEBIAN_MIRROR = "http://deb.debian.org/debian"

BUILDER_VERSION = 1
"""Bump when the build steps below change, so cached images are rebuilt."""

# Directories the container runtime mounts over; they must exist because the rootfs is read-only.
MOUNTPOINTS = ("proc", "sys", "dev", "tmp", "run", "etc", "root")


@dataclass(frozen=True)
class RootfsSpec:
    """Everything that determines the content of a root filesystem."""

    name: str
    packages: tuple[str, ...]
    variant: str = "minbase"
    """mmdebstrap variant; ``extract`` unpacks ``packages`` without installing anything."""
    suite: str = "bookworm"
    mirror: str = DEBIAN_MIRROR

    def key(self) -> str:
        """Cache key: a hash of the inputs and of the builder version."""
        blob = json.dumps({"builder": BUILDER_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def path(self, cache_root: Path = CACHE_ROOT) -> Path:
        """Where the finished image lives."""
        return cache_root / f"{self.name}-{self.key()}"


FULL = RootfsSpec(
    name="full",
    packages=("procps", "python3", "python3-psutil", "busybox", "nodejs", "htop"),
)
TINY = RootfsSpec(name="tiny", packages=("busybox-static",), variant="extract")

READY_MARK = ".kube-lxcfs-rootfs.json"
"""Written last into a finished image: its spec and how long the build took."""


def ensure_rootfs(
    spec: RootfsSpec,
    cache_root: Path = CACHE_ROOT,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
) -> Path:
    """Return the cached image for ``spec``, building it first if it is missing."""
    final = spec.path(cache_root)
    if (final / READY_MARK).exists():
        return final
    cache_root.mkdir(parents=True, exist_ok=True)
    with open(cache_root / f".{spec.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / READY_MARK).exists():
            return final
        staging = cache_root / f".{final.name}.building"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
        log(f"rootfs {spec.name}: building {final} ({spec.variant}: {' '.join(spec.packages)})")
        started = time.monotonic()
        try:
            _build(spec, staging)
            seconds = round(time.monotonic() - started, 1)
            info = {"spec": asdict(spec), "build_seconds": seconds}
            (staging / READY_MARK).write_text(json.dumps(info, indent=1) + "\n")
            staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log(f"rootfs {spec.name}: built in {seconds:.0f}s")
    return final


def build_seconds(rootfs: Path) -> float:
    """How long the build of a cached image took (recorded when it was built)."""
    return float(json.loads((rootfs / READY_MARK).read_text())["build_seconds"])


def _build(spec: RootfsSpec, target: Path) -> None:
    """Run mmdebstrap into ``target`` and finish the image for read-only use."""
    command = [
        "mmdebstrap",
        "--quiet",
        f"--variant={spec.variant}",
        f"--include={','.join(spec.packages)}",
        *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "locale", "info")),
        spec.suite,
        str(target),
        spec.mirror,
    ]
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL)
    if spec.variant == "extract":
        _link_busybox_applets(target)
    for name in MOUNTPOINTS:
        (target / name).mkdir(exist_ok=True)
    # Name resolution files runc would otherwise have nothing to bind over; harmless if present.
    for name in ("hostname", "hosts", "resolv.conf"):
        (target / "etc" / name).touch(exist_ok=True)


def _link_busybox_applets(target: Path) -> None:
    """Create ``/bin/sh`` etc. for a busybox that was only extracted, never installed."""
    busybox = target / "bin" / "busybox"
    applets = subprocess.run(
        [str(busybox), "--list-full"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:
        link = target / applet
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists() and not link.is_symlink():
            link.symlink_to("/bin/busybox")


def main() -> int:
    """Build (or find) both images and print where they are and how long they took."""
    for spec in (TINY, FULL):
        started = time.monotonic()
        path = ensure_rootfs(spec)
        print(
            f"{spec.name}: {path} (build {build_seconds(path):.0f}s when built, "
            f"{time.monotonic() - started:.1f}s now)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
