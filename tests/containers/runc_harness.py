"""Real OCI containers with Debian's runc, with our files mounted as the webhook injects them.

The pieces, usable from any test tier (the repair and VM tests reuse them):

- :class:`Resources`: the ``linux.resources`` of a container (memory, memory+swap, CPU quota
  and period, cpuset), from Kubernetes-style numbers.
- :func:`lxcfs_mounts`: the OCI mounts of the virtual files, exactly what kubelet/containerd
  generate for the webhook's read-only hostPath volumes (``bind`` with ``rbind,rprivate,ro``).
- :func:`oci_config`: a complete ``config.json`` (pure function).
- :class:`Runc`: runs containers with a private ``--root`` for runc's state and a test-owned
  ``cgroupsPath`` prefix (cgroupfs driver); :meth:`Runc.run` for one command and its output,
  :meth:`Runc.start` for a long-lived container to ``exec`` into; :meth:`Runc.cleanup`
  force-deletes everything it started, so a failing test leaves no container or cgroup.

Root filesystems come from :mod:`rootfs` (cached, read-only inside the container).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kube_lxcfs.sandbox.mounts import INJECTED_DIRS, INJECTED_FILES

RUNC = "runc"
CGROUP_PREFIX = "kube-lxcfs-test-runc"
"""Every container's cgroup is ``/<CGROUP_PREFIX>-<id>`` in each hierarchy."""
CGROUP_ROOT = Path("/sys/fs/cgroup")

DEFAULT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "TERM": "xterm",
    "LANG": "C.UTF-8",
}
CAPABILITIES = [
    f"CAP_{name}"
    for name in (
        *("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID"),
        *("SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"),
    )
]
"""The container runtimes' default capability set."""
MASKED_PATHS = [
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
]
READONLY_PATHS = [
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
]


@dataclass(frozen=True)
class Resources:
    """``linux.resources`` of a container; ``None`` leaves a limit unset."""

    memory: int | None = None
    """Bytes (``resources.limits.memory``)."""
    memory_swap: int | None = None
    """Bytes of memory + swap (OCI ``memory.swap``, v1 ``memsw``)."""
    cpu_quota: int | None = None
    """Microseconds per ``cpu_period`` (``resources.limits.cpu`` × period)."""
    cpu_period: int = 100_000
    cpuset: str | None = None

    @classmethod
    def of(cls, cpus: float | None = None, **kwargs: Any) -> Resources:
        """Resources with ``cpus`` expressed as a quota over the default period."""
        quota = None if cpus is None else round(cpus * 100_000)
        return cls(cpu_quota=quota, **kwargs)

    def to_oci(self) -> dict[str, Any]:
        """The ``linux.resources`` object."""
        memory: dict[str, int] = {}
        if self.memory is not None:
            memory["limit"] = self.memory
        if self.memory_swap is not None:
            memory["swap"] = self.memory_swap
        cpu: dict[str, Any] = {}
        if self.cpu_quota is not None:
            cpu.update(quota=self.cpu_quota, period=self.cpu_period)
        if self.cpuset is not None:
            cpu["cpus"] = self.cpuset
        result: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
        if memory:
            result["memory"] = memory
        if cpu:
            result["cpu"] = cpu
        return result


def lxcfs_mounts(mount_dir: str | Path) -> list[dict[str, Any]]:
    """The OCI mounts for the webhook's read-only hostPath volumes of ``mount_dir``."""
    return [
        {
            "destination": f"/{relative}",
            "type": "bind",
            "source": str(Path(mount_dir) / relative),
            "options": ["rbind", "rprivate", "ro"],
        }
        for relative in (*INJECTED_FILES, *INJECTED_DIRS)
    ]


def base_mounts() -> list[dict[str, Any]]:
    """The mounts every container gets (as runc's and containerd's defaults)."""
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
        {
            "destination": "/tmp",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/run",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=755", "size=65536k"],
        },
    ]


def oci_config(
    rootfs: str | Path,
    args: Sequence[str],
    resources: Resources,
    cgroups_path: str,
    *,
    mount_dir: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    hostname: str = "kube-lxcfs-test",
) -> dict[str, Any]:
    """A complete OCI runtime ``config.json``; ``mount_dir`` adds the injected virtual files."""
    environment = {**DEFAULT_ENV, **(env or {})}
    mounts = base_mounts()
    if mount_dir is not None:
        mounts += lxcfs_mounts(mount_dir)
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": [f"{key}={value}" for key, value in environment.items()],
            "cwd": "/",
            "capabilities": dict.fromkeys(("bounding", "effective", "permitted"), CAPABILITIES),
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": str(rootfs), "readonly": True},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": resources.to_oci(),
            "namespaces": [{"type": kind} for kind in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    }


class RuncError(RuntimeError):
    """runc failed; the message carries its stderr."""


