"""Stop signals for the FUSE loop, taken from libfuse so that the daemon knows why it stopped.

libfuse's own SIGTERM/SIGINT/SIGHUP handlers end the loop, but ``fuse_main``
then reports the same code as for a loop that died of an error (a refused INIT,
say), so a failed daemon would exit 0.  Instead the stop signals are blocked in
every thread and awaited by a watcher thread, which records the signal, asks
libfuse to leave its loop (``fuse_exit``) and sends one request so the loop
notices.  libfuse still unmounts on the way out.  Before ending the loop it runs the
daemon's ``before_stop`` hook (``--on-stop=detach`` removes the containers' mounts there,
while the filesystem still serves), then serves on until no file is open (at most
:data:`DRAIN_TIMEOUT`), so a read that opened just before the stop gets its data.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from kube_lxcfs.fuse.mounts import lazy_unmount

log = logging.getLogger(__name__)

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
READY_TIMEOUT = 30.0
"""How long a stop that arrives during start-up waits for the loop before unmounting."""
DRAIN_TIMEOUT = 1.0
"""How long the loop keeps serving files that are still open after a stop signal (a read that
opened just before its container's mount was detached) before it ends."""


def loop_exit_callable() -> Callable[[], None] | None:
    """``fuse_exit`` bound to the running loop; call only inside a FUSE request (init).

    libfuse reaches its ``struct fuse`` only through ``fuse_get_context()`` while a
    request is being handled, so the handle is captured there.
    """
    try:
        import mfusepy

        libfuse = mfusepy._libfuse
        pointer = libfuse.fuse_get_context().contents.fuse
    except (ImportError, AttributeError, ValueError, OSError):
        return None
    if not pointer:
        return None
    handle = ctypes.c_void_p(pointer)  # an int would be passed as a 32-bit C int
    return lambda: libfuse.fuse_exit(handle)


class StopSignals:
    """Owns SIGTERM/SIGINT/SIGHUP while the daemon serves ``mountpoint``."""

    def __init__(self, mountpoint: Path, before_stop: Callable[[], None] | None = None) -> None:
        self.mountpoint = mountpoint
        self._before_stop = before_stop
        self.received: signal.Signals | None = None
        self._old_mask: set[signal.Signals] | None = None
        self._ready = threading.Event()
        self._exit_loop: Callable[[], None] | None = None
        self._open_files: Callable[[], int] = lambda: 0

    def count_open_files(self, count: Callable[[], int]) -> None:
        """How many files of the filesystem are open now (the operations know)."""
        self._open_files = count

    def install(self) -> None:
        """Block the signals (before any other thread starts: threads inherit the mask)."""
        self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        threading.Thread(target=self._watch, name="kube-lxcfs-signals", daemon=True).start()

    def loop_ready(self) -> None:
        """Called from the filesystem's init (a request context): the loop can be ended."""
        self._exit_loop = loop_exit_callable()
        self._ready.set()

    def restore(self) -> None:
        """Give the signals back to their default handling (after the loop ended)."""
        if self._old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
            self._old_mask = None

    def _watch(self) -> None:
        received = signal.Signals(signal.sigwait(STOP_SIGNALS))
        self.received = received
        log.info("%s: stopping", received.name)
        ready = self._ready.wait(READY_TIMEOUT)
        if self._before_stop is not None:
            try:
                self._before_stop()
            except Exception:  # still stop, whatever happened
                log.exception("before stop failed")
        self._drain()
        if ready and self._exit_loop is not None:
            self._exit_loop()
            # the loop sees the exit flag after its next request: one no cache can answer
            with contextlib.suppress(OSError):
                os.stat(self.mountpoint / f".kube-lxcfs-stop-{uuid.uuid4().hex}")
            return
        # no handle on the loop: detaching the mount ends it (the connection goes away)
        log.warning("no handle on the FUSE loop: detaching %s to end it", self.mountpoint)
        with contextlib.suppress(OSError):
            lazy_unmount(self.mountpoint)

    def _drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Serve on until every open file is closed, or ``timeout``."""
        deadline = time.monotonic() + timeout
        while (still_open := self._open_files()) and time.monotonic() < deadline:
            time.sleep(0.005)  # polls a count the loop thread changes, bounded by the deadline
        if still_open:
            log.info("stopping with %d files still open: their next read fails", still_open)
