"""Boot the pure cgroup v2 VM, run one command inside it, return its output and exit code.

The project directory is shared read-only at ``/mnt/src`` (9p), and a per-run results
directory read-write at ``/mnt/results``: the guest init runs ``command.sh`` from there with
``/mnt/src`` as its working directory, writes ``output.log`` and ``exit-code``, and powers off.
A blank virtio disk is attached for block-I/O tests (``/dev/vdb``), read-only extra disks after
it; the root disk is ``snapshot=on``, so guest writes never reach the cached image.

qemu is owned by this process: it gets PR_SET_PDEATHSIG, and is killed in ``finally`` and at
interpreter exit, so an interrupted test run leaves no qemu behind.

Command line: ``python tests/vm/vmharness.py [--rebuild] [--] COMMAND...`` runs COMMAND in
the guest (``build`` alone only builds the image) and exits with its exit code.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vmimage import REPO, VmImage, build_image

EXIT_TIMEOUT = 124  # the command overran its deadline
EXIT_NO_BOOT = 125  # the guest never reached its init (or panicked)
BOOT_TIMEOUT = 180.0  # emulation on a loaded 2-core machine can be slow
COMMAND_TIMEOUT = 900.0
KERNEL_ARGS = (
    "console=ttyS0 quiet loglevel=4 panic=-1 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1"
)
PR_SET_PDEATHSIG = 1
MARK = re.compile(r"^KLX-MARK (\S+) ([0-9.]+)", re.MULTILINE)

_live_qemus: set[subprocess.Popen] = set()


@dataclass
class VmResult:
    """What one VM run produced."""

    exit_code: int
    output: str
    console: str
    results_dir: Path
    boot_seconds: float | None  # host wall clock from qemu start to the command's start
    total_seconds: float
    guest_marks: dict[str, float] = field(default_factory=dict)  # guest uptime per stage

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def _die_with_parent() -> None:
    """Runs in the qemu child before exec: the kernel kills it if we die, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _kill_all_qemus() -> None:
    for proc in list(_live_qemus):
        _kill(proc)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    _live_qemus.discard(proc)


atexit.register(_kill_all_qemus)


def _accelerator() -> list[str]:
    """KVM only where it can run a stock kernel; otherwise software emulation.

    Here /dev/kvm is a PVM nesting device that hangs stock kernels, so TCG is the path taken.
    """
    modules = Path("/sys/module")
    real_kvm = (modules / "kvm_intel").exists() or (modules / "kvm_amd").exists()
    if real_kvm and os.access("/dev/kvm", os.W_OK) and not os.environ.get("KUBE_LXCFS_VM_TCG"):
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg,thread=multi", "-cpu", "max"]


def qemu_command(
    image: VmImage,
    run_dir: Path,
    src: Path,
    *,
    cpus: int,
    memory_mb: int,
    data_disk: Path,
    extra_disks: Sequence[Path] = (),
) -> list[str]:
    extra = []
    for disk in extra_disks:
        extra += ["-drive", f"file={disk},format=raw,if=virtio,readonly=on"]
    return [
        shutil.which("qemu-system-x86_64") or "qemu-system-x86_64",
        "-nodefaults",
        "-no-user-config",
        "-display", "none",
        "-no-reboot",
        "-M", "pc",
        *_accelerator(),
        "-m", str(memory_mb),
        "-smp", str(cpus),
        "-kernel", str(image.kernel),
        "-initrd", str(image.initrd),
        "-append", KERNEL_ARGS,
        "-drive", f"file={image.rootfs},format=raw,if=virtio,snapshot=on,cache=unsafe",
        "-drive", f"file={data_disk},format=raw,if=virtio,cache=unsafe",
        *extra,
        "-device", "virtio-rng-pci",
        "-virtfs",
        f"local,path={run_dir},mount_tag=results,security_model=none,multidevs=remap",
        "-virtfs",
        f"local,path={src},mount_tag=src,security_model=none,multidevs=remap,readonly=on",
        "-chardev", f"file,id=con,path={run_dir / 'console.log'}",
        "-serial", "chardev:con",
        "-monitor", "none",
    ]  # fmt: skip


