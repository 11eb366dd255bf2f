"""``kube-lxcfs runtime`` as the OCI runtime of real runc containers (issue: beyond hostPath).

The wrapper is called exactly as containerd calls runc; the containers get our files
and their sysinfo(2) answered by the node daemon's seccomp listener.  The probes are a
static busybox (``free``/``uptime`` use sysinfo) and a static glibc program that prints
sysinfo(2) and ``sysconf(_SC_PHYS_PAGES)``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fidelity import DOC, MEASURED, ROWS, Row, Verdict, load_columns, measure_all, render
from runc_harness import Resources, Runc

from support.fsdaemons import start_kube_lxcfs
from support.waiting import wait_for

MiB = 1024 * 1024
LIMIT = 256 * MiB


@dataclass
class WrappedRunc(Runc):
    """The harness's runc, but every call goes through ``python -m kube_lxcfs runtime``."""

    @property
    def base(self) -> list[str]:
        return [sys.executable, "-m", "kube_lxcfs", "runtime", "--root", str(self.state_root)]


@pytest.fixture
def wrapped(
    sysinfo_node: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[WrappedRunc]:
    mount_dir, socket = sysinfo_node
    monkeypatch.setenv("KUBE_LXCFS_MOUNT_DIR", str(mount_dir))
    monkeypatch.setenv("KUBE_LXCFS_SECCOMP_SOCKET", str(socket))
    monkeypatch.setenv("KUBE_LXCFS_RUNTIME_CONFIG", str(tmp_path / "absent.json"))
    monkeypatch.setenv("KUBE_LXCFS_RUNTIME_LOG", str(tmp_path / "wrapper.log"))
    runner = WrappedRunc()
    try:
        yield runner
    finally:
        runner.cleanup()


def probe_values(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in text.splitlines() if line)}


def free_total_kb(text: str) -> int:
    mem = next(line for line in text.splitlines() if line.startswith("Mem:"))
    return int(mem.split()[1])


