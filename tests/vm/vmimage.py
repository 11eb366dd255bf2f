"""Build the pure cgroup v2 test VM: kernel, initramfs and root disk, cached by their inputs.

The host's own controllers are cgroup v1, so v2 behaviour is tested in a throw-away VM: the
host's Debian kernel booted with ``cgroup_no_v1=all``, a static-busybox initramfs and a Debian
root filesystem made by mmdebstrap. Everything lands in ``<cache>/<hash of the inputs>/``; a
change to any input (this file, the guest scripts, the package lists, the kernel) builds a new
image, an unchanged one is reused at no cost.
"""

from __future__ import annotations

import fcntl
import hashlib
import lzma
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GUEST = HERE / "guest"
CACHE_ROOT = Path(os.environ.get("KUBE_LXCFS_VM_CACHE", "/var/cache/kube-lxcfs/vm"))

SUITE = "bookworm"
# What the guest needs from Debian: the interpreter, FUSE, lxcfs as the differential oracle,
# runc for containers, and the tools the tests drive (mkswap/swapon, dd, ip, ps, free).
DEBIAN_PACKAGES = (
    "python3",
    "fuse3",
    "lxcfs",
    "runc",
    "procps",
    "mount",
    "util-linux",
    "iproute2",
    "coreutils",
    "kmod",
)
# Block, filesystem and FUSE drivers are modules in Debian's kernel; their dependencies are
# resolved with modprobe and loaded by the initramfs in order.
MODULES = (
    "virtio_pci",
    "virtio_blk",
    "virtio_rng",
    "ext4",
    "9pnet_virtio",
    "9p",
    "fuse",
    "overlay",
)
GUEST_SITE_PACKAGES = "usr/local/lib/python3.11/dist-packages"
BUILT_MARKER = "built"

Log = Callable[[str], None]


