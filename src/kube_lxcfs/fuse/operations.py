"""FUSE operations over a :class:`~kube_lxcfs.vfs.VirtualTree`.

The tree renders whole files for a reader; this class adds what the kernel
protocol needs around that: attributes, directory listings, and per-open
snapshots so that one ``read`` sequence sees one consistent text.

Read semantics (the lxcfs protocol, minus its quirks):

* a read at offset 0 renders the file afresh for the calling process and keeps
  the result as the snapshot of that open file;
* a read at a later offset is served from that snapshot, so a reader that reads
  in small pieces gets one consistent text;
* a first read at a non-zero offset renders too (lxcfs returns EOF there);
* ``lseek(fd, 0)`` + read on a kept-open file renders again (procps ``free``
  re-reads /proc/meminfo that way).

Sizes: a file whose node says ``per_reader_size`` reports the length of the text
the asking process would read now (``VirtualTree.text_length``); the kernel asks at
every open (``attr_timeout=0`` + ``default_permissions``), so ``sendfile(2)``
readers, which stop at the size, and ``tail -c``, which seeks from it, see the whole
text.  The text itself is rendered by the read, as always: a GETATTR also comes from
a runtime bind-mounting the file before the container's limits are set.

The class deliberately implements only what a read-only tree needs; every other
request gets ENOSYS from libfuse, which the kernel then stops sending (FLUSH,
GETXATTR, ACCESS) or which the ``ro`` mount turns into EROFS (writes, chmod, ...).
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kube_lxcfs.errors import KubeLxcfsError
from kube_lxcfs.vfs import HostAnswerRefused, Node, VirtualTree

log = logging.getLogger(__name__)

FILE_TYPE = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND | os.O_CREAT
"""Open flags that ask for more than reading."""


class FuseError(KubeLxcfsError, OSError):
    """An errno answer to the kernel (mfusepy turns OSError.errno into the reply)."""

    def __init__(self, code: int) -> None:
        super().__init__(code, os.strerror(code))


@dataclass(slots=True)
class OpenFile:
    """One open file handle: its path and the text rendered by its last offset-0 read."""

    path: str
    snapshot: bytes | None = None


CallerPid = Callable[[], int]
T = TypeVar("T")

SNAPSHOT_BUDGET = 32 << 20
"""Bytes the per-open snapshots may hold together, each counted with :data:`ENTRY_COST`.
Past it the oldest are forgotten: a pod holding a million files open after one read each
cannot grow the daemon out of its memory limit (docs/security.md); a reader whose snapshot
was forgotten gets a fresh render at its next offset, as on a first read there."""
ENTRY_COST = 256
"""What one kept snapshot costs besides its bytes (the entry, its object, the dict slot)."""
SIZE_REUSE_NS = 10_000_000
"""How long a process's size of a path answers its next GETATTRs of it: one open sends
LOOKUP, GETATTR and ``fstat``s within microseconds, and one render serves them."""
KEPT_SIZES = 1024
"""(path, process) pairs whose size is kept that long (the oldest go first)."""
LATEST_HANDLES = 4096
"""(path, process) pairs whose last handle is remembered for ``fstat`` (the oldest go first)."""


class TreeOperations:
    """mfusepy operations serving a read-only :class:`VirtualTree`.

    ``caller_pid`` returns the pid (thread id, in the daemon's pid namespace) of
    the process whose request is being served; mfusepy's ``fuse_get_context``
    in the daemon, a stub in unit tests.
    """

    use_ns = True
    """Timestamps are integer nanoseconds (mfusepy's non-deprecated mode)."""

    def __init__(
        self,
        tree: VirtualTree,
        caller_pid: CallerPid,
        on_init: Callable[[], None] | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.tree = tree
        self.caller_pid = caller_pid
        self.on_init = on_init
        self.clock_ns = clock_ns
        self.files: dict[int, OpenFile] = {}
        """Handles with a kept snapshot, oldest first (a handle gets one at its first read)."""
        self.open_count = 0
        """Handles issued and not yet released."""
        self._kept_bytes = 0
        self._handles = itertools.count(1)
        self._failed_paths: set[str] = set()
        self._sizes: dict[tuple[str, int], tuple[int, int]] = {}
        """(path, pid) → (clock_ns, size) last reported to that process."""
        self._latest_handle: dict[tuple[str, int], int] = {}
        """(path, pid) → the open handle that process opened last: its ``fstat`` (a
        GETATTR without a handle) reports that handle's text."""
        self._latest_key: dict[int, tuple[str, int]] = {}
        """The same, handle → (path, pid): RELEASE comes without the opener's pid."""
        self.in_flight = 0
        """Reads being rendered now (0 or 1 in the single-threaded loop; 1 for long = hung)."""

    # -- lifecycle -------------------------------------------------------------

    def init(self, path: str) -> None:
        """The kernel answered INIT: the mount is live."""
        if self.on_init is not None:
            self.on_init()

    # -- metadata --------------------------------------------------------------

    def _node(self, path: str) -> Node:
        node = self.tree.lookup(path)
        if node is None:
            raise FuseError(errno.ENOENT)
        return node

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        """Attributes like /proc's: owned by root, times of now; sizes as the module says."""
        node = self._node(path)
        now = self.clock_ns()
        if node.kind == "symlink":
            size = len(node.target or "")
        elif node.per_reader_size:
            size = self._reader_size(path, fh, now)
        else:
            size = node.size
        return {
            "st_mode": FILE_TYPE[node.kind] | node.mode,
            "st_nlink": 2 if node.kind == "dir" else 1,
            "st_uid": 0,
            "st_gid": 0,
            "st_size": size,
            "st_atime": now,
            "st_mtime": now,
            "st_ctime": now,
        }

    def _reader_size(self, path: str, fh: int | None, now: int) -> int:
        """The length of the asking process's text of ``path``.

        ``fstat`` (a GETATTR without a handle) of a file the process has read gets its
        snapshot's length; a size reported a moment ago is reused; a failed render
        reports 0 (the read then fails or falls back on its own).
        """
        pid = self.caller_pid()
        key = (path, pid)
        opened = self.files.get(fh if fh is not None else self._latest_handle.get(key, 0))
        if opened is not None and opened.snapshot is not None:
            return len(opened.snapshot)
        recent = self._sizes.get(key)
        if recent is not None and now - recent[0] < SIZE_REUSE_NS:
            return recent[1]
        try:
            size = self._ask(self.tree.text_length, path)
        except FuseError:
            size = 0
        sizes = self._sizes
        sizes.pop(key, None)
        sizes[key] = (now, size)
        if len(sizes) > KEPT_SIZES:
            del sizes[next(iter(sizes))]
        return size

    def readdir(self, path: str, fh: int) -> list[str]:
        """``.``, ``..`` and the tree's names."""
        if self._node(path).kind != "dir":
            raise FuseError(errno.ENOTDIR)
        return [".", "..", *self.tree.listdir(path)]

    def readlink(self, path: str) -> str:
        """The link target of a symlink node."""
        node = self._node(path)
        if node.kind != "symlink" or node.target is None:
            raise FuseError(errno.EINVAL)
        return node.target

    # -- files -----------------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        """A new handle with no snapshot yet; read-only (EACCES for write modes, like lxcfs)."""
        node = self._node(path)
        if node.kind == "dir":
            raise FuseError(errno.EISDIR)
        if flags & WRITE_FLAGS:
            raise FuseError(errno.EACCES)
        self.open_count += 1
        fh = next(self._handles)
        key = (path, self.caller_pid())
        self._forget_latest(self._latest_handle.pop(key, None))
        self._latest_handle[key] = fh
        self._latest_key[fh] = key
        if len(self._latest_handle) > LATEST_HANDLES:
            self._forget_latest(next(iter(self._latest_key)))
        return fh

    def _forget_latest(self, fh: int | None) -> None:
        key = self._latest_key.pop(fh, None) if fh is not None else None
        if key is not None and self._latest_handle.get(key) == fh:
            del self._latest_handle[key]

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        """Render at offset 0 (or on a first read anywhere); else slice the snapshot."""
        opened = self.files.get(fh)
        if offset == 0 or opened is None or opened.snapshot is None:
            opened = self._keep(fh, OpenFile(path, self._render(path)))
        assert opened.snapshot is not None
        return opened.snapshot[offset : offset + size]

    def _keep(self, fh: int, opened: OpenFile) -> OpenFile:
        """Keep ``opened`` as the newest snapshot; forget the oldest ones past the budget."""
        self._forget(fh)
        self.files[fh] = opened
        self._kept_bytes += len(opened.snapshot or b"") + ENTRY_COST
        while self._kept_bytes > SNAPSHOT_BUDGET and len(self.files) > 1:
            self._forget(next(iter(self.files)))
        return opened

    def _forget(self, fh: int) -> None:
        dropped = self.files.pop(fh, None)
        if dropped is not None:
            self._kept_bytes -= len(dropped.snapshot or b"") + ENTRY_COST

    def _render(self, path: str) -> bytes:
        return self._ask(self.tree.read, path)

    def _ask(self, question: Callable[[str, int], T], path: str) -> T:
        """``question(path, caller)`` of the tree, counted in flight; faults become EIO."""
        pid = self.caller_pid()
        self.in_flight += 1
        try:
            return question(path, pid)
        except HostAnswerRefused:
            raise FuseError(errno.EIO) from None  # --on-render-error=eio, logged by the tree
        except Exception:
            raise self._bug(path, pid) from None
        finally:
            self.in_flight -= 1

    def _bug(self, path: str, pid: int) -> FuseError:
        """EIO for a read whose tree broke its promise of a host fallback.

        Fails this read only, logs the first time per path, and everyone else is served.
        """
        if path not in self._failed_paths:
            self._failed_paths.add(path)
            log.exception("rendering %s for pid %d failed; answering EIO", path, pid)
        return FuseError(errno.EIO)

    def release(self, path: str, fh: int) -> int:
        """Forget the handle and its snapshot."""
        self._forget(fh)
        self._forget_latest(fh)
        self.open_count = max(0, self.open_count - 1)
        return 0

    def flush(self, path: str, fh: int) -> int:
        """ENOSYS: the kernel then stops sending FLUSH on close (one request less per read)."""
        raise FuseError(errno.ENOSYS)

    def statfs(self, path: str) -> dict[str, int]:
        """An empty filesystem, like /proc (``df`` shows 0 blocks)."""
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}
