"""Private Docker and Podman instances for tests (Debian's docker.io 20.10 and podman 4.3).

Nothing of the machine's own is used: dockerd gets its own config file, data-root,
exec-root, pidfile and socket (and starts its own containerd under them); podman its own
--root/--runroot and a containers.conf named by CONTAINERS_CONF. No network: dockerd runs
with ``"bridge": "none"`` and iptables off, containers with ``--network none``. Images come
from archives built here (``docker load``/``podman load``), never from a registry. Container
cgroups go under a test-owned parent, removed afterwards; daemons are stopped by pid.

Left behind on the machine, as neither 20.10 nor 4.3 can move them: dockerd's empty
/run/docker/plugins directory, and podman's blob-info cache
/var/lib/containers/cache/blob-info-cache-v1.boltdb (digests of loaded layers).

The machine withholds CAP_SYS_RESOURCE from root, so dockerd keeps oom_score_adj 0 and podman
gets rlimits at or below the current ones (its defaults raise them, which runc cannot do).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

DOCKER = "/usr/bin/docker"
"""Debian's client, named by path: another docker may come first on PATH."""
CGROUP_PARENT = "kube-lxcfs-test-{engine}-{workdir}"
"""Containers' cgroups go under this (one per daemon: test runs of other checkouts overlap)."""
READY_TIMEOUT = 60.0


def docker_user_config(workdir: Path) -> dict[str, object]:
    """A daemon.json as a user might have it, plus the isolation this test needs."""
    return {
        "data-root": f"{workdir}/root",
        "exec-root": f"{workdir}/exec",
        "pidfile": f"{workdir}/docker.pid",
        "deprecated-key-path": f"{workdir}/key.json",  # not /etc/docker/key.json
        "hosts": [f"unix://{workdir}/docker.sock"],
        "bridge": "none",
        "iptables": False,
        "ip6tables": False,
        "ip-masq": False,
        "ip-forward": False,
        "oom-score-adjust": 0,
        "cgroup-parent": "/" + CGROUP_PARENT.format(engine="docker", workdir=workdir.name),
        "storage-driver": "overlay2",
        "log-level": "warn",
        "runtimes": {"runc-debug": {"path": "/usr/sbin/runc", "runtimeArgs": ["--debug"]}},
    }


@dataclass
class Dockerd:
    """A running private dockerd; :meth:`docker` runs Debian's client against it."""

    workdir: Path
    config: Path
    process: subprocess.Popen[bytes]

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.workdir}/docker.sock",
            "DOCKER_CONFIG": str(self.workdir / "client"),
        }

    def docker(
        self, *args: str, timeout: float = 180, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [DOCKER, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=self.env,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {proc.stderr.strip()}\n{self.log()}")
        return proc

    def runtimes(self) -> list[str]:
        """The runtimes the daemon has loaded (``docker info``)."""
        out = self.docker("info", "--format", "{{json .Runtimes}}").stdout
        return sorted(json.loads(out))

    def reload(self) -> None:
        """SIGHUP: dockerd re-reads its config file (runtimes included)."""
        self.process.send_signal(signal.SIGHUP)

    def log(self) -> str:
        return (self.workdir / "dockerd.log").read_text(errors="replace")[-3000:]


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _remove_cgroups(parent: str) -> None:
    for directory in sorted(Path("/sys/fs/cgroup").glob(f"*/{parent}"), reverse=True):
        for child in sorted(directory.glob("*/"), reverse=True):
            with contextlib.suppress(OSError):
                child.rmdir()
        with contextlib.suppress(OSError):
            directory.rmdir()


def _unmount_under(workdir: Path) -> None:
    subprocess.run(["umount", "-R", "-l", str(workdir)], capture_output=True, check=False)
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    for line in reversed(mounts):
        target = line.split()[4]
        if target.startswith(str(workdir) + "/"):
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)


@contextlib.contextmanager
def running_dockerd(config: Mapping[str, object] | None = None) -> Iterator[Dockerd]:
    """Start dockerd with ``docker_user_config`` (or ``config``) in a private temp dir."""
    workdir = Path(tempfile.mkdtemp(prefix="klx-dk-", dir="/tmp"))  # short: socket paths
    path = workdir / "daemon.json"
    path.write_text(json.dumps(config or docker_user_config(workdir), indent=2) + "\n")
    with open(workdir / "dockerd.log", "wb") as log:
        process = subprocess.Popen(
            ["dockerd", "--config-file", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    daemon = Dockerd(workdir, path, process)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while daemon.docker("version", check=False, timeout=30).returncode != 0:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start:\n{daemon.log()}")
            time.sleep(0.1)  # polling readiness with a deadline
        yield daemon
    finally:
        with contextlib.suppress(Exception):
            ids = daemon.docker("ps", "-aq", check=False, timeout=60).stdout.split()
            if ids:
                daemon.docker("rm", "-f", *ids, check=False, timeout=120)
        _stop(process)
        _unmount_under(workdir)
        _remove_cgroups(CGROUP_PARENT.format(engine="docker", workdir=workdir.name))
        shutil.rmtree(workdir, ignore_errors=True)


def podman_user_config(workdir: Path) -> str:
    """A containers.conf as a user might have it, plus what this machine needs."""
    limit = 1024  # rlimits podman may set: lowering is always allowed, raising is not here
    return "\n".join(
        [
            "# containers.conf of the podman test (CONTAINERS_CONF)",
            "[containers]",
            f'default_ulimits = ["nofile={limit}:{limit}", "nproc={limit}:{limit}"]',
            "",
            "[engine]",
            'cgroup_manager = "cgroupfs"  # PID 1 is not systemd',
            'events_logger = "file"',
            f'events_logfile_path = "{workdir}/events.log"',
            'runtime = "runc"',
            "",
            "[engine.runtimes]",
            'runc-debian = ["/usr/sbin/runc"]',
            "",
        ]
    )


@dataclass
class Podman:
    """podman with private storage and a private containers.conf."""

    workdir: Path

    @property
    def config(self) -> Path:
        return self.workdir / "containers.conf"

    @property
    def cgroup_parent(self) -> str:
        """For ``podman run --cgroup-parent``."""
        return "/" + CGROUP_PARENT.format(engine="podman", workdir=self.workdir.name)

    def podman(
        self, *args: str, timeout: float = 180, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        storage = [
            "--root",
            f"{self.workdir}/root",
            "--runroot",
            f"{self.workdir}/run",
            "--tmpdir",
            f"{self.workdir}/tmp",
            "--storage-driver",
            "overlay",
        ]
        proc = subprocess.run(
            ["podman", *storage, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "CONTAINERS_CONF": str(self.config), "HOME": str(self.workdir)},
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: {proc.stderr.strip()}")
        return proc


@contextlib.contextmanager
def private_podman() -> Iterator[Podman]:
    """A podman with its own storage and config; everything removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="klx-pm-", dir="/tmp"))
    podman = Podman(workdir)
    podman.config.write_text(podman_user_config(workdir))
    try:
        yield podman
    finally:
        with contextlib.suppress(Exception):
            podman.podman("rm", "-af", "-t", "0", check=False, timeout=120)
            podman.podman("system", "reset", "--force", check=False, timeout=120)
        _unmount_under(workdir)
        _remove_cgroups(podman.cgroup_parent.lstrip("/"))
        shutil.rmtree(workdir, ignore_errors=True)
