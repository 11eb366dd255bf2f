"""The filesystem daemon: prepare the mount point, mount, serve until a signal, unmount.

Everything ``kube-lxcfs fs`` does beyond parsing flags lives here, so the test
daemon and the product daemon share one code path (``serve``).

Lifecycle:

1. the pidfile (optional) is created and locked, so a second daemon with the
   same pidfile refuses to start;
2. the mount point is created if missing; a dead mount left by a killed daemon
   (ENOTCONN) is detached; a live FUSE mount there (another daemon serving) is an
   error, any other mount (a hostPath volume's bind mount) is mounted over;
3. libfuse mounts and runs a single-threaded loop (the fastest measured option:
   renders are CPU-bound, so threads only add GIL hand-offs) until SIGTERM,
   SIGINT or SIGHUP (awaited by :mod:`kube_lxcfs.fuse.stop`), then unmounts; a
   loop that ends without one is a failure (exit 1);
4. the tree's background work (loadavg sampler) is stopped, the pidfile removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kube_lxcfs.errors import KubeLxcfsError
from kube_lxcfs.fuse.hooks import DaemonHooks
from kube_lxcfs.fuse.mounts import MountState, lazy_unmount, mount_at, mount_state
from kube_lxcfs.fuse.operations import TreeOperations
from kube_lxcfs.fuse.stop import StopSignals
from kube_lxcfs.vfs import FsOptions, Lifecycle, SysinfoSource, VirtualTree

log = logging.getLogger(__name__)

FSNAME = "kube-lxcfs"
"""The mount's source in /proc/self/mountinfo: tells our mounts from lxcfs's."""
SUBTYPE = "lxcfs"
"""Mount type ``fuse.lxcfs``: scripts of existing injectors look for that type."""

DEFAULT_MOUNT_OPTIONS: Mapping[str, str | bool] = {
    "allow_other": True,  # containers read as other users
    "entry_timeout": "0.5",  # lxcfs's lookup cache time
    "attr_timeout": "0",  # with default_permissions: a GETATTR at every open (below)
    "default_permissions": True,
    "direct_io": True,  # no page cache for read(2): every read reaches us, per reader
    "ro": True,  # the kernel answers writes with EROFS
}
"""lxcfs's options plus ``ro``, with fresh attributes at every open.

One kernel inode serves every container, and a ``sendfile(2)`` reader (busybox cat)
goes through the page cache, where a text shorter than ``st_size`` shrinks the
inode's size; until the attributes are fetched again, the next container's longer
text would be cut there.  ``default_permissions`` makes the kernel check modes at
open, and with ``attr_timeout=0`` that check fetches the attributes (our size bound)
first, so each open starts from the bound (docs/differences-from-lxcfs.md)."""

IGNORED_MOUNT_OPTIONS = frozenset({"nonempty"})
"""Options libfuse3 rejects that old lxcfs command lines still carry."""


class DaemonError(KubeLxcfsError, RuntimeError):
    """The daemon cannot start; the message is for the user (one line)."""


def parse_mount_options(text: str | None) -> dict[str, str | bool]:
    """``"a,b=c"`` → ``{"a": True, "b": "c"}`` (what mfusepy takes as keyword arguments)."""
    options: dict[str, str | bool] = {}
    for raw in (text or "").split(","):
        item = raw.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        options[key] = value if sep else True
    return options


def mount_options(user: Mapping[str, str | bool]) -> dict[str, str | bool]:
    """The defaults overridden by ``user``, minus options libfuse3 refuses."""
    merged = {**DEFAULT_MOUNT_OPTIONS, **user}
    for key in IGNORED_MOUNT_OPTIONS & merged.keys():
        log.info("ignoring mount option %r (not supported by libfuse3)", key)
        del merged[key]
    return merged


def is_fuse(fstype: str) -> bool:
    """``fuse``, ``fuse.lxcfs``, ``fuseblk``: a filesystem some FUSE daemon serves."""
    return fstype == "fuse" or fstype.startswith(("fuse.", "fuseblk"))


def prepare_mountpoint(path: Path) -> None:
    """Make ``path`` ready to mount on, or raise :class:`DaemonError` saying why not."""
    state = mount_state(path)
    if state is MountState.MISSING:
        path.mkdir(parents=True, mode=0o755)
        log.info("created mount point %s", path)
    elif state is MountState.STALE:
        log.warning("%s is a dead FUSE mount (endpoint not connected): detaching it", path)
        try:
            lazy_unmount(path)
        except OSError as exc:
            raise DaemonError(f"cannot detach the dead mount at {path}: {exc.strerror}") from exc
        if mount_state(path) is MountState.STALE:
            raise DaemonError(f"{path} is still a dead mount after detaching it")
    elif state is MountState.MOUNTED:
        entry = mount_at(path)
        if entry is not None and not is_fuse(entry.fstype):
            # A container's hostPath volume (or any bind mount of a directory) is always a
            # mount point; our FUSE mount stacks on it and propagates to the node from there.
            log.info("mounting over the %s mount at %s", entry.fstype, path)
        else:
            what = f"{entry.fstype} from {entry.source}" if entry else "a filesystem"
            raise DaemonError(
                f"{path} is already a FUSE mount ({what}) served by a live daemon; "
                "stop it first or choose another directory"
            )
    if not path.is_dir():
        raise DaemonError(f"{path} is not a directory")


@contextlib.contextmanager
def pidfile_lock(path: Path | None) -> Iterator[None]:
    """Hold ``path`` locked with our pid in it while the daemon runs; remove it after."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise DaemonError(f"pidfile {path} is locked: another daemon is running") from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    finally:
        os.close(fd)


