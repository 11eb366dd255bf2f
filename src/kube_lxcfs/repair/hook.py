"""What the FUSE daemon calls so that restarts do not break running containers.

The daemon owns its lifecycle and the stop signals; :class:`RestartHandling` implements
its hooks (:class:`kube_lxcfs.fuse.hooks.DaemonHooks`):

- ``before_serve()`` notes the dead mount a killed daemon left (the generation to repair);
- ``on_ready()`` (mount live) starts the repair in a background thread and returns, so the
  request loop is never held: it repairs the stale mounts a previous daemon left in
  containers and re-attaches what a planned stop detached;
- ``before_stop()`` runs in the daemon's signal watcher while the filesystem still serves:
  with ``on_stop="detach"`` it removes our mounts from every container and records them;
  containers read the real /proc while the daemon is down, and the next start puts the
  files back;
- ``after_serve()`` lets a running repair finish.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from prometheus_client import write_to_textfile

from kube_lxcfs.defaults import STATE_DIR
from kube_lxcfs.mountinfo import STALE_ERRNOS, parse_mountinfo, topmost_at
from kube_lxcfs.repair.engine import (
    RepairError,
    RepairMetrics,
    detach,
    forget_unused_generations,
    repair,
)

log = logging.getLogger("kube_lxcfs.repair")

ON_STOP_CHOICES = ("keep", "detach")


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
        self._repair_thread: threading.Thread | None = None
        self._previous_dev: tuple[int, int] | None = None

    # --- called by the daemon (fuse.hooks.DaemonHooks) ---------------------------------

    def before_serve(self) -> None:
        """Note the dead mount a killed daemon left: its device is the generation to repair."""
        self._previous_dev = dead_mount_device(self.mount_dir)

    def on_ready(self) -> None:
        """The mount is live: start the repair pass in the background and return at once."""
        if self.repair_on_start:
            self._repair_thread = threading.Thread(
                target=self._repair_once, name="kube-lxcfs-repair", daemon=True
            )
            self._repair_thread.start()

    def before_stop(self) -> None:
        """A stop signal arrived: with ``on_stop="detach"``, take our mounts out of containers."""
        if self.on_stop != "detach":
            return
        log.info("detaching our mounts from all containers before stopping")
        if self._repair_thread is not None:
            self._repair_thread.join(30.0)
        try:
            detach(self.mount_dir, state_dir=self.state_dir, metrics=self.metrics)
        except Exception:  # still stop, whatever happened
            log.exception("detach before stop failed")
        self._write_metrics()

    def after_serve(self, timeout: float = 30.0) -> None:
        """The loop ended: let a running repair finish, and forget the generations when no
        container holds our mounts any more (after an uninstall)."""
        if self._repair_thread is not None:
            self._repair_thread.join(timeout)
        if self.on_stop == "keep":  # a detach keeps records for the next start's reattach
            try:
                forget_unused_generations(self.state_dir, self.mount_dir)
            except (OSError, RepairError) as exc:
                log.warning("cannot check for unused generation records: %s", exc)

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
            write_to_textfile(str(self.metrics_file), self.metrics.registry())  # atomic rename
        except OSError as exc:
            log.warning("cannot write repair metrics to %s: %s", self.metrics_file, exc)
