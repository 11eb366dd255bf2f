"""``kube-lxcfs run`` through the real path: cgroups, mount namespace, FUSE files, signals."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from limit_change import Viewer, set_limits

from support.fsdaemons import wait_for

CGROUP_ROOT = Path("/sys/fs/cgroup")
MiB = 1024 * 1024

HANDLER = """
import signal, sys
def handler(signum, frame):
    print("got", signal.Signals(signum).name, flush=True)
    sys.exit(42)
for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1"):
    signal.signal(getattr(signal, name), handler)
print("ready", flush=True)
signal.pause()
"""


def run_leftovers() -> list[Path]:
    """Cgroups of ``kube-lxcfs run`` processes that have exited (leaks, not runs in progress).

    Other runs, e.g. of other checkouts' tests, may be going on at the same time: a cgroup of
    a live runner is theirs, not a leak.
    """
    found = sorted(CGROUP_ROOT.glob("*/kube-lxcfs-run-*")) + sorted(
        CGROUP_ROOT.glob("kube-lxcfs-run-*")
    )
    return [path for path in found if not _runner_alive(path)]


def _runner_alive(cgroup: Path) -> bool:
    pid = cgroup.name.removeprefix("kube-lxcfs-run-").split("-", 1)[0]
    return pid.isdigit() and Path(f"/proc/{pid}").exists()


@pytest.fixture(autouse=True)
def _no_cgroup_left_behind() -> None:
    before = set(run_leftovers())
    yield
    leaked = set(run_leftovers()) - before
    assert not leaked, f"kube-lxcfs run left cgroups: {sorted(map(str, leaked))}"


def kube_lxcfs_run(
    options: Sequence[str], command: Sequence[str], mount_dir: Path | None, **kwargs
) -> list[str]:
    """The argv of ``kube-lxcfs run`` (``mount_dir`` None: let it choose)."""
    where = ["--mount-dir", str(mount_dir)] if mount_dir is not None else []
    return [sys.executable, "-m", "kube_lxcfs", "run", *where, *options, "--", *command]


def run_cli(
    options: Sequence[str], command: Sequence[str], mount_dir: Path | None, **kwargs
) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("capture_output", True)
    return subprocess.run(
        kube_lxcfs_run(options, command, mount_dir), check=False, text=True, timeout=60, **kwargs
    )


def read_line(stream, deadline_s: float = 20.0) -> str:
    """One line from a pipe, failing after a deadline instead of hanging."""
    ready, _, _ = select.select([stream], [], [], deadline_s)
    assert ready, "no output before the deadline"
    return stream.readline()


# --- what the command sees --------------------------------------------------


def test_limits_are_what_the_command_sees(fs_mount_dir: Path) -> None:
    script = (
        "free -m | awk '/^Mem:/ {print $2}'; nproc; grep -c ^processor /proc/cpuinfo; "
        "cat /sys/devices/system/cpu/online; "
        "python3 -c 'import os; print(os.cpu_count())'"
    )
    proc = run_cli(["--memory", "512Mi", "--cpus", "1"], ["sh", "-c", script], fs_mount_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["512", "1", "1", "0", "1"]


VIEW_ON_REQUEST = """
import os, sys
def meminfo_total():
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1])
def cpuinfo_processors():
    with open("/proc/cpuinfo") as f:
        return sum(line.startswith("processor") for line in f)
def online():
    with open("/sys/devices/system/cpu/online") as f:
        return f.read().strip()
print(os.getpid(), flush=True)
for _ in sys.stdin:
    print(meminfo_total(), cpuinfo_processors(), online(), os.cpu_count(), flush=True)