def _load_binding() -> Any:
    """Import mfusepy bound to libfuse3 (it would pick libfuse2 first if both exist)."""
    os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
    try:
        import mfusepy
    except (OSError, ImportError) as exc:
        raise DaemonError(f"cannot load libfuse3 (install fuse3/libfuse3-3): {exc}") from exc
    return mfusepy


def serve(
    tree: VirtualTree,
    mountpoint: Path,
    options: Mapping[str, str | bool],
    *,
    debug: bool = False,
    on_ready: Callable[[], None] | None = None,
    stop: StopSignals | None = None,
    in_flight: Callable[[Callable[[], int]], None] | None = None,
) -> None:
    """Mount ``tree`` at ``mountpoint`` and serve it until a signal ends the loop.

    Returns after libfuse unmounted.  Raises :class:`DaemonError` if the mount failed
    or the loop ended for another reason than a stop signal.  ``stop`` owns the stop
    signals and knows whether one arrived; without it libfuse's own handlers end
    the loop and a gone mount is taken as a clean stop.
    """
    mfusepy = _load_binding()
    operations = TreeOperations(
        tree,
        caller_pid=lambda: mfusepy.fuse_get_context()[2],
        on_init=on_ready,
    )
    if stop is not None:
        stop.count_open_files(lambda: operations.open_count)
    if in_flight is not None:
        in_flight(lambda: operations.in_flight)
    try:
        mfusepy.FUSE(
            operations,
            str(mountpoint),
            foreground=True,
            nothreads=True,
            debug=debug,
            **{"fsname": FSNAME, "subtype": SUBTYPE, **options},
        )
        code = 0
    except RuntimeError as exc:
        # fuse_main's codes: 8 when the loop ended with an error or by a signal libfuse
        # handled itself; others when mounting failed (libfuse printed why on stderr)
        code = exc.args[0] if exc.args else -1
    if stop is not None:
        if stop.received is None:
            why = "the mount went away" if code == 0 else f"libfuse code {code}"
            raise DaemonError(f"FUSE stopped serving {mountpoint} without a stop signal ({why})")
        return
    if code not in (0, 8) or mount_at(mountpoint) is not None:
        raise DaemonError(f"FUSE failed on {mountpoint} (libfuse code {code})")