def _stderr_log(message: str) -> None:
    print(f"[vm-image] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class VmImage:
    """A built VM: everything qemu needs to boot it."""

    directory: Path
    kernel: Path
    initrd: Path
    rootfs: Path
    kernel_release: str
    build_seconds: float | None  # None when the image came from the cache


def kernel_release() -> str:
    """The newest host kernel that has both a bootable image and its modules."""
    releases = sorted(
        p.name
        for p in Path("/lib/modules").iterdir()
        if (p / "modules.dep").exists() and Path(f"/boot/vmlinuz-{p.name}").exists()
    )
    if not releases:
        raise RuntimeError(
            "no kernel with modules found: install linux-image-amd64 (deps/apt/vm.txt)"
        )
    return releases[-1]


def guest_python_requirements() -> list[str]:
    """The product's own dependencies (no extras: the filesystem daemon needs none of them)
    plus the test runner, installed into the guest by pip."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    product = list(project["dependencies"])
    test_lines = (REPO / "deps" / "pip" / "base.txt").read_text().splitlines()
    test_reqs = [
        line.split("#")[0].strip()
        for line in test_lines
        if line.split("#")[0].strip() and not line.strip().startswith("ruff")
    ]
    return sorted({*product, *test_reqs})


def apt_sources() -> list[str]:
    """The host's Debian sources, handed to mmdebstrap (it pastes an existing file verbatim)."""
    for candidate in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        path = Path(candidate)
        if path.exists() and path.read_text().strip():
            return [str(path)]
    return []  # mmdebstrap's defaults


def input_hash(release: str) -> str:
    """Hash of everything that shapes the image; a new hash means a new build."""
    digest = hashlib.sha256()
    for path in sorted([Path(__file__).resolve(), *sorted(GUEST.glob("*-init.sh"))]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(release.encode())
    digest.update(Path(f"/boot/vmlinuz-{release}").read_bytes())
    digest.update("\n".join(guest_python_requirements()).encode())
    for source in apt_sources():
        digest.update(Path(source).read_bytes())
    return digest.hexdigest()[:16]


def _run(cmd: list[str], **kwargs) -> None:
    subprocess.run(cmd, check=True, **kwargs)


def extract_vmlinux(vmlinuz: Path, target: Path) -> Path:
    """Decompress the ELF kernel out of the bzImage so qemu boots it through PVH.

    Booting the ELF skips the real-mode setup and the in-guest decompression, which cost
    seconds per boot under emulation. Falls back to the bzImage if it is not XZ inside.
    """
    data = vmlinuz.read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        return vmlinuz
    try:
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
    except lzma.LZMAError:
        return vmlinuz
    if not elf.startswith(b"\x7fELF"):
        return vmlinuz
    target.write_bytes(elf)
    return target


def module_load_order(release: str) -> list[Path]:
    """The .ko files for MODULES and their dependencies, dependencies first."""
    order: list[Path] = []
    for module in MODULES:
        out = subprocess.run(
            ["modprobe", "-S", release, "--show-depends", module],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for line in out.splitlines():
            fields = line.split()
            if fields[:1] == ["insmod"] and Path(fields[1]) not in order:
                order.append(Path(fields[1]))
    return order


def build_initramfs(release: str, target: Path, work: Path) -> None:
    """A static-busybox initramfs with the modules and our init, as a gzipped newc cpio."""
    root = work / "initramfs"
    for sub in ("bin", "dev", "proc", "sys", "newroot", "lib/modules"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    busybox = shutil.which("busybox") or "/bin/busybox"
    shutil.copy2(busybox, root / "bin" / "busybox")
    applets = subprocess.run(
        [busybox, "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    names = []
    for ko in module_load_order(release):
        shutil.copy2(ko, root / "lib" / "modules" / ko.name)
        names.append(ko.name)
    (root / "lib" / "modules" / "modules.list").write_text("\n".join(names) + "\n")
    shutil.copy2(GUEST / "initramfs-init.sh", root / "init")
    (root / "init").chmod(0o755)
    files = subprocess.run(["find", "."], cwd=root, check=True, capture_output=True).stdout
    cpio = subprocess.run(
        ["cpio", "-o", "-H", "newc", "--quiet"],
        cwd=root,
        input=files,
        check=True,
        capture_output=True,
    ).stdout
    target.write_bytes(_gzip_fast(cpio))


def _gzip_fast(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data, compresslevel=1, mtime=0)


def build_rootfs(rootfs: Path, log: Log) -> None:
    """Debian + python test dependencies + our guest init, in a directory."""
    excludes = [
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-include=/usr/share/locale/locale.alias",
    ]
    cmd = [
        "mmdebstrap",
        "--mode=root",
        "--variant=essential",
        "--quiet",
        f"--include={','.join(DEBIAN_PACKAGES)}",
        *excludes,
        SUITE,
        str(rootfs),
        *apt_sources(),
    ]
    log("mmdebstrap " + " ".join(DEBIAN_PACKAGES))
    for attempt in (1, 2):
        done = subprocess.run(
            cmd, check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
        if done.returncode == 0:
            break
        # A dpkg step in the chroot has been seen to fail once and pass on a rerun.
        log(f"mmdebstrap failed (attempt {attempt}):\n{done.stderr[-3000:]}")
        shutil.rmtree(rootfs, ignore_errors=True)
    else:
        raise RuntimeError("mmdebstrap failed twice; see the log above")
    requirements = guest_python_requirements()
    log("pip install into the guest: " + " ".join(requirements))
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--no-cache-dir",
            "--only-binary=:all:",
            "--target",
            str(rootfs / GUEST_SITE_PACKAGES),
            *requirements,
        ]
    )
    shutil.copy2(GUEST / "guest-init.sh", rootfs / "sbin" / "klx-init")
    (rootfs / "sbin" / "klx-init").chmod(0o755)
    (rootfs / "etc" / "hostname").write_text("klx-v2\n")
    for sub in ("mnt/src", "mnt/results"):
        (rootfs / sub).mkdir(parents=True, exist_ok=True)
    for junk in ("var/cache/apt", "var/lib/apt/lists"):
        shutil.rmtree(rootfs / junk, ignore_errors=True)


def build_disk(rootfs: Path, target: Path) -> None:
    """An ext4 disk image filled from the directory (no loop mount needed).

    Room is left for the tests' swap file; inodes are sized from the file count, since
    Python packages are many small files.
    """
    used_mb = int(
        subprocess.run(
            ["du", "-sm", str(rootfs)], check=True, capture_output=True, text=True
        ).stdout.split()[0]
    )
    files = sum(len(dirs) + len(names) for _, dirs, names in os.walk(rootfs))
    with target.open("wb") as disk:
        disk.truncate((used_mb * 13 // 10 + 384) * 1024 * 1024)
    _run(
        [
            "mkfs.ext4", "-q", "-F", "-L", "klx-v2", "-N", str(files * 2 + 16384),
            "-E", "root_owner=0:0", "-d", str(rootfs), str(target),
        ]
    )  # fmt: skip


def _image_at(directory: Path, release: str, build_seconds: float | None) -> VmImage:
    kernel = directory / "vmlinux"
    if not kernel.exists():
        kernel = directory / "vmlinuz"
    return VmImage(
        directory=directory,
        kernel=kernel,
        initrd=directory / "initrd.img",
        rootfs=directory / "rootfs.img",
        kernel_release=release,
        build_seconds=build_seconds,
    )


def build_image(*, force: bool = False, log: Log = _stderr_log) -> VmImage:
    """Return the cached image for the current inputs, building it first if needed.

    Concurrent callers are serialised by a lock file; a build happens in a scratch directory
    and is renamed into place, so a half-built image is never used.
    """
    release = kernel_release()
    key = input_hash(release)
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    final = CACHE_ROOT / key
    with (CACHE_ROOT / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / BUILT_MARKER).exists() and not force:
            log(f"image {final} (cached)")
            return _image_at(final, release, None)
        _prune_other_images(keep=final)
        started = time.monotonic()
        work = CACHE_ROOT / f".build-{key}-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            out = work / "out"
            out.mkdir()
            log(f"building image {key} (kernel {release})")
            vmlinuz = Path(f"/boot/vmlinuz-{release}")
            shutil.copy2(vmlinuz, out / "vmlinuz")
            extract_vmlinux(vmlinuz, out / "vmlinux")
            build_initramfs(release, out / "initrd.img", work)
            rootfs = work / "rootfs"
            build_rootfs(rootfs, log)
            build_disk(rootfs, out / "rootfs.img")
            seconds = time.monotonic() - started
            (out / BUILT_MARKER).write_text(f"{seconds:.1f}\n")
            if final.exists():
                shutil.rmtree(final)
            out.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log(f"built image {final} in {seconds:.1f} s")
        return _image_at(final, release, seconds)


def _prune_other_images(keep: Path) -> None:
    """Disk space is scarce: an image for other inputs goes before a new one is built.

    A VM still running from a removed image keeps its open files; only the cache entry goes.
    """
    for entry in CACHE_ROOT.iterdir():
        if entry not in (keep, DISKS) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


DISKS = CACHE_ROOT / "disks"


def directory_disk(directory: Path, *, log: Log = _stderr_log) -> Path:
    """A read-only ext4 disk holding ``directory`` (by its name) at its top level, cached.

    Hands a cached host tree (the containers tier's root filesystems) to the guest as a
    block device, which is far faster to use there than a 9p share. The cache key is the
    directory's name, which for those trees is already a hash of their inputs.
    """
    DISKS.mkdir(parents=True, exist_ok=True)
    image = DISKS / f"{directory.name}.img"
    with (DISKS / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image.exists():
            return image
        for old in DISKS.glob(f"{directory.name.rsplit('-', 1)[0]}-*.img"):
            old.unlink()
        started = time.monotonic()
        stage = DISKS / f".stage-{os.getpid()}"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
        partial = image.with_suffix(".partial")
        try:
            # hard links: the tree appears under its own name without copying any data
            _run(["cp", "-al", str(directory), str(stage / directory.name)])
            build_disk(stage, partial)
            partial.rename(image)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            partial.unlink(missing_ok=True)
        log(f"disk {image} built in {time.monotonic() - started:.1f} s")
        return image