"""
"""Prints its pid, then what it sees (MemTotal kB, cpuinfo processors, online, os.cpu_count())
once per line of input: a long-running program that re-reads on demand."""


def test_a_limit_changed_in_place_is_seen_at_once(fs_mount_dir: Path, summary_line) -> None:
    """What an in-place pod resize does to the cgroup, done by hand under kube-lxcfs run:
    raise memory and CPUs, then lower them, while the command runs; it sees each change
    within a second, without a restart (nothing caches a limit for longer: docs/run.md)."""
    assert (os.cpu_count() or 1) >= 2, "needs a machine with two CPUs"
    options = ["--mount-dir", str(fs_mount_dir), "--memory", "512Mi", "--cpus", "1"]
    viewer = Viewer([*options, "--keep-affinity"], [sys.executable, "-c", VIEW_ON_REQUEST])
    try:
        assert viewer.view() == f"{512 * 1024} 1 0 1"
        for memory_mib, cpus in ((1024, 2), (256, 1)):
            set_limits(viewer.pid, memory_mib, cpus)
            changed = time.monotonic()
            online = "0-1" if cpus == 2 else "0"
            expected = f"{memory_mib * 1024} {cpus} {online} {cpus}"
            wait_for(lambda want=expected: viewer.view() == want, 1.0, f"the view {expected}")
            seen_after = time.monotonic() - changed
            assert seen_after < 1.0
            summary_line(
                f"kube-lxcfs run: limits changed to {memory_mib}Mi/{cpus} CPU(s) in place,"
                f" seen after {seen_after * 1000:.0f} ms"
            )
    finally:
        assert viewer.close() == 0


def test_cpuset_sets_the_affinity(fs_mount_dir: Path) -> None:
    proc = run_cli(
        ["--cpuset", "0"],
        ["sh", "-c", "nproc; grep Cpus_allowed_list /proc/self/status"],
        fs_mount_dir,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "Cpus_allowed_list:", "0"]


def test_keep_affinity_leaves_the_mask(fs_mount_dir: Path) -> None:
    proc = run_cli(["--cpus", "1", "--keep-affinity"], ["nproc"], fs_mount_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(len(os.sched_getaffinity(0)))


def test_limits_land_in_the_commands_cgroup(fs_mount_dir: Path) -> None:
    script = (
        "m=$(awk -F: '$2 == \"memory\" {print $3}' /proc/self/cgroup); "
        "c=$(awk -F: '$2 ~ /(^|,)cpu(,|$)/ {print $3}' /proc/self/cgroup); "
        "cat /sys/fs/cgroup/memory$m/memory.limit_in_bytes "
        "/sys/fs/cgroup/memory$m/memory.memsw.limit_in_bytes "
        "/sys/fs/cgroup/cpu$c/cpu.cfs_quota_us /sys/fs/cgroup/cpu$c/cpu.cfs_period_us"
    )
    proc = run_cli(
        ["--memory", "256Mi", "--memory-swap", "384Mi", "--cpus", "1500m"],
        ["sh", "-c", script],
        fs_mount_dir,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(256 * MiB), str(384 * MiB), "150000", "100000"]


def test_the_binds_stay_in_the_commands_namespace(fs_mount_dir: Path) -> None:
    proc = run_cli([], ["grep", "-c", " /proc/meminfo ", "/proc/self/mountinfo"], fs_mount_dir)
    assert proc.stdout.strip() == "1", proc.stderr
    host = Path("/proc/self/mountinfo").read_text()
    assert " /proc/meminfo " not in host


def test_stdin_and_output_pass_through(fs_mount_dir: Path) -> None:
    proc = run_cli(
        [], ["sh", "-c", "tr a-z A-Z; echo to-stderr >&2"], fs_mount_dir, input="hello\n"
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "HELLO\n", "to-stderr\n")


# --- exit codes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["true"], 0),
        (["sh", "-c", "exit 7"], 7),
        (["sh", "-c", "kill -KILL $$"], 128 + 9),
        (["sh", "-c", "kill -TERM $$"], 128 + 15),
        (["kube-lxcfs-no-such-command"], 127),
        (["/etc/hostname"], 126),
    ],
)
def test_exit_code_is_the_commands(command: list[str], code: int, fs_mount_dir: Path) -> None:
    proc = run_cli(["--memory", "64Mi"], command, fs_mount_dir)
    assert proc.returncode == code, proc.stderr
    if code >= 126 and code < 128:
        assert proc.stderr.count("\n") == 1
        assert proc.stderr.startswith(f"kube-lxcfs run: {command[0]}: ")


# --- signals ----------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1])
def test_signals_sent_to_run_reach_the_command(signum: int, fs_mount_dir: Path) -> None:
    runner = subprocess.Popen(
        kube_lxcfs_run([], [sys.executable, "-c", HANDLER], fs_mount_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert read_line(runner.stdout) == "ready\n"
        runner.send_signal(signum)
        assert runner.wait(timeout=20) == 42
        assert runner.stdout.read() == f"got {signal.Signals(signum).name}\n"
    finally:
        runner.kill()
        runner.wait()


def test_ctrl_c_on_the_terminal_reaches_the_command_once(fs_mount_dir: Path) -> None:
    argv = kube_lxcfs_run([], [sys.executable, "-c", HANDLER], fs_mount_dir)
    pid, terminal = pty.fork()
    if pid == 0:  # pragma: no cover - the child execs
        os.execvpe(argv[0], argv, os.environ)
    output = b""
    status = None
    try:
        deadline = time.monotonic() + 20
        while b"ready" not in output:
            assert time.monotonic() < deadline, output
            if select.select([terminal], [], [], 1)[0]:
                output += os.read(terminal, 1024)
        os.write(terminal, b"\x03")  # the line discipline sends SIGINT to the foreground group
        _, status = os.waitpid(pid, 0)
        with contextlib.suppress(OSError):  # EIO once the other side is closed
            while select.select([terminal], [], [], 0.5)[0]:
                output += os.read(terminal, 1024)
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 42
    assert output.count(b"got SIGINT") == 1


def test_sigterm_to_run_kills_an_unhandling_command_and_cleans_up(fs_mount_dir: Path) -> None:
    runner = subprocess.Popen(
        kube_lxcfs_run([], ["sh", "-c", "echo ready; exec sleep 300"], fs_mount_dir),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert read_line(runner.stdout) == "ready\n"
        runner.terminate()
        assert runner.wait(timeout=20) == 128 + signal.SIGTERM
    finally:
        runner.kill()
        runner.wait()


# --- cleanup ----------------------------------------------------------------


def _memory_cgroup(text: str) -> Path:
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return CGROUP_ROOT / "memory" / path.lstrip("/")
    raise AssertionError(f"no memory cgroup in {text!r}")


@pytest.mark.parametrize("ending", ["exit 1", "kill -KILL $$", "sleep 300 & exit 0"])
def test_cgroup_is_removed_however_the_command_ends(ending: str, fs_mount_dir: Path) -> None:
    proc = run_cli(
        ["--memory", "64Mi"], ["sh", "-c", f"cat /proc/self/cgroup; {ending}"], fs_mount_dir
    )
    cgroup = _memory_cgroup(proc.stdout)
    assert cgroup.name.startswith("kube-lxcfs-run-")
    assert not cgroup.exists()


# --- bad usage ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "mentions"),
    [
        (["--memory", "5x"], "512Mi"),
        (["--memory=-1Gi"], "512Mi"),
        (["--memory-swap", "lots"], "512Mi"),
        (["--cpus", "abc"], "1500m"),
        (["--cpus", "1m"], "1500m"),
        (["--cpuset", "1-0"], "0-1"),
        (["--cpuset", "4096"], "0-1"),
        (["--memory", "1Gi", "--memory-swap", "512Mi"], "--memory-swap"),
        (["--memory-swap", "1Gi"], "--memory-swap"),
    ],
)
def test_bad_values_are_a_one_line_usage_error(options: list[str], mentions: str) -> None:
    proc = run_cli(options, ["true"], None)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("kube-lxcfs run: ")
    assert mentions in proc.stderr


def test_no_command_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kube_lxcfs", "run", "--memory", "1Gi"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "COMMAND" in proc.stderr


def test_a_dead_mount_dir_is_refused(tmp_path: Path) -> None:
    proc = run_cli([], ["true"], tmp_path)
    assert proc.returncode == 125
    assert f"no live kube-lxcfs or lxcfs filesystem at {tmp_path}" in proc.stderr


# --- the private filesystem (no --mount-dir) -----------------------------------


def _readme_run_command() -> str:
    """The README's first command, without the bootstrap that precedes it."""
    readme = Path(__file__).resolve().parents[2] / "README.md"
    for line in readme.read_text().splitlines():
        if line.startswith("    ") and "kube-lxcfs run" in line:
            return line.split("&&", 1)[1].strip()
    raise AssertionError("README.md has no kube-lxcfs run command")


