"""Create, fill and remove short-lived cgroups with limits on this host.

This is the one way kube-lxcfs makes cgroups: ``kube-lxcfs run`` uses it for the
command it starts, and every test tier uses it for the readers it measures.  It
works on cgroup v1 (one mount per controller set), hybrid (v1 plus a cgroup2
mount) and pure v2 hosts; a controller mounted on v1 wins over the cgroup2
mount, because on hybrid hosts the v1 hierarchy is the one that limits.

Usage::

    with create_cgroup("kube-lxcfs-test-x", Limits(memory=256 * MiB, cpuset="0")) as cg:
        proc = cg.popen(["cat", "/proc/meminfo"])   # born inside the cgroup
        ...
    # on exit: processes it started are killed, the cgroup waits until empty and
    # is removed, together with every ancestor directory it created.

It never kills a process it did not start: a foreign process still inside the
cgroup at exit makes removal fail loudly (:class:`CgroupBusyError`) instead.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from kube_lxcfs.cgroups.errors import CgroupError
from kube_lxcfs.cgroups.hierarchy import V2_NAME, Layout, discover_layout

log = logging.getLogger(__name__)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

DEFAULT_CPU_PERIOD_US = 100_000
"""The kernel's default CFS period, also what Kubernetes uses."""

DEFAULT_CONTROLLERS: tuple[str, ...] = ("memory", "cpu", "cpuacct", "cpuset", "blkio", "pids")
"""Controllers a transient cgroup joins by default: everything /proc rendering reads."""


class CgroupBusyError(CgroupError):
    """A cgroup still holds processes it did not start after the removal deadline."""


# --- limits -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits a transient cgroup gets; ``None`` leaves a limit unset (inherited).

    ``memory_swap`` is memory + swap together, like v1's ``memory.memsw.limit_in_bytes``
    and Docker's ``--memory-swap``; on v2 the swap part alone goes to ``memory.swap.max``.
    """

    memory: int | None = None
    """Bytes of memory (``memory.limit_in_bytes`` / ``memory.max``)."""
    memory_swap: int | None = None
    """Bytes of memory + swap; needs ``memory`` and must not be below it."""
    cpu_quota: int | None = None
    """CFS quota in microseconds per ``cpu_period``."""
    cpu_period: int = DEFAULT_CPU_PERIOD_US
    """CFS period in microseconds."""
    cpuset: str | None = None
    """CPU list such as ``"0-1"`` or ``"0,2"``; memory nodes are copied from the parent."""

    def __post_init__(self) -> None:
        if self.memory is not None and self.memory <= 0:
            raise ValueError(f"memory limit must be positive, got {self.memory}")
        if self.memory_swap is not None:
            if self.memory is None:
                raise ValueError("memory_swap (memory + swap) needs a memory limit too")
            if self.memory_swap < self.memory:
                raise ValueError(
                    f"memory_swap ({self.memory_swap}) is memory + swap and cannot be "
                    f"below memory ({self.memory})"
                )
        if self.cpu_quota is not None and self.cpu_quota < 1000:
            raise ValueError(f"cpu quota must be at least 1000 us, got {self.cpu_quota}")
        if not 1000 <= self.cpu_period <= 1_000_000:
            raise ValueError(f"cpu period must be 1000..1000000 us, got {self.cpu_period}")
        if self.cpuset is not None and not self.cpuset.strip():
            raise ValueError("cpuset must not be empty")

    @classmethod
    def for_cpus(cls, cpus: float, period: int = DEFAULT_CPU_PERIOD_US, **kwargs: Any) -> Limits:
        """Limits with a quota worth ``cpus`` CPUs (``1.5`` → 150000/100000)."""
        if cpus <= 0:
            raise ValueError(f"cpus must be positive, got {cpus}")
        return cls(cpu_quota=max(1000, round(cpus * period)), cpu_period=period, **kwargs)

    @property
    def controllers(self) -> frozenset[str]:
        """The controllers these limits need."""
        needed = set()
        if self.memory is not None:
            needed.add("memory")
        if self.cpu_quota is not None:
            needed.add("cpu")
        if self.cpuset is not None:
            needed.add("cpuset")
        return frozenset(needed)


# --- where the controllers are mounted --------------------------------------


def _read_controllers(directory: str) -> str | None:
    try:
        return Path(directory, "cgroup.controllers").read_text()
    except OSError:
        return None


def host_layout(mountinfo_path: str | Path = "/proc/self/mountinfo") -> Layout:
    """This host's cgroup hierarchies (:func:`cgroups.hierarchy.discover_layout` on its files)."""
    text = Path(mountinfo_path).read_text(errors="surrogateescape")
    return discover_layout(text, _read_controllers)


