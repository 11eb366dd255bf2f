"""Start and stop real FUSE daemons for tests: kube-lxcfs and Debian's lxcfs (the oracle).

Every tier that needs a mounted filesystem uses these (directly or through the
``kube_lxcfs_fs`` / ``lxcfs_fs`` / ``start_fs`` fixtures in tests/conftest.py):

    fs = start_kube_lxcfs(tmp_path / "mnt", "--disable-swap")
    try:
        text = (fs.mountpoint / "proc/meminfo").read_text()
    finally:
        fs.stop()

Readiness is polled (the mount appears in /proc/self/mountinfo and answers a
stat) with a deadline; teardown always leaves no process and no mount behind,
also when the daemon crashed: SIGTERM, then SIGKILL, then a lazy unmount.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kube_lxcfs.fuse.mounts import lazy_unmount, mount_at
from support.waiting import wait_for

LXCFS_BINARY = "/usr/bin/lxcfs"
# Emulated machines (the cgroup v2 VM tier) start Python daemons far slower: they stretch
# every deadline by KUBE_LXCFS_TEST_SLOWDOWN (a factor, default 1).
SLOWDOWN = float(os.environ.get("KUBE_LXCFS_TEST_SLOWDOWN", "1"))
READY_TIMEOUT = 20.0 * SLOWDOWN
STOP_TIMEOUT = 15.0 * SLOWDOWN


class DaemonFailed(AssertionError):
    """The daemon did not come up (or misbehaved); the message carries its log."""


@dataclass
class RunningFs:
    """A FUSE daemon started by a test, serving ``mountpoint``."""

    name: str
    mountpoint: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    source: str
    """The mount source that identifies this daemon's mount in mountinfo."""
    pidfile: Path | None = None
    stopped: bool = field(default=False)

    def path(self, relative: str) -> Path:
        """A path inside the mount: ``fs.path("proc/meminfo")``."""
        return self.mountpoint / relative.lstrip("/")

    def log(self) -> str:
        """Everything the daemon wrote to stdout/stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def is_mounted(self) -> bool:
        entry = mount_at(self.mountpoint)
        return entry is not None and entry.source == self.source

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until the mount serves requests; fail early if the daemon died."""

        def ready() -> bool:
            if self.process.poll() is not None:
                raise DaemonFailed(
                    f"{self.name} exited with {self.process.returncode} before mounting:\n"
                    + self.log()
                )
            if not self.is_mounted():
                return False
            try:
                # READDIR always reaches the daemon (no cache), unlike stat, whose cached
                # attributes can make a dead mount left at the same path look alive
                return "proc" in os.listdir(self.mountpoint)
            except OSError:
                return False

        try:
            wait_for(ready, timeout, f"{self.name} to mount {self.mountpoint}")
        except TimeoutError as exc:
            raise DaemonFailed(f"{exc}\n{self.log()}") from None

    def send(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        """Stop the daemon (``signum`` first, SIGKILL at the deadline), then make sure
        nothing stays mounted.  Returns the exit code of a daemon that exited by itself
        after ``signum`` (``None`` if it had to be killed)."""
        if self.stopped:
            return self.process.returncode
        self.stopped = True
        code: int | None = None
        if self.process.poll() is None:
            self.send(signum)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        finally:
            force_unmount(self.mountpoint, self.source)
        return code


def force_unmount(mountpoint: Path, source: str | None = None) -> None:
    """Detach every mount stacked on ``mountpoint`` (optionally only ``source``'s)."""
    for _ in range(10):
        entry = mount_at(mountpoint)
        if entry is None or (source is not None and entry.source != source):
            return
        try:
            lazy_unmount(mountpoint)
        except OSError:
            return


def _start(
    name: str,
    argv: Sequence[str],
    mountpoint: Path,
    source: str,
    log_path: Path,
    *,
    pidfile: Path | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> RunningFs:
    mountpoint.parent.mkdir(parents=True, exist_ok=True)  # the daemon creates the mount point
    log_file = open(log_path, "ab")  # noqa: SIM115 - the child owns it from here
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
    finally:
        log_file.close()
    fs = RunningFs(name, mountpoint, process, log_path, source, pidfile)
    try:
        fs.wait_ready(ready_timeout)
    except BaseException:
        fs.stop(signal.SIGKILL, timeout=5)
        raise
    return fs


def kube_lxcfs_argv(mountpoint: Path, *args: str) -> list[str]:
    """The real daemon command line, importing this checkout (PYTHONPATH from conftest).

    Its repair state goes next to the mount point, not to the host's /run/kube-lxcfs
    (a test's own ``--state-dir`` in ``args`` comes later and wins).
    """
    state = mountpoint.with_name(mountpoint.name + ".state")
    return [
        sys.executable,
        "-m",
        "kube_lxcfs",
        "fs",
        "--state-dir",
        str(state),
        *args,
        str(mountpoint),
    ]


def start_kube_lxcfs(mountpoint: Path, *args: str, log_path: Path | None = None) -> RunningFs:
    """``python -m kube_lxcfs fs [args] MOUNTPOINT``, ready to read."""
    return _start(
        "kube-lxcfs fs",
        kube_lxcfs_argv(mountpoint, *args),
        mountpoint,
        "kube-lxcfs",
        log_path or mountpoint.with_name(mountpoint.name + ".log"),
    )


def start_script_daemon(script: Path, mountpoint: Path, *args: str) -> RunningFs:
    """A test daemon script (same daemon code, own tree): ``python SCRIPT MOUNTPOINT``."""
    return _start(
        script.stem,
        [sys.executable, str(script), str(mountpoint), *args],
        mountpoint,
        "kube-lxcfs",
        mountpoint.with_name(mountpoint.name + ".log"),
    )


def lxcfs_available() -> bool:
    return shutil.which(LXCFS_BINARY) is not None


def start_lxcfs(mountpoint: Path, *args: str) -> RunningFs:
    """Debian's lxcfs in the foreground on its own mount point and pidfile.

    Never /var/lib/lxcfs, never the system's lxcfs: the pidfile sits next to the
    mount point, so this instance neither sees nor locks anybody else's.
    """
    pidfile = mountpoint.with_name(mountpoint.name + ".pid")
    mountpoint.mkdir(parents=True, exist_ok=True)  # lxcfs does not create it
    return _start(
        "lxcfs",
        [LXCFS_BINARY, "-f", *args, "-p", str(pidfile), str(mountpoint)],
        mountpoint,
        "lxcfs",
        mountpoint.with_name(mountpoint.name + ".log"),
        pidfile=pidfile,
    )