def test_the_readme_command_shows_the_limits_with_a_private_filesystem() -> None:
    command = _readme_run_command()
    assert command.startswith("kube-lxcfs run ")
    argv = [sys.executable, "-m", "kube_lxcfs", *shlex.split(command)[1:]]
    before = Path("/proc/self/mountinfo").read_text().count("kube-lxcfs-run-")
    leftovers = set(Path(tempfile.gettempdir()).glob("kube-lxcfs-run-*"))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1].split()[:2] == ["Mem:", "512"]  # free -m: total MiB
    assert lines[-2:] == ["1", "1"]  # nproc, processors in /proc/cpuinfo
    assert Path("/proc/self/mountinfo").read_text().count("kube-lxcfs-run-") == before
    assert set(Path(tempfile.gettempdir()).glob("kube-lxcfs-run-*")) == leftovers


def test_private_filesystem_is_gone_after_a_killed_command() -> None:
    leftovers = set(Path(tempfile.gettempdir()).glob("kube-lxcfs-run-*"))
    proc = run_cli(["--memory", "128Mi"], ["sh", "-c", "kill -KILL $$"], None)
    assert proc.returncode == 137, proc.stderr
    assert "kube-lxcfs-run-" not in Path("/proc/self/mountinfo").read_text()
    assert set(Path(tempfile.gettempdir()).glob("kube-lxcfs-run-*")) == leftovers


