"""The config edits of setup-docker / setup-podman (pure), and the files they write.

The real daemons load the results in tests/containers/test_docker_podman.py.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tomllib
from pathlib import Path

import pytest

from kube_lxcfs.runtime.engines import (
    DOCKER,
    PODMAN,
    EngineConfigError,
    docker_registered,
    docker_with_runtime,
    docker_without_runtime,
    podman_conf_override,
    podman_registered,
    podman_with_runtime,
    podman_without_runtime,
    setup_engine,
    undo_engine,
    wrapper_env,
)

LAUNCHER = "/opt/kl/bin/kube-lxcfs-runc"
PY = sys.version_info[:2]


def test_docker_adds_the_runtime_and_keeps_everything_else() -> None:
    user = '{"log-level": "warn", "runtimes": {"nvidia": {"path": "/usr/bin/nvidia"}}}'
    new = docker_with_runtime(user, LAUNCHER)
    assert json.loads(new) == {
        "log-level": "warn",
        "runtimes": {"nvidia": {"path": "/usr/bin/nvidia"}, "kube-lxcfs": {"path": LAUNCHER}},
    }
    assert docker_with_runtime(new, LAUNCHER) == new
    assert json.loads(docker_without_runtime(new)) == json.loads(user)


def test_docker_from_nothing_and_back() -> None:
    new = docker_with_runtime("", LAUNCHER)
    assert docker_registered(new) == LAUNCHER
    assert json.loads(docker_without_runtime(new)) == {}
    assert docker_without_runtime("{}") == "{}"


@pytest.mark.parametrize("text", ["{", "[1]", '{"runtimes": []}'])
def test_docker_refuses_what_it_cannot_edit(text: str) -> None:
    with pytest.raises(EngineConfigError):
        docker_with_runtime(text, LAUNCHER)


USER_CONF = '[engine]\ncgroup_manager = "cgroupfs"\n'


def test_podman_appends_a_marked_table_and_removes_it_exactly() -> None:
    new = podman_with_runtime(USER_CONF, LAUNCHER)
    assert tomllib.loads(new)["engine"] == {
        "cgroup_manager": "cgroupfs",
        "runtimes": {"kube-lxcfs": [LAUNCHER]},
    }
    assert podman_with_runtime(new, LAUNCHER) == new
    assert podman_without_runtime(new) == USER_CONF
    assert podman_with_runtime(new, "/other") != new
    assert podman_registered(podman_with_runtime(new, "/other")) == "/other"


def test_podman_joins_an_existing_runtimes_table() -> None:
    user = USER_CONF + '\n[engine.runtimes]\nrunc = ["/usr/sbin/runc"]\n\n[network]\n'
    new = podman_with_runtime(user, LAUNCHER)
    assert tomllib.loads(new)["engine"]["runtimes"] == {
        "runc": ["/usr/sbin/runc"],
        "kube-lxcfs": [LAUNCHER],
    }
    assert new.count("[engine.runtimes]") == 1
    assert podman_with_runtime(new, LAUNCHER) == new
    assert podman_without_runtime(new) == user


def test_podman_empty_file_is_a_drop_in() -> None:
    new = podman_with_runtime("", LAUNCHER)
    assert tomllib.loads(new) == {"engine": {"runtimes": {"kube-lxcfs": [LAUNCHER]}}}
    assert podman_without_runtime(new) == ""


@pytest.mark.parametrize(
    "text",
    [
        '[engine.runtimes]\nkube-lxcfs = ["/usr/bin/elsewhere"]\n',
        "[engine\n",
        '[engine]\nruntimes = { runc = ["/usr/sbin/runc"] }\n',
    ],
)
def test_podman_refuses_what_it_cannot_edit(text: str) -> None:
    with pytest.raises(EngineConfigError):
        podman_with_runtime(text, LAUNCHER)


def test_launcher_exports_only_non_default_settings() -> None:
    assert wrapper_env("/var/lib/lxcfs", "/run/kube-lxcfs/seccomp.sock", "runc") == {}
    assert wrapper_env("/srv/lxcfs", "", "crun") == {
        "KUBE_LXCFS_MOUNT_DIR": "/srv/lxcfs",
        "KUBE_LXCFS_SECCOMP_SOCKET": "",
        "KUBE_LXCFS_RUNTIME": "crun",
    }


def test_setup_writes_backup_wrapper_and_config(tmp_path: Path) -> None:
    config = tmp_path / "daemon.json"
    config.write_text('{"debug": true}')
    prefix = tmp_path / "prefix"
    dry = setup_engine(DOCKER, config=config, prefix=prefix, dry_run=True, python_version=PY)
    assert dry.ok and any(line.startswith("+") for line in dry.lines)
    assert config.read_text() == '{"debug": true}' and not prefix.exists()
    env = {"KUBE_LXCFS_MOUNT_DIR": "/srv/a b"}
    report = setup_engine(DOCKER, config=config, prefix=prefix, env=env, python_version=PY)
    assert report.ok, report.lines
    launcher = prefix / "bin" / "kube-lxcfs-runc"
    assert docker_registered(config.read_text()) == str(launcher)
    assert "export KUBE_LXCFS_MOUNT_DIR='/srv/a b'" in launcher.read_text()
    assert (prefix / "lib" / "kube-lxcfs" / "kube-lxcfs-runc.pyz").stat().st_size > 0
    (backup,) = tmp_path.glob("daemon.json.kube-lxcfs-backup-*")
    assert backup.read_text() == '{"debug": true}'


def test_old_python_is_reported_and_nothing_written(tmp_path: Path) -> None:
    config = tmp_path / "daemon.json"
    report = setup_engine(DOCKER, config=config, prefix=tmp_path / "p", python_version=(3, 8))
    assert not report.ok and "python3 3.8" in report.lines[0]
    assert list(tmp_path.iterdir()) == []


def test_undo_of_our_own_drop_in_removes_it(tmp_path: Path) -> None:
    dropin = tmp_path / "99-kube-lxcfs.conf"
    podman = dataclasses.replace(PODMAN, default_config=str(dropin))
    assert setup_engine(podman, config=dropin, prefix=tmp_path / "p", python_version=PY).ok
    report = undo_engine(podman, config=dropin)
    assert report.ok and not dropin.exists(), report.lines
    assert undo_engine(podman, config=dropin).lines[0].startswith("unchanged")


def test_no_permission_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """As a user who may not write the config: one line naming the path, exit 1."""
    import subprocess

    tmp_path.chmod(0o755)
    config = tmp_path / "daemon.json"
    config.write_text("{}")
    nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    proc = subprocess.run(
        [*nobody, sys.executable, "-m", "kube_lxcfs", "setup-docker", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Permission denied (run it as root)" in proc.stderr
    assert config.read_text() == "{}"


def test_containers_conf_in_the_environment_is_pointed_out() -> None:
    dropin = Path("/etc/containers/containers.conf.d/99-kube-lxcfs.conf")
    assert podman_conf_override(dropin, {}) == ""
    assert podman_conf_override(Path("/srv/c.conf"), {"CONTAINERS_CONF": "/srv/c.conf"}) == ""
    warning = podman_conf_override(dropin, {"CONTAINERS_CONF": "/srv/c.conf"})
    assert "setup-podman --config /srv/c.conf" in warning


def test_the_launcher_names_the_real_interpreter(tmp_path: Path) -> None:
    """Not ``python3`` looked up at each start: dockerd's PATH differs from the shell's, and a
    version manager's shim costs a start of its own on every runtime call."""
    import os
    import shlex
    import subprocess

    report = setup_engine(DOCKER, config=tmp_path / "daemon.json", prefix=tmp_path / "p")
    assert report.ok, report.lines
    exec_line = (tmp_path / "p" / "bin" / "kube-lxcfs-runc").read_text().splitlines()[-1]
    interpreter = shlex.split(exec_line)[1]
    real = subprocess.run(
        ["python3", "-c", "import sys; print(sys.executable)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert interpreter == real and os.access(interpreter, os.X_OK)
    assert shlex.split(exec_line)[2:4] == ["-I", "-S"]