def _marks(console: str) -> dict[str, float]:
    return {name: float(up) for name, up in MARK.findall(console)}


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def pack(src: Path, paths: Sequence[str], target: Path) -> None:
    """A tar of ``paths`` under ``src`` without bytecode caches."""

    def no_caches(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        name = Path(info.name)
        return None if "__pycache__" in name.parts or name.suffix == ".pyc" else info

    with tarfile.open(target, "w") as tar:
        for path in paths:
            tar.add(src / path, arcname=path, filter=no_caches)


def run_in_vm(
    command: str,
    *,
    image: VmImage | None = None,
    src: Path = REPO,
    cpus: int = 2,
    memory_mb: int = 1536,
    boot_timeout: float = BOOT_TIMEOUT,
    timeout: float = COMMAND_TIMEOUT,
    results_dir: Path | None = None,
    on_output: Callable[[str], None] | None = None,
    ship: Sequence[str] = (),
    extra_disks: Sequence[Path] = (),
) -> VmResult:
    """Boot the VM, run ``command`` (bash, cwd /mnt/src) inside it, power off, return the result.

    ``on_output`` receives the command's output as it is produced (tailed from the share).
    ``ship`` names paths under ``src`` to pack into ``/mnt/results/project.tar``: one
    sequential 9p read instead of thousands of slow 9p lookups (imports, pytest collection);
    the guest unpacks it where it likes. ``extra_disks`` are attached read-only after the
    blank data disk: ``/dev/vdc``, ``/dev/vdd``...
    Exit codes: the command's own; 124 if it overran ``timeout``; 125 if the guest did not
    reach its init within ``boot_timeout`` or died before finishing.
    """
    image = image or build_image()
    run_dir = results_dir or Path(tempfile.mkdtemp(prefix="kube-lxcfs-vm-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "command.sh").write_text(command + "\n")
    if ship:
        pack(src, ship, run_dir / "project.tar")
    data_disk = run_dir / "data-disk.img"
    with data_disk.open("wb") as disk:
        disk.truncate(256 * 1024 * 1024)  # sparse: costs nothing until written
    console_path = run_dir / "console.log"
    output_path = run_dir / "output.log"
    exit_path = run_dir / "exit-code"
    cmd = qemu_command(
        image,
        run_dir,
        src,
        cpus=cpus,
        memory_mb=memory_mb,
        data_disk=data_disk,
        extra_disks=extra_disks,
    )
    started = time.monotonic()
    boot_seconds: float | None = None
    streamed = 0
    with (run_dir / "qemu.stderr").open("wb") as qemu_stderr:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=qemu_stderr,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - prctl must run in the child
        )
    _live_qemus.add(proc)
    exit_code: int | None = None
    try:
        while proc.poll() is None:
            elapsed = time.monotonic() - started
            if boot_seconds is None and "KLX-MARK command" in _read(console_path):
                boot_seconds = elapsed
            if on_output is not None:
                text = _read(output_path)
                if len(text) > streamed:
                    on_output(text[streamed:])
                    streamed = len(text)
            if boot_seconds is None and elapsed > boot_timeout:
                exit_code = EXIT_NO_BOOT
                break
            if elapsed > boot_timeout + timeout:
                exit_code = EXIT_TIMEOUT
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
    finally:
        _kill(proc)
        with contextlib.suppress(FileNotFoundError):
            data_disk.unlink()
    total = time.monotonic() - started
    output = _read(output_path)
    if on_output is not None and len(output) > streamed:
        on_output(output[streamed:])
    console = _read(console_path)
    if boot_seconds is None and "KLX-MARK command" in console:
        boot_seconds = total
    if exit_code is None:
        recorded = _read(exit_path).strip()
        exit_code = int(recorded) if recorded.isdigit() else EXIT_NO_BOOT
    return VmResult(
        exit_code=exit_code,
        output=output,
        console=console,
        results_dir=run_dir,
        boot_seconds=boot_seconds,
        total_seconds=total,
        guest_marks=_marks(console),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vmharness",
        description="Build the pure cgroup v2 test VM and run a command inside it "
        "(the project is at /mnt/src, the working directory).",
    )
    parser.add_argument("--rebuild", action="store_true", help="rebuild the image first")
    parser.add_argument("--cpus", type=int, default=2, help="vCPUs (default 2)")
    parser.add_argument("--memory", type=int, default=1536, help="guest RAM in MiB")
    parser.add_argument(
        "--timeout",
        type=float,
        default=COMMAND_TIMEOUT,
        help="seconds the command may run (default %(default)s)",
    )
    parser.add_argument("--keep", type=Path, help="results directory to keep (default: temp)")
    parser.add_argument(
        "--disk",
        type=Path,
        action="append",
        default=[],
        help="attach a disk image read-only (/dev/vdc, /dev/vdd...)",
    )
    parser.add_argument(
        "--ship",
        action="append",
        default=[],
        help="pack this project path into /mnt/results/project.tar",
    )
    parser.add_argument("command", nargs="+", help="'build' or a shell command for the guest")
    args = parser.parse_args(argv)
    image = build_image(force=args.rebuild)
    if args.command == ["build"]:
        return 0
    result = run_in_vm(
        " ".join(args.command),
        image=image,
        cpus=args.cpus,
        memory_mb=args.memory,
        timeout=args.timeout,
        results_dir=args.keep,
        on_output=lambda text: print(text, end="", flush=True),
        ship=args.ship,
        extra_disks=args.disk,
    )
    boot = f"{result.boot_seconds:.1f} s" if result.boot_seconds is not None else "no boot"
    print(
        f"[vm] exit {result.exit_code}; boot {boot}; total {result.total_seconds:.1f} s",
        file=sys.stderr,
    )
    if result.exit_code in (EXIT_NO_BOOT, EXIT_TIMEOUT):
        print(result.console[-3000:], file=sys.stderr)
    if args.keep is None:
        shutil.rmtree(result.results_dir, ignore_errors=True)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