def _directory(layout: Layout, controller: str, parts: Sequence[str]) -> Path | None:
    """Where the cgroup ``parts`` is in the hierarchy answering ``controller``."""
    hierarchy = layout.hierarchy(controller)
    return None if hierarchy is None else Path(hierarchy.mount_point, *parts)


# --- low-level file helpers -------------------------------------------------


def _write(path: Path, value: str) -> None:
    """Write one cgroup control file, turning OSError into a message that names it."""
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise CgroupError(f"cannot write {value!r} to {path}: {exc.strerror}") from exc


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise CgroupError(f"cannot read {path}: {exc.strerror}") from exc


def _pids_in(directory: Path) -> list[int]:
    """Pids in the cgroup ``directory`` (empty if it is gone)."""
    try:
        return [int(p) for p in (directory / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def unique_name(prefix: str = "kube-lxcfs-test") -> str:
    """A cgroup name nobody else uses: ``<prefix>-<pid>-<random>``."""
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _clean_relative(path: str) -> tuple[str, ...]:
    parts = tuple(p for p in path.strip("/").split("/") if p)
    if not parts or any(p in {".", ".."} for p in parts):
        raise ValueError(f"cgroup path must be relative and name at least one directory: {path!r}")
    return parts


# --- the transient cgroup ---------------------------------------------------


@dataclass
class TransientCgroup:
    """A cgroup this process created, in every hierarchy of its controllers.

    Use :func:`create_cgroup` to make one; use it as a context manager (or call
    :meth:`remove`) to take it down again.
    """

    path: str
    """Path inside each hierarchy, e.g. ``/kube-lxcfs-test-1-ab/inner`` (as /proc/<pid>/cgroup)."""
    limits: Limits
    layout: Layout
    directories: dict[str, Path]
    """controller → directory of this cgroup in that controller's hierarchy."""
    _created: list[Path] = field(default_factory=list)
    """Directories this object made, outermost first; removal goes in reverse."""
    _children: list[TransientCgroup] = field(default_factory=list)
    _started: list[subprocess.Popen[Any]] = field(default_factory=list)
    _removed: bool = False

    # -- joining -------------------------------------------------------------

    @property
    def procs_files(self) -> list[Path]:
        """One ``cgroup.procs`` per distinct hierarchy directory."""
        return [d / "cgroup.procs" for d in dict.fromkeys(self.directories.values())]

    def add_pid(self, pid: int) -> None:
        """Move the process ``pid`` (all its threads) into this cgroup, in every hierarchy."""
        for procs in self.procs_files:
            _write(procs, str(pid))

    def enter(self) -> None:
        """Move the calling process into this cgroup (meant for ``preexec_fn``)."""
        for procs in self.procs_files:
            with open(procs, "w") as f:
                f.write("0")

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` already inside this cgroup (it joins before ``exec``).

        The process is this cgroup's to kill on removal.  Extra keyword arguments go
        to :class:`subprocess.Popen`; a given ``preexec_fn`` runs after joining.
        """
        user_preexec: Callable[[], Any] | None = kwargs.pop("preexec_fn", None)

        def join_then_user() -> None:
            self.enter()
            if user_preexec is not None:
                user_preexec()

        proc = subprocess.Popen(argv, preexec_fn=join_then_user, **kwargs)  # noqa: PLW1509
        self._started.append(proc)
        return proc

    def disown(self, process: subprocess.Popen[Any]) -> None:
        """Stop owning a process :meth:`popen` started: removal will not kill it."""
        self._started.remove(process)

    def run(
        self, argv: Sequence[str], timeout: float = 60, **kwargs: Any
    ) -> subprocess.CompletedProcess[Any]:
        """Like :func:`subprocess.run`, inside this cgroup; always waits for the child."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        capture = kwargs.pop("capture_output")
        if capture:
            kwargs.setdefault("stdout", subprocess.PIPE)
            kwargs.setdefault("stderr", subprocess.PIPE)
        proc = self.popen(argv, **kwargs)
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def pids(self) -> list[int]:
        """Pids directly in this cgroup (any hierarchy), without children cgroups."""
        seen: dict[int, None] = {}
        for directory in dict.fromkeys(self.directories.values()):
            seen.update(dict.fromkeys(_pids_in(directory)))
        return list(seen)

    # -- nesting -------------------------------------------------------------

    def child(self, name: str, limits: Limits | None = None) -> TransientCgroup:
        """A nested cgroup ``<this>/<name>``; removed before this one."""
        sub = _make(
            f"{self.path}/{name}",
            limits or Limits(),
            controllers=tuple(self.directories),
            layout=self.layout,
        )
        self._children.append(sub)
        return sub

    # -- removal -------------------------------------------------------------

    def remove(self, timeout: float = 10.0) -> None:
        """Kill what this object started, wait until the cgroup is empty, remove it.

        Children first.  Processes it did not start are left alone: if any is still
        inside when ``timeout`` expires, :class:`CgroupBusyError` names them.
        """
        if self._removed:
            return
        deadline = time.monotonic() + timeout
        errors: list[BaseException] = []
        for sub in reversed(self._children):
            try:
                sub.remove(timeout=max(0.5, deadline - time.monotonic()))
            except CgroupError as exc:
                errors.append(exc)
        for proc in self._started:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGKILL)
        for proc in self._started:
            try:
                proc.wait(timeout=max(0.5, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                errors.append(CgroupBusyError(f"pid {proc.pid} did not die after SIGKILL"))
        for directory in reversed(self._created):
            try:
                _rmdir_when_empty(directory, deadline)
            except CgroupError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        self._removed = True
        log.debug("removed cgroup %s", self.path)

    def __enter__(self) -> TransientCgroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


def _rmdir_when_empty(directory: Path, deadline: float) -> None:
    """rmdir ``directory`` once it holds no process, polling until ``deadline``.

    Exited processes leave a cgroup asynchronously (v1 reports EBUSY for a moment),
    so both "still populated" and EBUSY are retried until the deadline.
    """
    delay = 0.001
    while True:
        pids = _pids_in(directory)
        if not pids:
            try:
                directory.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > deadline:
                    raise CgroupError(f"cannot remove {directory}: {exc.strerror}") from exc
        elif time.monotonic() > deadline:
            raise CgroupBusyError(
                f"cgroup {directory} still holds pids {pids} that it did not start; "
                "move them out (or stop them) and remove it again"
            )
        time.sleep(delay)  # polling a kernel condition with a deadline
        delay = min(delay * 2, 0.05)


def _v1_prepare_cpuset(directory: Path) -> None:
    """Give a new v1 cpuset cgroup its parent's CPUs and memory nodes.

    A v1 cpuset starts empty and refuses tasks until both files are set.
    """
    for name in ("cpuset.cpus", "cpuset.mems"):
        own = directory / name
        if not own.exists() or not _read(own):
            _write(own, _read(directory.parent / name) or "0")


def _v2_enable(parent: Path, controllers: Iterable[str], available: frozenset[str]) -> None:
    """Enable ``controllers`` in ``parent``'s ``cgroup.subtree_control`` so children get them."""
    wanted = {V2_NAME.get(c) or c for c in controllers if c != "cpuacct"} & available
    control = parent / "cgroup.subtree_control"
    try:
        enabled = {name.lstrip("+") for name in control.read_text().split()}
    except FileNotFoundError:
        enabled = set()
    missing = sorted(wanted - enabled)
    if missing:
        _write(control, " ".join(f"+{c}" for c in missing))


def _apply_v1(directories: Mapping[str, Path], limits: Limits) -> None:
    """Write the limits whose controller is in ``directories`` (the v1 ones)."""
    if limits.memory is not None and "memory" in directories:
        memory = directories["memory"]
        _write(memory / "memory.limit_in_bytes", str(limits.memory))
        if limits.memory_swap is not None:
            memsw = memory / "memory.memsw.limit_in_bytes"
            if not memsw.exists():
                raise CgroupError(
                    f"{memsw} is missing: swap accounting is off (boot with swapaccount=1)"
                )
            _write(memsw, str(limits.memory_swap))
    if limits.cpu_quota is not None and "cpu" in directories:
        cpu = directories["cpu"]
        _write(cpu / "cpu.cfs_period_us", str(limits.cpu_period))
        _write(cpu / "cpu.cfs_quota_us", str(limits.cpu_quota))
    if limits.cpuset is not None and "cpuset" in directories:
        _write(directories["cpuset"] / "cpuset.cpus", limits.cpuset)


def _apply_v2(directory: Path, limits: Limits, controllers: frozenset[str]) -> None:
    if limits.memory is not None and "memory" in controllers:
        _write(directory / "memory.max", str(limits.memory))
        if limits.memory_swap is not None:
            _write(directory / "memory.swap.max", str(limits.memory_swap - limits.memory))
    if limits.cpu_quota is not None and "cpu" in controllers:
        _write(directory / "cpu.max", f"{limits.cpu_quota} {limits.cpu_period}")
    if limits.cpuset is not None and "cpuset" in controllers:
        _write(directory / "cpuset.cpus", limits.cpuset)


def _make(
    path: str,
    limits: Limits,
    controllers: Sequence[str],
    layout: Layout,
) -> TransientCgroup:
    parts = _clean_relative(path)
    wanted = list(dict.fromkeys([*controllers, *sorted(limits.controllers)]))
    directories: dict[str, Path] = {}
    for controller in wanted:
        directory = _directory(layout, controller, parts)
        if directory is None:
            if controller in limits.controllers:
                raise CgroupError(f"no {controller} controller is mounted on this host")
            continue
        directories[controller] = directory
    if not directories:
        raise CgroupError(f"none of the controllers {wanted} is mounted on this host")

    cg = TransientCgroup(path="/" + "/".join(parts), limits=limits, layout=layout, directories={})
    enabled_parents: set[Path] = set()
    try:
        for controller, directory in directories.items():
            hierarchy = layout.hierarchy(controller)
            assert hierarchy is not None
            for depth in range(1, len(parts) + 1):
                level = Path(hierarchy.mount_point, *parts[:depth])
                if hierarchy.version == 2 and level.parent not in enabled_parents:
                    enabled_parents.add(level.parent)
                    on_v2 = [c for c in directories if layout.hierarchy(c) is hierarchy]
                    _v2_enable(level.parent, on_v2, hierarchy.controllers)
                if level in cg._created:
                    continue
                try:
                    level.mkdir()
                except FileExistsError:
                    if depth == len(parts):
                        raise CgroupError(f"cgroup {level} already exists") from None
                    continue
                except OSError as exc:
                    raise CgroupError(f"cannot create cgroup {level}: {exc.strerror}") from exc
                cg._created.append(level)
                if hierarchy.version == 1 and "cpuset" in hierarchy.controllers:
                    _v1_prepare_cpuset(level)  # also when co-mounted (cpu,cpuset)
            cg.directories[controller] = directory
        v1_dirs = {
            c: d
            for c, d in cg.directories.items()
            if (h := layout.hierarchy(c)) is not None and h.version == 1
        }
        _apply_v1(v1_dirs, limits)
        unified = layout.unified
        if unified is not None:
            v2_controllers = frozenset(
                V2_NAME.get(c) or c
                for c in cg.directories
                if c != "cpuacct" and layout.hierarchy(c) is unified
            )
            if v2_controllers:
                _apply_v2(Path(unified.mount_point, *parts), limits, v2_controllers)
    except BaseException:
        try:
            cg.remove(timeout=2)
        except CgroupError as cleanup_error:  # pragma: no cover - best effort
            log.warning("cleanup after failed create: %s", cleanup_error)
        raise
    log.debug("created cgroup %s with %s", cg.path, limits)
    return cg


def create_cgroup(
    name: str,
    limits: Limits | None = None,
    *,
    controllers: Sequence[str] = DEFAULT_CONTROLLERS,
    layout: Layout | None = None,
) -> TransientCgroup:
    """Create the cgroup ``name`` (may be nested: ``"prefix/inner"``) with ``limits``.

    It joins every controller in ``controllers`` that this host mounts (plus those
    the limits need, which must exist).  Missing ancestors are created and removed
    with it; the last component must not exist yet.
    """
    return _make(name, limits or Limits(), tuple(controllers), layout or host_layout())