@dataclass
class Container:
    """A started (detached) container; ``exec`` runs commands inside it."""

    runc: Runc
    id: str
    bundle: Path
    cgroups_path: str

    @property
    def pid(self) -> int:
        """Host pid of the container's init."""
        return int(self.runc.state(self.id)["pid"])

    def exec(
        self, args: Sequence[str], timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``args`` inside the container (joins its namespaces and cgroup)."""
        proc = subprocess.run(
            [*self.runc.base, "exec", self.id, *args],
            capture_output=True,
            check=False,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise RuncError(
                f"exec {list(args)} in {self.id} exited {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc

    def output(self, *args: str) -> str:
        """stdout of a command inside the container that must succeed."""
        return self.exec(list(args)).stdout

    def delete(self) -> None:
        """Kill and delete the container (its cgroup goes with it)."""
        self.runc.delete(self.id)


@dataclass
class Runc:
    """runc with private state; every container it starts is force-deleted by :meth:`cleanup`."""

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kube-lxcfs-runc-")))
    cgroup_prefix: str = CGROUP_PREFIX
    _ids: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    """Every container id this instance made (for leak checks)."""

    @property
    def state_root(self) -> Path:
        return self.workdir / "state"

    @property
    def base(self) -> list[str]:
        return [RUNC, "--root", str(self.state_root)]

    def _bundle(
        self,
        rootfs: Path,
        args: Sequence[str],
        resources: Resources,
        mount_dir: Path | None,
        env: Mapping[str, str] | None,
    ) -> tuple[str, Path, str]:
        container_id = f"c{uuid.uuid4().hex[:10]}"
        bundle = self.workdir / container_id
        bundle.mkdir(parents=True)
        cgroups_path = f"/{self.cgroup_prefix}-{container_id}"
        config = oci_config(rootfs, args, resources, cgroups_path, mount_dir=mount_dir, env=env)
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        self._ids.append(container_id)
        self.created.append(container_id)
        return container_id, bundle, cgroups_path

    def run(
        self,
        rootfs: Path,
        args: Sequence[str],
        *,
        resources: Resources = Resources(),
        mount_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``args`` as the container's init; return its exit code and output."""
        container_id, bundle, _ = self._bundle(rootfs, args, resources, mount_dir, env)
        try:
            return subprocess.run(
                [*self.base, "run", "--bundle", str(bundle), container_id],
                capture_output=True,
                check=False,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        finally:
            self.delete(container_id)

    def start(
        self,
        rootfs: Path,
        *,
        resources: Resources = Resources(),
        mount_dir: Path | None = None,
        args: Sequence[str] = ("sleep", "3600"),
        env: Mapping[str, str] | None = None,
    ) -> Container:
        """Start a detached container whose init is ``args`` (a sleep by default)."""
        container_id, bundle, cgroups_path = self._bundle(rootfs, args, resources, mount_dir, env)
        # The detached init keeps runc's stdio: a file, never a pipe nobody will close.
        init_log = bundle / "init.log"
        with open(init_log, "wb") as log_file:
            proc = subprocess.run(
                [*self.base, "run", "--detach", "--bundle", str(bundle), container_id],
                check=False,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                timeout=60,
            )
        if proc.returncode != 0:
            self.delete(container_id)
            raise RuncError(f"runc run {container_id}: {init_log.read_text().strip()}")
        return Container(self, container_id, bundle, cgroups_path)

    def state(self, container_id: str) -> dict[str, Any]:
        """``runc state`` as a dict."""
        proc = subprocess.run(
            [*self.base, "state", container_id], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise RuncError(f"runc state {container_id}: {proc.stderr.strip()}")
        return json.loads(proc.stdout)

    def delete(self, container_id: str) -> None:
        """Force-delete a container and make sure its cgroup directories are gone."""
        subprocess.run(
            [*self.base, "delete", "--force", container_id],
            capture_output=True,
            check=False,
            timeout=60,
        )
        for directory in cgroup_dirs(f"{self.cgroup_prefix}-{container_id}"):
            _rmdir_with_deadline(directory)
        with contextlib.suppress(ValueError):
            self._ids.remove(container_id)

    def leaked_cgroups(self) -> list[Path]:
        """Cgroup directories of this instance's containers that still exist."""
        return [
            directory
            for container_id in self.created
            for directory in cgroup_dirs(f"{self.cgroup_prefix}-{container_id}")
        ]

    def cleanup(self) -> None:
        """Delete every container still known, then the state and bundles."""
        for container_id in list(self._ids):
            self.delete(container_id)
        shutil.rmtree(self.workdir, ignore_errors=True)


def cgroup_dirs(name: str) -> list[Path]:
    """Existing directories of the top-level cgroup ``name`` in every mounted hierarchy."""
    return [path for path in CGROUP_ROOT.glob(f"*/{name}") if path.is_dir()] + [
        path for path in [CGROUP_ROOT / name] if path.is_dir()
    ]


def leftover_cgroups(prefix: str = CGROUP_PREFIX) -> list[Path]:
    """Cgroups with the test prefix that still exist (for leak checks)."""
    return sorted(CGROUP_ROOT.glob(f"*/{prefix}*")) + sorted(CGROUP_ROOT.glob(f"{prefix}*"))


def _rmdir_with_deadline(directory: Path, timeout: float = 5.0) -> None:
    """rmdir a cgroup, retrying while the kernel still reports it busy."""
    deadline = time.monotonic() + timeout
    while directory.exists():
        try:
            directory.rmdir()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)  # polling a condition (cgroup emptied) with a deadline


@contextlib.contextmanager
def runc_session() -> Iterator[Runc]:
    """A :class:`Runc` that is cleaned up however the block ends."""
    runc = Runc()
    try:
        yield runc
    finally:
        runc.cleanup()
