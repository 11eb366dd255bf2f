"""Find a running kube-lxcfs filesystem, or start a private one for the duration of a command."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from kube_lxcfs import linux
from kube_lxcfs.errors import KubeLxcfsError
from kube_lxcfs.fuse.mounts import MountState, lazy_unmount, mount_at, mount_state

log = logging.getLogger(__name__)

MOUNT_DIR_PREFIX = "kube-lxcfs-run-"
"""Private mount directories are ``$TMPDIR/kube-lxcfs-run-<pid of kube-lxcfs run>-<random>``."""
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


class NoFilesystemError(KubeLxcfsError, RuntimeError):
    """No usable filesystem: the message says what was tried."""


def mount_kind(mount_dir: Path) -> str | None:
    """``"kube-lxcfs"``, ``"lxcfs"`` or ``None`` for whatever is mounted at ``mount_dir``.

    Only a FUSE mount counts, and only if it answers: a dead daemon leaves its mount behind
    and every access fails with ENOTCONN.
    """
    entry = mount_at(mount_dir)
    if entry is None or not entry.fstype.startswith("fuse"):
        return None
    try:
        if mount_state(mount_dir) is not MountState.MOUNTED:
            return None
        os.stat(mount_dir / "proc" / "meminfo")
    except OSError:
        return None
    fstype, source = entry.fstype, entry.source
    if "kube-lxcfs" in fstype or "kube-lxcfs" in source or "kube_lxcfs" in source:
        return "kube-lxcfs"
    if "lxcfs" in fstype or "lxcfs" in source:
        return "lxcfs"
    return None


@contextlib.contextmanager
def private_daemon(command: list[str] | None = None) -> Iterator[Path]:
    """Run ``kube-lxcfs fs`` on a fresh temporary directory; yield the mount directory.

    Call it from a private mount namespace (see :func:`~kube_lxcfs.sandbox.mounts.
    unshare_mount_namespace`): the mount is then invisible to the host and vanishes with the
    namespace even if everything is killed.  On exit the daemon gets SIGTERM (SIGKILL after
    a deadline) and any leftover mount is detached.
    """
    mount_dir = Path(tempfile.mkdtemp(prefix=f"{MOUNT_DIR_PREFIX}{os.getpid()}-"))
    # --no-repair: a private daemon has no containers of its own to repair, and a scan of
    # every mount namespace on the host would only slow the command's start.
    default = [sys.executable, "-m", "kube_lxcfs", "fs", "--no-repair"]
    argv = [*(command or default), str(mount_dir)]
    log.debug("starting private filesystem: %s", " ".join(argv))
    with tempfile.TemporaryFile(prefix="kube-lxcfs-run-fs-") as log_file:
        daemon = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C meant for the command must not stop the daemon
            preexec_fn=_terminate_with_parent,  # noqa: PLW1509 - no threads in kube-lxcfs run
        )
        try:
            _wait_until_mounted(daemon, mount_dir, log_file)
            yield mount_dir
        finally:
            _stop(daemon, mount_dir)
            with contextlib.suppress(OSError):
                mount_dir.rmdir()


def sweep_stale_mount_dirs() -> list[Path]:
    """Remove the empty mount directories of earlier runners that were SIGKILLed.

    The mount itself died with the runner's namespace; only the directory stays behind.
    """
    removed = []
    for directory in Path(tempfile.gettempdir()).glob(f"{MOUNT_DIR_PREFIX}*-*"):
        pid = directory.name.removeprefix(MOUNT_DIR_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        with contextlib.suppress(OSError):  # not empty, or a mount: not ours to touch
            directory.rmdir()
            removed.append(directory)
    return removed


def _terminate_with_parent() -> None:
    """Get SIGTERM if ``kube-lxcfs run`` dies (even by SIGKILL): no orphaned daemon."""
    linux.set_parent_death_signal(signal.SIGTERM)


def _wait_until_mounted(daemon: subprocess.Popen[bytes], mount_dir: Path, log_file) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    delay = 0.005
    while mount_kind(mount_dir) is None:
        if daemon.poll() is not None:
            log_file.seek(0)
            output = log_file.read().decode(errors="replace").strip().splitlines()
            detail = output[-1] if output else "no output"
            raise NoFilesystemError(
                f"the private kube-lxcfs fs exited with code {daemon.returncode}: {detail}"
            )
        if time.monotonic() > deadline:
            raise NoFilesystemError(f"the private kube-lxcfs fs did not mount {mount_dir} in time")
        time.sleep(delay)  # polling a condition with a deadline
        delay = min(delay * 2, 0.1)


def _stop(daemon: subprocess.Popen[bytes], mount_dir: Path) -> None:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("private filesystem did not stop on SIGTERM; killing it")
            daemon.kill()
            daemon.wait()
    while mount_at(mount_dir) is not None:
        try:
            lazy_unmount(mount_dir)
        except OSError as exc:
            log.warning("cannot unmount %s: %s", mount_dir, exc)
            break