def _wait_gone(pid: int, deadline_s: float = 20.0) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return True
        if "\nState:\tZ" in status:
            return True
        time.sleep(0.02)  # polling a condition with a deadline
    return False


def test_a_killed_runner_takes_command_and_daemon_along_and_is_swept_later() -> None:
    script = "echo $$ $(grep :memory: /proc/self/cgroup); exec sleep 300"
    runner = subprocess.Popen(
        kube_lxcfs_run(["--memory", "64Mi"], ["sh", "-c", script], None),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        pid_text, cgroup_text = read_line(runner.stdout).split()
        command_pid = int(pid_text)
        daemons = [
            int(p.name)
            for p in Path("/proc").iterdir()
            if p.name.isdigit() and _parent_of(int(p.name)) == runner.pid
        ]
        runner.kill()
        runner.wait(timeout=20)
    finally:
        runner.kill()
        runner.wait()
    assert _wait_gone(command_pid), "the command outlived its killed runner"
    assert daemons, "no private filesystem daemon was found"
    for daemon in daemons:
        assert _wait_gone(daemon), "the private filesystem outlived its killed runner"
    cgroup = _memory_cgroup(cgroup_text)
    assert cgroup.exists()  # nobody could remove it: the runner was SIGKILLed
    proc = run_cli([], ["true"], None)
    assert proc.returncode == 0, proc.stderr
    assert not cgroup.exists(), "the next kube-lxcfs run did not sweep the stale cgroup"
    mount_dirs = list(Path(tempfile.gettempdir()).glob(f"kube-lxcfs-run-{runner.pid}-*"))
    assert not mount_dirs, "the next kube-lxcfs run did not sweep the stale mount directory"


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])
