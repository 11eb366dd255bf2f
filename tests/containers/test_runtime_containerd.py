"""containerd (Debian's) with ``kube-lxcfs-runc`` as its runc binary: the checks via ``ctr run``.

Also ``setup-node`` for real: containerd accepts the config it edits, and the zipapp
it installs runs containers as containerd's runc binary on its own.

containerd starts the wrapper exactly as it would on a node whose runtime handler
points ``BinaryName`` at it (``ctr run --runc-binary``).  The image is built here from
the static busybox rootfs plus the static sysinfo probe, imported from a tarball.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from containerd_harness import Containerd, build_oci_archive, running_containerd

from kube_lxcfs.runtime.install import CONTAINERD_CONFIG, ZIPAPP, setup_node

HERE = Path(__file__).parent
SRC = HERE.parents[1] / "src"
IMAGE = "docker.io/library/kube-lxcfs-probe:test"
LIMIT = 256 * 1024 * 1024

pytestmark = pytest.mark.skipif(
    shutil.which("containerd") is None, reason="containerd is not installed (deps/apt)"
)


@pytest.fixture(scope="module")
def wrapper_binary(
    sysinfo_node: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """An executable like the installed ``kube-lxcfs-runc``, with this node's settings."""
    mount_dir, socket = sysinfo_node
    path = tmp_path_factory.mktemp("bin") / "kube-lxcfs-runc"
    path.write_text(
        "#!/bin/sh\n"
        f"export PYTHONPATH={SRC}\n"
        f"export KUBE_LXCFS_MOUNT_DIR={mount_dir}\n"
        f"export KUBE_LXCFS_SECCOMP_SOCKET={socket}\n"
        f"export KUBE_LXCFS_RUNTIME_CONFIG={path.parent}/absent.json\n"
        f"export KUBE_LXCFS_RUNTIME_LOG={path.parent}/wrapper.log\n"
        f'exec {sys.executable} -m kube_lxcfs.runtime "$@"\n'
    )
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def containerd(
    probe_rootfs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Containerd]:
    workdir = tmp_path_factory.mktemp("image")
    rootfs = probe_rootfs
    archive = workdir / "image.tar"
    build_oci_archive(rootfs, archive, IMAGE, ["sh"])
    with running_containerd() as daemon:
        daemon.ctr("images", "import", str(archive), timeout=300)
        assert IMAGE in daemon.ctr("images", "ls", "-q").stdout
        yield daemon


def ctr_run(
    containerd: Containerd, wrapper: Path | None, *command: str
) -> subprocess.CompletedProcess[str]:
    runtime_args = ["--runc-binary", str(wrapper)] if wrapper else []
    return containerd.ctr(
        "run",
        "--rm",
        *runtime_args,
        "--memory-limit",
        str(LIMIT),
        IMAGE,
        f"t{uuid.uuid4().hex[:8]}",
        *command,
        timeout=180,
        check=False,
    )


def probe_values(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in text.splitlines() if line)}


def test_ctr_run_with_the_wrapper_sees_the_limits(
    containerd: Containerd, wrapper_binary: Path
) -> None:
    proc = ctr_run(
        containerd,
        wrapper_binary,
        "sh",
        "-c",
        "sysinfo-probe; echo ---; free; echo ---; head -1 /proc/meminfo; uptime",
    )
    assert proc.returncode == 0, proc.stderr + containerd.log()[-2000:]
    probe, free, rest = proc.stdout.split("---\n")
    values = probe_values(probe)
    assert values["totalram"] == LIMIT
    assert values["phys_pages_bytes"] == LIMIT
    mem = next(line for line in free.splitlines() if line.startswith("Mem:")).split()
    assert int(mem[1]) == LIMIT // 1024
    assert 0 <= int(mem[2]) <= LIMIT // 1024
    meminfo, uptime = rest.splitlines()[:2]
    assert meminfo.split()[1] == str(LIMIT // 1024)
    assert "up 0 min" in uptime
    log = (wrapper_binary.parent / "wrapper.log").read_text()
    assert "create" in log and "seccomp=new allow-by-default profile" in log


def test_ctr_run_without_the_wrapper_sees_the_host(containerd: Containerd) -> None:
    proc = ctr_run(containerd, None, "sysinfo-probe")
    assert proc.returncode == 0, proc.stderr
    assert probe_values(proc.stdout)["totalram"] > LIMIT
    assert os.path.exists("/proc/meminfo")


@pytest.fixture
def host_root(tmp_path: Path) -> Path:
    config = tmp_path / CONTAINERD_CONFIG.lstrip("/")
    config.parent.mkdir(parents=True)
    default = subprocess.run(
        ["containerd", "config", "default"], capture_output=True, text=True, check=True
    ).stdout
    config.write_text(default)
    return tmp_path


def test_containerd_loads_the_registered_handler(host_root: Path) -> None:
    version = sys.version_info[:2]
    report = setup_node(host_root, python_version=(version[0], version[1]))
    assert report.ok, report.lines
    dump = subprocess.run(
        [
            "containerd",
            "--config",
            str(host_root / CONTAINERD_CONFIG.lstrip("/")),
            "config",
            "dump",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    table, options = dump.split("runtimes.kube-lxcfs]", 1)[1].split("runtimes.kube-lxcfs.options]")
    assert 'runtime_type = "io.containerd.runc.v2"' in table
    assert 'BinaryName = "/usr/local/bin/kube-lxcfs-runc"' in options.split("\n[", 1)[0]


def test_installed_zipapp_runs_containers_for_containerd(
    host_root: Path, containerd: Containerd, wrapper_binary: Path, tmp_path: Path
) -> None:
    """The zipapp alone (no package on sys.path) is containerd's runc binary."""
    version = sys.version_info[:2]
    assert setup_node(host_root, python_version=(version[0], version[1])).ok
    zipapp = host_root / ZIPAPP.lstrip("/")
    # Same settings as the wrapper fixture, but the code comes only from the zipapp.
    settings = [
        line
        for line in wrapper_binary.read_text().splitlines()
        if line.startswith("export KUBE_LXCFS")
    ]
    launcher = tmp_path / "kube-lxcfs-runc"
    launcher.write_text(
        "#!/bin/sh\n" + "\n".join(settings) + f'\nexec {sys.executable} -I "{zipapp}" "$@"\n'
    )
    launcher.chmod(0o755)
    proc = containerd.ctr(
        "run",
        "--rm",
        "--runc-binary",
        str(launcher),
        "--memory-limit",
        str(LIMIT),
        IMAGE,
        f"z{uuid.uuid4().hex[:8]}",
        "sysinfo-probe",
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert probe_values(proc.stdout)["totalram"] == LIMIT
