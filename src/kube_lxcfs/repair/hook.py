"""What the FUSE daemon calls so that restarts do not break running containers.

The daemon owns its lifecycle; it calls three methods of :class:`RestartHandling`:

- ``before_serve()`` in the thread that will run the FUSE loop, before it starts
  any other thread (threads inherit its signal mask);
- ``on_ready()`` from the filesystem's ``init`` (the loop thread, mount live): it
  only starts threads and returns, so the request loop is never held;
- ``after_serve()`` once the loop returned and libfuse unmounted.

After every start a background thread repairs the stale mounts a previous
daemon left in containers (and re-attaches what a planned stop detached).

``on_stop="detach"``: SIGTERM/SIGINT/SIGHUP are taken from libfuse (blocked in
the loop thread, awaited by a watcher thread). On a signal the watcher removes
our mounts from every container while the filesystem still serves, records
them, and only then ends the loop; containers read the real /proc while the
daemon is down, and the next start puts the files back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from kube_lxcfs.defaults import STATE_DIR
from kube_lxcfs.fuse.stop import loop_exit_callable as _fuse_exit_callable
from kube_lxcfs.repair import syscalls
from kube_lxcfs.repair.engine import RepairError, RepairMetrics, detach, repair
from kube_lxcfs.repair.mountinfo import parse_mountinfo, topmost_at
from kube_lxcfs.repair.plan import STALE_ERRNOS

log = logging.getLogger("kube_lxcfs.repair")

ON_STOP_CHOICES = ("keep", "detach")
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


def dead_mount_device(mount_dir: str) -> tuple[int, int] | None:
    """The device of a dead FUSE mount at ``mount_dir`` (left by a killed daemon), if any."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            top = topmost_at(parse_mountinfo(f.read()), mount_dir)
    except (OSError, ValueError):
        return None
    if top is None or not top.fstype.startswith("fuse"):
        return None
    try:
        os.statvfs(mount_dir)
    except OSError as exc:
        return top.dev if exc.errno in STALE_ERRNOS else None
    return None


class RestartHandling:
    """Repair after start, and the optional detach on a planned stop."""

    def __init__(
        self,
        mount_dir: str | os.PathLike[str],
        *,
        on_stop: str = "keep",
        state_dir: str = STATE_DIR,
        repair_on_start: bool = True,
        metrics: RepairMetrics | None = None,
        metrics_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if on_stop not in ON_STOP_CHOICES:
            raise ValueError(f"on_stop must be one of {ON_STOP_CHOICES}, not {on_stop!r}")
        self.mount_dir = os.path.abspath(mount_dir)
        self.on_stop = on_stop
        self.state_dir = state_dir
        self.repair_on_start = repair_on_start
        self.metrics = metrics or RepairMetrics()
        self.metrics_file = Path(metrics_file) if metrics_file else None
        self._ready = threading.Event()
        self._exit_loop: Callable[[], None] | None = None
        self._repair_thread: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self._old_mask: set[signal.Signals] | None = None
        self._stopping = threading.Event()
        self._previous_dev: tuple[int, int] | None = None

    # --- called by the daemon -----------------------------------------------------------

    def before_serve(self) -> None:
        """Note the dead mount a killed daemon left (its device is the generation to repair);
        in detach mode, route the stop signals to a watcher thread instead of libfuse."""
        self._previous_dev = dead_mount_device(self.mount_dir)
        if self.on_stop != "detach":
            return
        self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        self._watcher = threading.Thread(
            target=self._watch_signals, name="kube-lxcfs-stop", daemon=True
        )
        self._watcher.start()

    def on_ready(self) -> None:
        """The mount is live: start the repair pass in the background and return at once."""
        if self.on_stop == "detach":
            self._exit_loop = _fuse_exit_callable()
        self._ready.set()
        if self.repair_on_start:
            self._repair_thread = threading.Thread(
                target=self._repair_once, name="kube-lxcfs-repair", daemon=True
            )
            self._repair_thread.start()

    def after_serve(self, timeout: float = 30.0) -> None:
        """The loop ended: let a running repair finish, restore the signal mask."""
        if self._repair_thread is not None:
            self._repair_thread.join(timeout)
        if self._old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
            self._old_mask = None

    def wait_repaired(self, timeout: float | None = None) -> bool:
        """Block until the start-up repair pass finished (for tests and health checks)."""
        if not self._ready.wait(timeout):
            return False
        thread = self._repair_thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    # --- threads ------------------------------------------------------------------------

    def _repair_once(self) -> None:
        try:
            previous = [self._previous_dev] if self._previous_dev else []
            report = repair(
                self.mount_dir,
                state_dir=self.state_dir,
                metrics=self.metrics,
                previous_devs=previous,
                only_known=True,
            )
        except RepairError as exc:
            log.warning("repair after start skipped: %s", exc)
        except Exception:  # never let repair take the daemon down
            log.exception("repair after start failed")
        else:
            if report.failed:
                log.warning("repair after start: %d mounts not repaired", len(report.failed))
        self._write_metrics()

    def _write_metrics(self) -> None:
        """Publish the counters as a Prometheus text file (node-exporter textfile style)."""
        if self.metrics_file is None:
            return
        try:
            self.metrics_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.metrics_file.with_name(f".{self.metrics_file.name}.{os.getpid()}")
            tmp.write_text(self.metrics.render())
            tmp.replace(self.metrics_file)
        except OSError as exc:
            log.warning("cannot write repair metrics to %s: %s", self.metrics_file, exc)

    def _watch_signals(self) -> None:
        received = signal.sigwait(STOP_SIGNALS)
        log.info("signal %s: detaching our mounts from all containers before stopping", received)
        self._stopping.set()
        self._ready.wait(10.0)
        if self._repair_thread is not None:
            self._repair_thread.join(30.0)
        try:
            detach(self.mount_dir, state_dir=self.state_dir, metrics=self.metrics)
        except Exception:  # still stop, whatever happened
            log.exception("detach before stop failed")
        self._write_metrics()
        self._end_loop()

    def _end_loop(self) -> None:
        if self._exit_loop is None:
            # No handle on libfuse: a lazy unmount aborts the connection once the
            # last mount is gone, which also ends the loop.
            log.warning("no handle on the FUSE loop: unmounting %s to end it", self.mount_dir)
            with contextlib.suppress(OSError):
                syscalls.umount2(self.mount_dir)
            return
        self._exit_loop()
        # The loop notices the exit flag after its next request: send one that
        # no cache can answer (a lookup of a name that does not exist).
        with contextlib.suppress(OSError):
            os.stat(Path(self.mount_dir) / f".kube-lxcfs-stop-{uuid.uuid4().hex}")