@dataclass
class Daemon:
    """One ``kube-lxcfs fs`` run: its settings and the tree factory."""

    mountpoint: Path
    fs_options: FsOptions = field(default_factory=FsOptions)
    mount_options: Mapping[str, str | bool] = field(default_factory=dict)
    pidfile: Path | None = None
    debug: bool = False
    tree_factory: Callable[[FsOptions], VirtualTree] | None = None
    hooks: DaemonHooks | None = None
    """Repair of containers after start, detach on stop (kube_lxcfs.repair.hook)."""
    seccomp_socket: Path | None = None
    """Where to answer wrapped containers' sysinfo(2) (see kube_lxcfs.runtime)."""
    metrics_address: tuple[str, int] | None = None
    """Where to serve /metrics, /healthz and /readyz (kube_lxcfs.fuse.metrics); none if None."""
    health_deadline: float = 10.0
    """Seconds without an answer to the agent's self-read before /healthz turns red."""
    repair_metrics: Any = None
    """The repair's counters to export (kube_lxcfs.repair.engine.RepairMetrics)."""

    def run(self) -> int:
        """Serve until a signal; 0 after a clean unmount."""
        mountpoint = Path(os.path.abspath(self.mountpoint))
        options = mount_options(self.mount_options)
        hooks = self.hooks
        if hooks is not None:
            hooks.before_serve()
        # before any other thread starts: threads inherit the signal mask
        stop = StopSignals(mountpoint, hooks.before_stop if hooks is not None else None)
        stop.install()

        observing = None

        def on_ready() -> None:
            log.info("serving %s", mountpoint)
            stop.loop_ready()
            if observing is not None:
                observing.watchdog.start()
            if hooks is not None:
                hooks.on_ready()  # only starts threads: never holds the request loop

        with pidfile_lock(self.pidfile):
            prepare_mountpoint(mountpoint)
            tree = self._build_tree()
            if isinstance(tree, Lifecycle):
                tree.start()
            listener = self._start_seccomp_listener(tree)
            server = None
            try:
                if self.metrics_address is not None:
                    observing, server = self._start_metrics(mountpoint, tree, listener)
                log.info(
                    "mounting %s (pid %d, options %s)",
                    mountpoint,
                    os.getpid(),
                    ",".join(k if v is True else f"{k}={v}" for k, v in options.items()),
                )
                serve(
                    tree,
                    mountpoint,
                    options,
                    debug=self.debug,
                    on_ready=on_ready,
                    stop=stop,
                    in_flight=observing.watch_operations if observing is not None else None,
                )
            finally:
                stop.restore()
                if observing is not None:
                    observing.watchdog.close()
                if server is not None:
                    server.close()
                if hooks is not None:
                    hooks.after_serve()
                if listener is not None:
                    listener.close()
                if isinstance(tree, Lifecycle):
                    tree.close()
        log.info("unmounted %s, exiting", mountpoint)
        return 0

    def _start_metrics(self, mountpoint: Path, tree: VirtualTree, listener: Any) -> Any:
        """The metrics registry wired to the tree, listener and repair; its HTTP server started."""
        from kube_lxcfs.fuse.metrics import AgentMetrics, MetricsServer, Watchdog

        observing = AgentMetrics(Watchdog(mountpoint, self.health_deadline))
        if hasattr(tree, "observer"):
            tree.observer = observing.observe
        context = getattr(tree, "context", None)
        if context is not None:
            observing.watch_slow_cgroups(context.cache.slow_now)
        if listener is not None:
            observing.watch_listener(listener.stats)
        if self.repair_metrics is not None:
            observing.watch_repair(self.repair_metrics)

        def mounted() -> bool:
            entry = mount_at(mountpoint)
            return entry is not None and is_fuse(entry.fstype)

        try:
            server = MetricsServer(self.metrics_address, observing, mounted)
        except KubeLxcfsError as exc:
            raise DaemonError(str(exc)) from exc
        server.start()
        return observing, server

    def _start_seccomp_listener(self, tree: VirtualTree) -> Any:
        """Serve sysinfo(2) notifications on the socket, if one is configured."""
        if self.seccomp_socket is None or not isinstance(tree, SysinfoSource):
            return None
        from kube_lxcfs.runtime.listener import SeccompListener

        listener = SeccompListener(str(self.seccomp_socket), tree.sysinfo)
        try:
            listener.start()
        except OSError as exc:
            raise DaemonError(f"cannot listen on {self.seccomp_socket}: {exc}") from exc
        return listener

    def _build_tree(self) -> VirtualTree:
        if self.tree_factory is not None:
            return self.tree_factory(self.fs_options)
        from kube_lxcfs.tree import build_tree

        return build_tree(self.fs_options)
