"""``kube-lxcfs run``: one command under cgroup limits, seeing the virtual /proc.

The parent (this process) moves into a private mount namespace, finds or starts the
filesystem, creates a transient cgroup, and forks the command.  The child joins the cgroup,
takes its own mount namespace, binds the virtual files over /proc and /sys/devices/system/cpu,
narrows its CPU affinity and execs.  The parent forwards signals, waits, and then removes the
cgroup and the private filesystem, whatever happened to the command.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kube_lxcfs import linux
from kube_lxcfs.cgroups.transient import (
    CgroupError,
    Limits,
    TransientCgroup,
    create_cgroup,
    host_layout,
    unique_name,
)
from kube_lxcfs.defaults import MOUNT_DIR
from kube_lxcfs.errors import KubeLxcfsError
from kube_lxcfs.sandbox import daemon as fs_daemon
from kube_lxcfs.sandbox.mounts import bind_virtual_files, unshare_mount_namespace

log = logging.getLogger(__name__)

EXIT_SANDBOX_FAILED = 125
"""kube-lxcfs itself failed (no root, no filesystem, cgroup error); as ``docker run``."""
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127

FORWARDED_SIGNALS = frozenset(
    {
        signal.SIGINT,
        signal.SIGTERM,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGWINCH,
    }
)
"""Signals sent to ``kube-lxcfs run`` that are passed on to the command."""
SI_KERNEL = 0x80
"""si_code of a signal the kernel generated, e.g. the terminal's Ctrl-C for the whole group."""
CLEANUP_TIMEOUT_S = 10.0
CGROUP_PREFIX = "kube-lxcfs-run"
"""Cgroups of ``kube-lxcfs run`` are ``/<prefix>-<pid of kube-lxcfs run>-<random>``."""


class SandboxError(KubeLxcfsError, RuntimeError):
    """The sandbox could not be set up; the message is for the user."""


@dataclass(frozen=True)
class RunSpec:
    """What ``kube-lxcfs run`` was asked to do, already validated."""

    command: Sequence[str]
    limits: Limits
    affinity: frozenset[int] | None = None
    """CPUs the command may run on; ``None`` keeps the inherited mask."""
    mount_dir: Path | None = None
    """A running filesystem to use; ``None``: the default one if it is kube-lxcfs, else private."""
    daemon_command: Sequence[str] | None = None
    """How to start a private filesystem (the mount directory is appended)."""


def choose_affinity(
    cpuset: frozenset[int] | None, cpus: float | None, allowed: Sequence[int], seed: int
) -> frozenset[int] | None:
    """The CPUs the command runs on, so that ``nproc`` and /proc tell the same story.

    An explicit cpuset wins.  A CPU quota alone narrows the mask to ``ceil(cpus)`` of the
    allowed CPUs (rotating by ``seed`` so that parallel runs spread out); otherwise the
    inherited mask stays.
    """
    if cpuset is not None:
        return cpuset
    if cpus is None:
        return None
    wanted = math.ceil(cpus)
    ordered = sorted(allowed)
    if wanted >= len(ordered):
        return None
    start = seed % len(ordered)
    return frozenset(ordered[(start + i) % len(ordered)] for i in range(wanted))


def run(spec: RunSpec) -> int:
    """Run the command; return its exit code (128+N if killed by signal N)."""
    if os.geteuid() != 0:
        raise SandboxError("needs root (it creates cgroups and mounts)")
    unshare_mount_namespace()
    with _filesystem(spec) as mount_dir, _cgroup(spec.limits) as cgroup:
        log.debug("command cgroup %s, filesystem %s", cgroup.path, mount_dir)
        return _run_child(spec, cgroup, mount_dir)


@contextlib.contextmanager
def _filesystem(spec: RunSpec) -> Iterator[Path]:
    if spec.mount_dir is not None:
        kind = fs_daemon.mount_kind(spec.mount_dir)
        if kind is None:
            raise SandboxError(f"no live kube-lxcfs or lxcfs filesystem at {spec.mount_dir}")
        log.debug("using the %s filesystem at %s", kind, spec.mount_dir)
        yield spec.mount_dir
        return
    # Only kube-lxcfs by default: a system lxcfs usually runs without --enable-cfs and -l,
    # so it would ignore --cpus and show the host's load.
    if fs_daemon.mount_kind(Path(MOUNT_DIR)) == "kube-lxcfs":
        yield Path(MOUNT_DIR)
        return
    command = list(spec.daemon_command) if spec.daemon_command else None
    fs_daemon.sweep_stale_mount_dirs()
    try:
        with fs_daemon.private_daemon(command) as mount_dir:
            yield mount_dir
    except fs_daemon.NoFilesystemError as exc:
        raise SandboxError(str(exc)) from exc


