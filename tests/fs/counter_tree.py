"""A tiny virtual tree that makes the adapter's behaviour visible, and its daemon.

Every render of ``/proc/counter`` says who asked (the caller pid) and how many
renders happened so far, so tests can see per-caller rendering, per-open
snapshots and when a read re-rendered.  Run as a script it serves the tree:
``python tests/fs/counter_tree.py MOUNTPOINT`` (same daemon code as ``kube-lxcfs fs``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from kube_lxcfs.vfs import FsOptions, Node

BIG_SIZE = 300_000
"""Larger than any single FUSE read (128 KiB), to test reads that span requests."""


class CounterTree:
    """``/proc/{counter,big,broken,meminfo}``, ``/sys/link`` → ``../proc/counter``."""

    def __init__(self) -> None:
        self.renders = 0
        self.started = False
        self.closed = False
        self.meminfo: bytes | None = None

    def start(self) -> None:
        self.started = True

    def close(self) -> None:
        self.closed = True

    def lookup(self, path: str) -> Node | None:
        return {
            "/": Node("dir", 0o755),
            "/proc": Node("dir", 0o555),
            "/sys": Node("dir", 0o555),
            "/proc/counter": Node("file", 0o444),
            "/proc/big": Node("file", 0o444),
            "/proc/broken": Node("file", 0o444),
            "/proc/meminfo": Node("file", 0o444),
            "/sys/link": Node("symlink", 0o777, target="../proc/counter"),
        }.get(path)

    def listdir(self, path: str) -> list[str]:
        return {
            "/": ["proc", "sys"],
            "/proc": ["counter", "big", "broken", "meminfo"],
            "/sys": ["link"],
        }[path]

    def read(self, path: str, pid: int) -> bytes:
        self.renders += 1
        if path == "/proc/meminfo":  # the host's text, read once: the binding's cost alone
            if self.meminfo is None:
                self.meminfo = Path("/proc/meminfo").read_bytes()
            return self.meminfo
        if path == "/proc/broken":
            raise ValueError("a tree that breaks its promise")
        head = f"pid={pid} render={self.renders}\n".encode()
        if path == "/proc/big":
            line = b"0123456789abcdef" * 4 + b"\n"
            return head + line * (BIG_SIZE // len(line))
        return head + b"".join(f"line {i:04d}\n".encode() for i in range(100))


def main(argv: list[str]) -> int:
    from kube_lxcfs.fuse.daemon import Daemon

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    tree = CounterTree()
    return Daemon(Path(argv[0]), FsOptions(), tree_factory=lambda _options: tree).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
