"""What the daemon lets a higher layer do around its FUSE loop (the repair of containers).

The FUSE layer owns its lifecycle and the stop signals (:mod:`kube_lxcfs.fuse.stop`); it calls
these hooks at fixed points and imports nothing of whoever implements them
(:class:`kube_lxcfs.repair.hook.RestartHandling` does), so imports run one way.
"""

from __future__ import annotations

from typing import Protocol


class DaemonHooks(Protocol):
    """Called by :class:`kube_lxcfs.fuse.daemon.Daemon`, in this order."""

    def before_serve(self) -> None:
        """In the loop thread before the mount, while the old mount (if any) is still there."""
        ...

    def on_ready(self) -> None:
        """From the filesystem's ``init`` (mount live); must only start threads and return."""
        ...

    def before_stop(self) -> None:
        """In the signal watcher after a stop signal, while the filesystem still serves."""
        ...

    def after_serve(self) -> None:
        """The loop returned and libfuse unmounted."""
        ...