@contextlib.contextmanager
def _cgroup(limits: Limits) -> Iterator[TransientCgroup]:
    sweep_stale_cgroups()
    try:
        cgroup = create_cgroup(unique_name(CGROUP_PREFIX), limits)
    except (CgroupError, OSError) as exc:
        raise SandboxError(f"cannot create the cgroup: {exc}") from exc
    try:
        yield cgroup
    finally:
        _kill_leftovers(cgroup)
        cgroup.remove(timeout=CLEANUP_TIMEOUT_S)


def sweep_stale_cgroups() -> list[Path]:
    """Remove empty cgroups of earlier ``kube-lxcfs run`` processes that were SIGKILLed.

    A killed runner cannot clean up; its command dies with it (PDEATHSIG), which leaves an
    empty cgroup named after the runner's pid.  Only empty cgroups of dead runners go.
    """
    removed = []
    for hierarchy in host_layout().hierarchies:
        for directory in Path(hierarchy.mount_point).glob(f"{CGROUP_PREFIX}-*-*"):
            pid = directory.name.removeprefix(f"{CGROUP_PREFIX}-").split("-", 1)[0]
            if not pid.isdigit() or Path(f"/proc/{pid}").exists():
                continue
            try:
                if (directory / "cgroup.procs").read_text().strip():
                    continue
                directory.rmdir()
            except OSError as exc:
                log.debug("leaving %s: %s", directory, exc)
                continue
            removed.append(directory)
            log.info("removed the stale cgroup %s", directory)
    return removed


def _kill_leftovers(cgroup: TransientCgroup) -> None:
    """Kill what the command left running in its cgroup (its own descendants)."""
    deadline = time.monotonic() + CLEANUP_TIMEOUT_S
    while (pids := cgroup.pids()) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)  # polling a condition (cgroup empty) with a deadline


def _run_child(spec: RunSpec, cgroup: TransientCgroup, mount_dir: Path) -> int:
    """Fork, set the child up, exec; forward signals until it ends; return its status."""
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {*FORWARDED_SIGNALS, signal.SIGCHLD})
    try:
        errors_r, errors_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child execs or exits
            os.close(errors_r)
            _child(spec, cgroup, mount_dir, old_mask, errors_w)
        os.close(errors_w)
        with os.fdopen(errors_r, "rb") as errors:
            failure = errors.read().decode(errors="replace")
        if failure:
            os.waitpid(pid, 0)
            code, _, message = failure.partition(":")
            print(f"kube-lxcfs run: {message}", file=sys.stderr)
            return int(code)
        return _wait_forwarding_signals(pid)
    finally:
        # Signals that arrived for a command that is gone already must not hit this process
        # (a late Ctrl-C would turn the command's exit code into 130).
        while signal.sigtimedwait({*FORWARDED_SIGNALS, signal.SIGCHLD}, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _wait_forwarding_signals(pid: int) -> int:
    waited = {*FORWARDED_SIGNALS, signal.SIGCHLD}
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code  # killed by signal N: 128+N
        info = signal.sigtimedwait(waited, 1.0)
        if info is None or info.si_signo == signal.SIGCHLD:
            continue
        if info.si_code == SI_KERNEL:
            continue  # the terminal signalled the whole process group: the command has it
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, info.si_signo)


def _child(
    spec: RunSpec,
    cgroup: TransientCgroup,
    mount_dir: Path,
    old_mask: set[signal.Signals],
    errors_w: int,
) -> None:  # pragma: no cover - runs in the forked child
    """Set up and exec; on failure report ``code:message`` through the pipe and exit."""
    stage = "setting up"
    try:
        for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        linux.set_parent_death_signal(signal.SIGKILL)
        stage = f"joining cgroup {cgroup.path}"
        cgroup.enter()
        stage = f"mounting the virtual files of {mount_dir}"
        unshare_mount_namespace()
        bind_virtual_files(mount_dir)
        if spec.affinity is not None:
            stage = "setting the CPU affinity"
            os.sched_setaffinity(0, spec.affinity)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        stage = spec.command[0]
        os.execvp(spec.command[0], list(spec.command))
    except BaseException as exc:
        if isinstance(exc, FileNotFoundError) and stage == spec.command[0]:
            code, message = EXIT_NOT_FOUND, f"{stage}: command not found"
        elif isinstance(exc, OSError) and stage == spec.command[0]:
            code, message = EXIT_NOT_EXECUTABLE, f"{stage}: {exc.strerror}"
        else:
            code, message = EXIT_SANDBOX_FAILED, f"{stage}: {exc}"
        with contextlib.suppress(OSError):
            os.write(errors_w, f"{code}:{message}".encode())
        os._exit(code)
    os._exit(EXIT_SANDBOX_FAILED)
