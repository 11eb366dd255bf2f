"""Real FUSE sources and mount namespaces for the repair tests.

- :class:`LxcfsSource`: Debian's lxcfs on a temporary mount point with a unique
  ``fsname`` (so repair only ever sees this test's mounts), which a test can
  ``kill -9`` (leaving a dead mount) and start again on the same path.
- :class:`Holder`: a process in a new mount namespace (``unshare -m``) holding
  read-only bind mounts of files of the FUSE mount over sentinel files, the way
  a container holds them over /proc; ``read`` reads a path from inside.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from kube_lxcfs import linux
from kube_lxcfs.mountinfo import parse_mountinfo, topmost_at
from support.waiting import wait_for

SENTINEL = "SENTINEL: the file under the mount\n"


def mount_source_at(path: str, pid: str = "self") -> tuple[str, tuple[int, int]] | None:
    """(source, device) of the top mount at ``path`` in ``pid``'s namespace."""
    mounts = parse_mountinfo(Path(f"/proc/{pid}/mountinfo").read_text())
    top = topmost_at(mounts, path)
    return (top.source, top.dev) if top else None


def make_shared(path: str) -> None:
    """``mount --make-shared path``."""
    linux.mount(None, path, None, linux.MS_SHARED)


class FuseSource:
    """A FUSE daemon a test starts, kills (leaving dead mounts) and starts again.

    Every instance mounts with its own ``fsname`` so repair only ever sees this
    test's mounts, whatever else runs on the machine.
    """

    def __init__(self, base: Path, fsname: str | None = None) -> None:
        self.base = base
        self.mount_dir = base / "mnt"
        self.fsname = fsname or f"kube-lxcfs-test-{uuid.uuid4().hex[:8]}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.generation = 0

    @property
    def dev(self) -> tuple[int, int] | None:
        """Device of the live mount (None while down)."""
        found = mount_source_at(str(self.mount_dir))
        return found[1] if found and found[0] == self.fsname else None

    @property
    def log_path(self) -> Path:
        return self.base / f"daemon-{self.generation}.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _launch(self, argv: list[str]) -> None:
        self.generation += 1
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(self._answers, timeout=20, what=f"{argv[0]} on {self.mount_dir}")

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
        if self.dev is None:
            return False
        try:
            return "proc" in os.listdir(self.mount_dir)  # READDIR always reaches the daemon
        except OSError:
            return False

    def kill9(self) -> None:
        """Kill the daemon hard: its mount and every bind of it go dead (ENOTCONN)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        return code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        for _ in range(5):
            if self.dev is None:
                break
            with contextlib.suppress(OSError):
                linux.umount2(str(self.mount_dir))


class LxcfsSource(FuseSource):
    """Debian's lxcfs as the FUSE filesystem behind the bind mounts."""

    def __init__(self, base: Path, *, shared: bool = False) -> None:
        super().__init__(base)
        self.mount_dir.mkdir(parents=True, exist_ok=True)
        self.shared = shared
        if shared:
            # A shared parent, like kubelet's Bidirectional / HostToContainer setup:
            # mounts at mount_dir propagate into namespaces made as its slaves.
            linux.bind_mount(str(base), str(base))
            make_shared(str(base))

    def start(self) -> None:
        """Mount (detaching a dead mount first, as our daemon does) and wait until it answers."""
        found = mount_source_at(str(self.mount_dir))
        if found and found[0] == self.fsname:
            linux.umount2(str(self.mount_dir))
        pidfile = self.base / f"lxcfs-{self.generation + 1}.pid"
        argv = ["/usr/bin/lxcfs", "-f", "-p", str(pidfile), "-o", f"fsname={self.fsname}"]
        self._launch([*argv, str(self.mount_dir)])

    def close(self) -> None:
        super().close()
        if self.shared:
            with contextlib.suppress(OSError):
                linux.umount2(str(self.base))


class KubeLxcfsSource(FuseSource):
    """Our daemon (``python -m kube_lxcfs fs``) with its own state dir.

    It detaches a dead mount itself at start, then repairs containers in the
    background: tests only kill and start it.
    """

    def __init__(self, base: Path, *args: str, fsname: str | None = None) -> None:
        super().__init__(base, fsname)
        self.state_dir = base / "state"
        self.args = args

    def start(self, *extra: str) -> None:
        argv = [sys.executable, "-m", "kube_lxcfs", "fs", "-o", f"fsname={self.fsname}"]
        argv += ["--state-dir", str(self.state_dir), *self.args, *extra, str(self.mount_dir)]
        self._launch(argv)

    def repaired(self) -> bool:
        """Whether the current daemon logged the end of its start-up repair pass."""
        return "kube_lxcfs.repair: repair:" in self.log()


class Holder:
    """A process in its own mount namespace holding bind mounts of FUSE files.

    ``binds`` maps a file of the FUSE mount (relative, e.g. ``proc/meminfo``) to a
    target path inside ``base``; each target is first created with
    :data:`SENTINEL` content, so a read shows which layer answered.
    """

    def __init__(
        self,
        base: Path,
        mount_dir: Path,
        binds: dict[str, str],
        *,
        propagation: str = "private",
        extra: str = "",
        unshare_args: tuple[str, ...] = (),
    ) -> None:
        self.targets = {}
        script = ["set -e"]
        for source, target in binds.items():
            path = base / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(SENTINEL)
            self.targets[source] = str(path)
            script.append(f"mount --bind '{mount_dir / source}' '{path}'")
            script.append(f"mount -o remount,bind,ro '{path}'")
        if extra:
            script.append(extra)
        script += ["echo ready", "exec sleep 3600"]
        command = ["unshare", "-m", f"--propagation={propagation}", *unshare_args]
        self.proc = subprocess.Popen(
            [*command, "sh", "-c", "\n".join(script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.proc.kill()
            raise AssertionError(f"holder failed: {self.proc.communicate()[1].decode()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def ns_inode(self) -> int:
        return os.stat(f"/proc/{self.pid}/ns/mnt").st_ino

    def read(self, path: str) -> str:
        """Read ``path`` as the namespace sees it (``OSError`` on ENOTCONN)."""
        with open(f"/proc/{self.pid}/root{path}", encoding="utf-8") as f:
            return f.read()

    def mounts(self):
        return parse_mountinfo(Path(f"/proc/{self.pid}/mountinfo").read_text())

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        """Run a host binary inside the namespace (test setup only)."""
        return subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", *command],
            capture_output=True,
            text=True,
            check=True,
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