def test_sysinfo_and_proc_show_the_container_limit(
    wrapped: WrappedRunc, probe_rootfs: Path
) -> None:
    script = "sysinfo-probe; echo ---; free; echo ---; head -1 /proc/meminfo"
    proc = wrapped.run(probe_rootfs, ["sh", "-c", script], resources=Resources(memory=LIMIT))
    assert proc.returncode == 0, proc.stderr
    probe, free, meminfo = proc.stdout.split("---\n")
    values = probe_values(probe)
    assert values["totalram"] == LIMIT
    assert values["phys_pages_bytes"] == LIMIT  # glibc's _SC_PHYS_PAGES is sysinfo(2)
    assert 0 < values["freeram"] <= LIMIT
    assert values["uptime"] < 60  # the container's age, not the host's
    assert 1 <= values["procs"] < 50
    # busybox free mixes sysinfo totals with /proc/meminfo's Cached: both virtual here.
    assert free_total_kb(free) == LIMIT // 1024
    used = int(next(line for line in free.splitlines() if line.startswith("Mem:")).split()[2])
    assert 0 <= used <= LIMIT // 1024
    assert meminfo.split()[1] == str(LIMIT // 1024)


def test_busybox_uptime_is_the_container_age(wrapped: WrappedRunc, probe_rootfs: Path) -> None:
    proc = wrapped.run(probe_rootfs, ["uptime"], resources=Resources(memory=LIMIT))
    assert proc.returncode == 0, proc.stderr
    assert "up 0 min" in proc.stdout, proc.stdout


def test_without_the_wrapper_the_same_container_sees_the_host(
    sysinfo_node: tuple[Path, Path], probe_rootfs: Path
) -> None:
    runner = Runc()
    try:
        proc = runner.run(probe_rootfs, ["sysinfo-probe"], resources=Resources(memory=LIMIT))
    finally:
        runner.cleanup()
    assert proc.returncode == 0, proc.stderr
    assert probe_values(proc.stdout)["totalram"] > LIMIT


def test_existing_seccomp_profile_is_merged(
    wrapped: WrappedRunc, probe_rootfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A profile that denies mkdir keeps denying it, and sysinfo is still answered."""
    original = wrapped._bundle

    def with_profile(*args, **kwargs):  # type: ignore[no-untyped-def]
        container_id, bundle, cgroups_path = original(*args, **kwargs)
        config = json.loads((bundle / "config.json").read_text())
        config["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
            ],
        }
        (bundle / "config.json").write_text(json.dumps(config))
        return container_id, bundle, cgroups_path

    monkeypatch.setattr(wrapped, "_bundle", with_profile)
    proc = wrapped.run(
        probe_rootfs,
        ["sh", "-c", "mkdir /tmp/x; echo mkdir=$?; sysinfo-probe"],
        resources=Resources(memory=LIMIT),
    )
    assert proc.returncode == 0, proc.stderr
    assert "mkdir=1" in proc.stdout
    assert "Operation not permitted" in proc.stderr
    assert probe_values(proc.stdout.split("\n", 1)[1])["totalram"] == LIMIT


def test_passthrough_commands_are_runc_itself(wrapped: WrappedRunc, probe_rootfs: Path) -> None:
    container = wrapped.start(probe_rootfs, resources=Resources(memory=LIMIT))
    plain = ["runc", "--root", str(wrapped.state_root)]
    ours = wrapped.base
    for command in (["state", container.id], ["list", "--format", "json"]):
        theirs = subprocess.run([*plain, *command], capture_output=True, text=True, check=True)
        mine = subprocess.run(
            [*ours[:-2], *ours[-2:], *command], capture_output=True, text=True, check=True
        )
        assert json.loads(mine.stdout) == json.loads(theirs.stdout)
    # exec goes through unchanged too, and sees the mounted files.
    assert container.output("head", "-1", "/proc/meminfo").split()[1] == str(LIMIT // 1024)


def test_wrapper_without_a_listening_daemon_still_starts_containers(
    wrapped: WrappedRunc, probe_rootfs: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """runc would refuse an unreachable listenerPath: the wrapper leaves sysinfo alone then."""
    monkeypatch.setenv("KUBE_LXCFS_SECCOMP_SOCKET", str(tmp_path / "nobody.sock"))
    proc = wrapped.run(probe_rootfs, ["sysinfo-probe"], resources=Resources(memory=LIMIT))
    assert proc.returncode == 0, proc.stderr
    assert probe_values(proc.stdout)["totalram"] > LIMIT
    log = (tmp_path / "wrapper.log").read_text()
    assert "seccomp=unchanged" in log


def test_daemon_restart_behaviour_is_the_documented_one(
    probe_rootfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/runtime.md "Daemon restarts": processes filtered before the daemon died get
    ENOSYS from sysinfo(2); ``exec`` needs the daemon; after the restart new containers
    and new execs are answered again."""
    socket = tmp_path / "seccomp.sock"
    mountpoint = tmp_path / "mnt"
    fs = start_kube_lxcfs(mountpoint, "--seccomp-socket", str(socket))
    monkeypatch.setenv("KUBE_LXCFS_MOUNT_DIR", str(mountpoint))
    monkeypatch.setenv("KUBE_LXCFS_SECCOMP_SOCKET", str(socket))
    monkeypatch.setenv("KUBE_LXCFS_RUNTIME_CONFIG", str(tmp_path / "absent.json"))
    runner = WrappedRunc()
    try:
        loop = (
            "while true; do sysinfo-probe > /tmp/probe.new 2>&1; mv /tmp/probe.new /tmp/probe; done"
        )
        container = runner.start(
            probe_rootfs, resources=Resources(memory=LIMIT), args=("sh", "-c", loop)
        )
        assert probe_values(container.output("sysinfo-probe"))["totalram"] == LIMIT
        fs.stop()
        failed = container.exec(["sysinfo-probe"], check=False)
        assert failed.returncode != 0  # runc exec cannot reach the listener
        fs = start_kube_lxcfs(mountpoint, "--seccomp-socket", str(socket))
        assert probe_values(container.output("sysinfo-probe"))["totalram"] == LIMIT

        # The init's filter lost its listener with the old daemon: ENOSYS from now on.
        def init_sees_enosys() -> bool:
            text = container.exec(["cat", "/tmp/probe"], check=False).stdout
            return "Function not implemented" in text

        wait_for(init_sees_enosys, timeout=20, what="the container init's probe to fail")
        fresh = runner.run(probe_rootfs, ["sysinfo-probe"], resources=Resources(memory=LIMIT))
        assert probe_values(fresh.stdout)["totalram"] == LIMIT
    finally:
        runner.cleanup()
        fs.stop()


# --- the fidelity matrix in RuntimeClass mode -------------------------------------------


@pytest.fixture(scope="module")
def wrapper_measurements(
    full_rootfs: Path, sysinfo_node: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Verdict, str]]:
    """Every matrix row, in containers created through the wrapper (which adds the files)."""
    mount_dir, socket = sysinfo_node
    settings = tmp_path_factory.mktemp("wrapper-settings")

    @contextlib.contextmanager
    def session() -> Iterator[WrappedRunc]:
        runner = WrappedRunc()
        try:
            yield runner
        finally:
            runner.cleanup()

    with pytest.MonkeyPatch.context() as env:
        env.setenv("KUBE_LXCFS_MOUNT_DIR", str(mount_dir))
        env.setenv("KUBE_LXCFS_SECCOMP_SOCKET", str(socket))
        env.setenv("KUBE_LXCFS_RUNTIME_CONFIG", str(settings / "absent.json"))
        return measure_all(full_rootfs, None, session=session, virtual_sysinfo=True)


@pytest.mark.parametrize("row", ROWS, ids=[row.key for row in ROWS])
def test_program_reports_with_the_runtime_wrapper(
    row: Row, wrapper_measurements: dict[str, tuple[Verdict, str]]
) -> None:
    verdict, output = wrapper_measurements[row.key]
    assert verdict.ok, f"{row.program} {row.call}: {verdict.detail}\n--- output ---\n{output}"


def test_runtime_column_of_the_published_table_is_the_measured_one(
    wrapper_measurements: dict[str, tuple[Verdict, str]],
) -> None:
    measured = {key: verdict.shown for key, (verdict, _) in wrapper_measurements.items()}
    recorded = MEASURED / "runtime-cgroup-v1.json"
    if os.environ.get("KUBE_LXCFS_UPDATE_DOCS") == "1":
        recorded.write_text(json.dumps(measured, indent=1, ensure_ascii=False) + "\n")
        DOC.write_text(render(load_columns()))
    assert load_columns().get("runtime-cgroup-v1") == measured, (
        f"{recorded} differs from this run (KUBE_LXCFS_UPDATE_DOCS=1 rewrites it)"
    )
    assert DOC.read_text() == render(load_columns())


def _send_to_listener(path: Path, payload: bytes, fds: tuple[int, ...] = ()) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(path))
        if fds:
            socket.send_fds(conn, [payload], list(fds))
        else:
            conn.sendall(payload)


def test_malformed_messages_on_the_seccomp_socket_do_not_stop_sysinfo(
    sysinfo_node: tuple[Path, Path], wrapped: WrappedRunc, probe_rootfs: Path
) -> None:
    """Only root reaches the socket (0600), but a runtime that sends something else than an
    OCI state (a list, a string ``fds``, a non-numeric pid, a pipe as the notify fd, bytes
    that are not JSON) must not end the listener: every wrapped container's sysinfo(2) would
    then wait for an answer for ever (docs/security.md)."""
    _, listener = sysinfo_node
    read_end, write_end = os.pipe()
    try:
        _send_to_listener(listener, b"[]")
        _send_to_listener(listener, b'{"fds": "seccompFd"}', (read_end,))
        _send_to_listener(listener, b'{"state": [], "fds": ["seccompFd"]}', (read_end,))
        _send_to_listener(listener, b'{"pid": "x", "fds": ["seccompFd"]}', (read_end,))
        _send_to_listener(listener, b"\xff" * 100)
    finally:
        os.close(read_end)
        os.close(write_end)
    proc = wrapped.run(
        probe_rootfs, ["sysinfo-probe"], resources=Resources(memory=LIMIT), timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert probe_values(proc.stdout)["totalram"] == LIMIT
