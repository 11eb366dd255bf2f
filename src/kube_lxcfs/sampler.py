"""The loadavg sampler: counts runnable tasks of the cgroups someone reads, every 5 s.

Only cgroups whose loadavg was read are tracked (so the cost scales with readers,
not with the node), and a cgroup not read for ``forget_after`` seconds, or gone,
is dropped.  ``tick(now)`` is explicit so tests drive time; the tree's background
thread calls it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from kube_lxcfs.cgroups.parse import parse_pid_stat_state
from kube_lxcfs.cgroups.reader import read_text
from kube_lxcfs.views.loadavg import INTERVAL, Loads, advance

log = logging.getLogger(__name__)

TaskLister = Callable[[str], list[int] | None]
"""cgroup key -> pids in it and its descendants (``None``: the cgroup is gone)."""


@dataclass(slots=True)
class _Node:
    loads: Loads
    due: float
    last_read: float = field(default=0.0)


class LoadavgSampler:
    """Per-cgroup load averages, advanced by :meth:`tick`."""

    def __init__(
        self,
        list_tasks: TaskLister,
        proc_root: str = "/proc",
        interval: float = INTERVAL,
        forget_after: float = 600.0,
    ) -> None:
        self.list_tasks = list_tasks
        self.proc_root = proc_root.rstrip("/")
        self.interval = interval
        self.forget_after = forget_after
        self._nodes: dict[str, _Node] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def observe(self, key: str, now: float, reader_pid: int) -> Loads:
        """The current loads of cgroup ``key``; a new cgroup starts at zero (like lxcfs)."""
        with self._lock:
            node = self._nodes.get(key)
            if node is None:
                node = _Node(Loads(0, 0, 0, 0, 1, reader_pid), now + self.interval)
                self._nodes[key] = node
            node.last_read = now
            return node.loads

    def tracked(self) -> list[str]:
        """The cgroup keys being sampled."""
        with self._lock:
            return list(self._nodes)

    def count(self, pids: list[int]) -> tuple[int, int, int]:
        """(runnable or uninterruptible threads, all threads, highest thread id)."""
        running = total = last = 0
        for pid in pids:
            task_dir = f"{self.proc_root}/{pid}/task"
            try:
                tids = os.listdir(task_dir)
            except OSError:
                continue
            for name in tids:
                try:
                    state = parse_pid_stat_state(read_text(f"{task_dir}/{name}/stat"))
                except (OSError, ValueError):
                    continue
                tid = int(name)
                total += 1
                last = max(last, tid)
                if state in ("R", "D"):
                    running += 1
        return running, total, last

    def tick(self, now: float) -> None:
        """Advance every cgroup whose 5-second step is due at ``now``."""
        with self._lock:
            due = [(k, n) for k, n in self._nodes.items() if n.due <= now]
        for key, node in due:
            if now - node.last_read > self.forget_after:
                self._forget(key)
                continue
            pids = self.list_tasks(key)
            if not pids:
                self._forget(key)
                continue
            running, total, last = self.count(pids)
            steps = 1 + int((now - node.due) // self.interval)
            with self._lock:
                node.loads = advance(node.loads, running, total, last, min(steps, 1000))
                node.due += steps * self.interval

    def _forget(self, key: str) -> None:
        with self._lock:
            self._nodes.pop(key, None)

    def start(self, clock: Callable[[], float]) -> None:
        """Run :meth:`tick` in a daemon thread until :meth:`close`."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(self.interval / 5):
                try:
                    self.tick(clock())
                except Exception:
                    log.exception("loadavg sampler pass failed")

        self._thread = threading.Thread(target=loop, name="kube-lxcfs-loadavg", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread (returns promptly: the wait is on an event)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
