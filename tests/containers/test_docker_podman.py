"""``kube-lxcfs setup-docker`` / ``setup-podman`` with Debian's real dockerd 20.10 and podman 4.3.

What a Docker or Podman user does, for real: the node daemon (``kube-lxcfs fs`` with its
seccomp socket) serves a temporary mount dir; ``setup-docker`` registers the wrapper in the
user's daemon.json, dockerd reloads it (SIGHUP); ``setup-podman`` edits the containers.conf
podman is given. Then ``docker run --runtime kube-lxcfs -m 512m --cpus 1`` must show 512 MiB
and 1 CPU to /proc readers, to glibc's sysconf and to busybox ``free`` (sysinfo(2)), while
``--runtime runc`` in the same daemon shows the host. The image (static busybox plus a static
glibc probe) is built here and loaded from an archive; no registry, no network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from containerd_harness import build_oci_archive
from engines_harness import DOCKER, Dockerd, Podman, private_podman, running_dockerd

from support.fsdaemons import wait_for

IMAGE = "kube-lxcfs-probe:docker"
LIMIT_MIB = 512
# free -m (busybox: sysinfo(2)), the static glibc probe (sysinfo(2), sysconf), then /proc readers.
SCRIPT = (
    "free -m; echo ---; sysinfo-probe; echo ---; grep -c ^processor /proc/cpuinfo; "
    "cat /sys/devices/system/cpu/online; head -1 /proc/meminfo; echo ---; uptime"
)

pytestmark = pytest.mark.skipif(
    shutil.which("dockerd") is None or shutil.which("podman") is None,
    reason="docker.io and podman are not installed (deps/apt/docker.txt)",
)


def kube_lxcfs(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kube_lxcfs", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


@pytest.fixture(scope="module")
def timed(summary_line: Callable[[str], None]) -> Callable[[str, float], None]:
    """Record how long a step took since ``started`` (monotonic) in the terminal summary."""

    def record(what: str, started: float) -> None:
        summary_line(f"docker/podman: {what}: {time.monotonic() - started:.2f}s")

    return record


@pytest.fixture(scope="module")
def image_archive(probe_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    archive = tmp_path_factory.mktemp("image") / "probe.tar"
    build_oci_archive(
        probe_rootfs, archive, f"docker.io/library/{IMAGE}", ["sh"], docker_manifest=True
    )
    return archive


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where setup-docker/setup-podman install the wrapper (instead of /usr/local)."""
    return tmp_path_factory.mktemp("prefix")


def setup_args(engine: str, config: Path, prefix: Path, node: tuple[Path, Path]) -> list[str]:
    mount_dir, socket = node
    return [
        f"setup-{engine}",
        "--config",
        str(config),
        "--prefix",
        str(prefix),
        "--mount-dir",
        str(mount_dir),
        "--seccomp-socket",
        str(socket),
    ]


def parse(out: str) -> dict[str, object]:
    """The script's output as named values."""
    free, probe, proc, uptime = out.split("---\n")
    mem = next(line for line in free.splitlines() if line.startswith("Mem:")).split()
    values = dict(line.split() for line in probe.splitlines() if line)
    processors, online, meminfo = proc.splitlines()[:3]
    return {
        "free_total_mib": int(mem[1]),
        "sysinfo_totalram": int(values["totalram"]),
        "phys_pages_bytes": int(values["phys_pages_bytes"]),
        "nprocessors_onln": int(values["nprocessors_onln"]),
        "cpuinfo_processors": int(processors),
        "online": online,
        "meminfo_total_kib": int(meminfo.split()[1]),
        "busybox_uptime_up_0_min": "up 0 min" in uptime,  # sysinfo(2): the container's age
    }


def expected_limited() -> dict[str, object]:
    return {
        "free_total_mib": LIMIT_MIB,
        "sysinfo_totalram": LIMIT_MIB << 20,
        "phys_pages_bytes": LIMIT_MIB << 20,
        "nprocessors_onln": 1,
        "cpuinfo_processors": 1,
        "online": "0",
        "meminfo_total_kib": LIMIT_MIB << 10,
        "busybox_uptime_up_0_min": True,
    }


def host_values() -> dict[str, object]:
    host_kib = int(Path("/proc/meminfo").read_text().split()[1])
    online = Path("/sys/devices/system/cpu/online").read_text().strip()
    return {"meminfo_total_kib": host_kib, "online": online, "cpus": os.cpu_count()}


def assert_host(values: dict[str, object]) -> None:
    host = host_values()
    assert values["meminfo_total_kib"] == host["meminfo_total_kib"]
    assert values["sysinfo_totalram"] > LIMIT_MIB << 20
    assert values["free_total_mib"] > LIMIT_MIB
    assert values["online"] == host["online"]
    assert values["cpuinfo_processors"] == values["nprocessors_onln"] == host["cpus"]


# --- Docker ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dockerd(
    image_archive: Path, prefix: Path, sysinfo_node: tuple[Path, Path], timed
) -> Iterator[Dockerd]:
    """A private dockerd, then ``setup-docker`` on its config and a reload, as a user would."""
    started = time.monotonic()
    with running_dockerd() as daemon:
        timed("dockerd start (own containerd)", started)
        started = time.monotonic()
        daemon.docker("load", "-i", str(image_archive))
        timed("docker load (3 MB image)", started)
        original = daemon.config.read_text()
        assert "kube-lxcfs" not in daemon.runtimes()
        proc = kube_lxcfs(*setup_args("docker", daemon.config, prefix, sysinfo_node))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        backups = list(daemon.config.parent.glob("daemon.json.kube-lxcfs-backup-*"))
        assert [b.read_text() for b in backups] == [original]
        daemon.reload()
        wait_for(lambda: "kube-lxcfs" in daemon.runtimes(), 30, "dockerd to load the runtime")
        yield daemon


def docker_run(dockerd: Dockerd, runtime: str) -> subprocess.CompletedProcess[str]:
    limits = ["-m", f"{LIMIT_MIB}m", "--cpus", "1"]
    args = ["run", "--rm", "--network", "none", "--runtime", runtime, *limits, IMAGE]
    return dockerd.docker(*args, "sh", "-c", SCRIPT, check=False)


def test_setup_docker_keeps_the_users_settings(dockerd: Dockerd, prefix: Path) -> None:
    config = json.loads(dockerd.config.read_text())
    assert config["runtimes"]["kube-lxcfs"] == {"path": str(prefix / "bin" / "kube-lxcfs-runc")}
    assert config["runtimes"]["runc-debug"]["runtimeArgs"] == ["--debug"]
    assert config["bridge"] == "none" and config["oom-score-adjust"] == 0
    assert set(dockerd.runtimes()) >= {"kube-lxcfs", "runc", "runc-debug"}


def test_setup_docker_twice_changes_nothing(
    dockerd: Dockerd, prefix: Path, sysinfo_node: tuple[Path, Path]
) -> None:
    before = dockerd.config.read_text()
    proc = kube_lxcfs(*setup_args("docker", dockerd.config, prefix, sysinfo_node))
    assert proc.returncode == 0, proc.stderr
    assert "unchanged" in proc.stdout and "registered runtime" not in proc.stdout
    assert dockerd.config.read_text() == before
    assert len(list(dockerd.config.parent.glob("daemon.json.kube-lxcfs-backup-*"))) == 1


def test_docker_run_with_the_runtime_sees_the_limits(dockerd: Dockerd, timed) -> None:
    started = time.monotonic()
    proc = docker_run(dockerd, "kube-lxcfs")
    timed("docker run --runtime kube-lxcfs (create to exit)", started)
    assert proc.returncode == 0, proc.stderr + dockerd.log()
    assert parse(proc.stdout) == expected_limited()


def test_docker_run_with_runc_stays_untouched(dockerd: Dockerd, timed) -> None:
    started = time.monotonic()
    proc = docker_run(dockerd, "runc")
    timed("docker run --runtime runc (create to exit)", started)
    assert proc.returncode == 0, proc.stderr
    assert_host(parse(proc.stdout))


BIGGER = {
    **expected_limited(),
    "free_total_mib": 1024,
    "sysinfo_totalram": 1 << 30,
    "phys_pages_bytes": 1 << 30,
    "nprocessors_onln": 2,
    "cpuinfo_processors": 2,
    "online": "0-1",
    "meminfo_total_kib": 1 << 20,
}
"""What the container sees after ``update -m 1g --memory-swap 2g --cpus 2``."""


def check_update(cli: Callable[..., subprocess.CompletedProcess[str]], run: list[str]) -> float:
    """Start a container with ``run`` (detached, 512m / 1 CPU), change its limits in place with
    ``update``, and return how long until ``exec`` sees them (/proc and sysinfo(2) alike)."""
    limits = ["-m", f"{LIMIT_MIB}m", "--cpus", "1"]
    box = cli(*run, "-d", "--runtime", "kube-lxcfs", *limits, IMAGE, "sleep", "3600").stdout
    box = box.strip()
    try:

        def seen() -> dict[str, object]:
            return parse(cli("exec", box, "sh", "-c", SCRIPT).stdout)

        assert seen() == expected_limited()
        cli("update", "-m", "1g", "--memory-swap", "2g", "--cpus", "2", box)
        started = time.monotonic()
        wait_for(lambda: seen() == BIGGER, 10, "the container to see 1 GiB and 2 CPUs")
        return time.monotonic() - started
    finally:
        cli("rm", "-f", box, check=False)


def test_docker_update_is_seen_by_the_running_container(dockerd: Dockerd, summary_line) -> None:
    """``docker update`` changes the limits in place (runc update through the wrapper): the
    next read shows them, without a restart."""
    seconds = check_update(dockerd.docker, ["run", "--network", "none"])
    summary_line(f"docker/podman: docker update 512m/1 CPU -> 1g/2 CPUs seen in {seconds:.2f}s")


def test_doctor_sees_docker_wired(dockerd: Dockerd, sysinfo_node: tuple[Path, Path]) -> None:
    mount_dir, socket = sysinfo_node
    bindir = dockerd.workdir / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "docker").unlink(missing_ok=True)
    (bindir / "docker").symlink_to(DOCKER)
    env = {**dockerd.env, "PATH": f"{bindir}:{os.environ['PATH']}"}
    args = ["--engine-config", str(dockerd.config), "--mount-dir", str(mount_dir)]
    proc = kube_lxcfs("doctor", "--docker", *args, "--seccomp-socket", str(socket), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "runtime 'kube-lxcfs' loaded" in proc.stdout
    assert f"the daemon answers on {socket}" in proc.stdout
    dead = kube_lxcfs("doctor", "--docker", *args, "--seccomp-socket", "/nonexistent.sock", env=env)
    assert dead.returncode == 1 and "nothing answers on /nonexistent.sock" in dead.stdout


def test_setup_docker_undo_leaves_the_users_config(dockerd: Dockerd) -> None:
    """Last in the module: it unregisters the runtime."""
    before = json.loads(dockerd.config.read_text())
    proc = kube_lxcfs("setup-docker", "--undo", "--config", str(dockerd.config))
    assert proc.returncode == 0, proc.stderr
    del before["runtimes"]["kube-lxcfs"]
    assert json.loads(dockerd.config.read_text()) == before
    dockerd.reload()
    wait_for(lambda: "kube-lxcfs" not in dockerd.runtimes(), 30, "dockerd to drop the runtime")


# --- Podman ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def podman(
    image_archive: Path, prefix: Path, sysinfo_node: tuple[Path, Path], timed
) -> Iterator[Podman]:
    with private_podman() as pm:
        started = time.monotonic()
        pm.podman("load", "-i", str(image_archive))
        timed("podman load (3 MB image)", started)
        original = pm.config.read_text()
        proc = kube_lxcfs(*setup_args("podman", pm.config, prefix, sysinfo_node))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        backups = list(pm.config.parent.glob("containers.conf.kube-lxcfs-backup-*"))
        assert [b.read_text() for b in backups] == [original]
        yield pm


def podman_run(podman: Podman, runtime: str) -> subprocess.CompletedProcess[str]:
    limits = ["-m", f"{LIMIT_MIB}m", "--cpus", "1"]
    args = ["run", "--rm", "--network", "none", "--cgroup-parent", podman.cgroup_parent]
    return podman.podman(
        *args, "--runtime", runtime, *limits, IMAGE, "sh", "-c", SCRIPT, check=False
    )


def test_setup_podman_keeps_the_users_settings(podman: Podman, prefix: Path) -> None:
    import tomllib

    config = tomllib.loads(podman.config.read_text())
    launcher = str(prefix / "bin" / "kube-lxcfs-runc")
    assert config["engine"]["runtimes"] == {
        "runc-debian": ["/usr/sbin/runc"],
        "kube-lxcfs": [launcher],
    }
    assert config["engine"]["cgroup_manager"] == "cgroupfs"
    assert "# containers.conf of the podman test" in podman.config.read_text()


def test_podman_run_with_the_runtime_sees_the_limits(podman: Podman, timed) -> None:
    started = time.monotonic()
    proc = podman_run(podman, "kube-lxcfs")
    timed("podman run --runtime kube-lxcfs (create to exit)", started)
    assert proc.returncode == 0, proc.stderr
    assert parse(proc.stdout) == expected_limited()


def test_podman_run_with_runc_stays_untouched(podman: Podman, timed) -> None:
    started = time.monotonic()
    proc = podman_run(podman, "runc")
    timed("podman run --runtime runc (create to exit)", started)
    assert proc.returncode == 0, proc.stderr
    assert_host(parse(proc.stdout))


def test_podman_update_is_seen_by_the_running_container(podman: Podman, summary_line) -> None:
    run = ["run", "--network", "none", "--cgroup-parent", podman.cgroup_parent]
    seconds = check_update(podman.podman, run)
    summary_line(f"docker/podman: podman update 512m/1 CPU -> 1g/2 CPUs seen in {seconds:.2f}s")


def test_doctor_sees_podman_wired(podman: Podman, sysinfo_node: tuple[Path, Path]) -> None:
    mount_dir, socket = sysinfo_node
    proc = kube_lxcfs(
        "doctor",
        "--podman",
        "--engine-config",
        str(podman.config),
        "--mount-dir",
        str(mount_dir),
        "--seccomp-socket",
        str(socket),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "podman runtime: 'kube-lxcfs'" in proc.stdout


def test_setup_podman_undo_restores_the_users_file(podman: Podman) -> None:
    backup = sorted(podman.config.parent.glob("containers.conf.kube-lxcfs-backup-*"))[0]
    proc = kube_lxcfs("setup-podman", "--undo", "--config", str(podman.config))
    assert proc.returncode == 0, proc.stderr
    assert podman.config.read_text() == backup.read_text()
    gone = podman_run(podman, "kube-lxcfs")
    assert gone.returncode != 0
