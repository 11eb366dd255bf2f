"""Short-lived cache of rendered files, and isolation of slow cgroups.

Why: a node's monitoring agents read the same few files of the same cgroup many
times a second, and every read is a FUSE round trip through one single-threaded
loop.  Two things follow:

* Rendering the same (file, cgroup) again within a few milliseconds gives the
  same answer, so a rendered file is kept for ``ttl`` seconds (per file family,
  always within the documented freshness bounds: usage 250 ms, limits 1 s).
  The key includes the reader's whole /proc/<pid>/cgroup text, read on every
  request: a process that moves to another cgroup is answered for the new one
  at once.
* A cgroup whose files take long to read (heavy memory pressure, a hung
  controller) would hold the loop and every other reader with it.  A render that
  takes longer than ``slow_after`` marks its cgroup slow for ``slow_hold``
  seconds; while slow, its reads are answered from its last render (at most
  ``stale_max`` old: a somewhat old answer about the container beats a fresh
  answer about the host) and the refresh runs in a background thread, so the
  loop does not wait for it.  Without a usable render, the read waits up to
  ``slow_wait`` for the refresh (also for one another read started): on a busy
  node a render is merely slow, and the container must still see itself.  Only
  when that wait expires (a stuck cgroup) does the read fail over to the host's
  file (the tree's usual fault answer), and later reads of that key do so at
  once, without waiting, until its refresh finally lands.

Bounded: expired entries are pruned at least every ``ttl``-sized interval and
the number of entries is capped, so cgroups that come and go leave nothing behind.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)


CACHE_ENV = "KUBE_LXCFS_CACHE"
"""``off`` disables the render cache and the slow-cgroup isolation: every read renders
(host files and limits stay cached for their short periods).  Benchmarks measure the
cost of a render-cache miss with it; read once, when the daemon builds its tree."""


class CgroupSlow(RuntimeError):
    """A slow cgroup has no render recent enough: serve the host's file for now."""


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How long rendered files live, and when a cgroup counts as slow (seconds)."""

    renders: bool = True
    """Keep rendered files at all (``False``: every read renders)."""
    usage_ttl: float = 0.1
    """Files showing usage (meminfo, stat, swaps, diskstats, pressure): ≤ 250 ms promised."""
    limits_ttl: float = 0.5
    """Limits read from a cgroup (the CgroupReader keeps them this long): ≤ 1 s promised."""
    limit_renders_ttl: float = 0.1
    """Files showing only limits (cpuinfo, cpu online/offline). Their render uses limits
    kept up to ``limits_ttl``, so the two lifetimes add up: kept 0.1 s, like a usage file,
    a changed limit shows within 0.6 s (kept 0.5 s, it took up to 1 s)."""
    host_ttl: float = 0.05
    """Host files the renders start from (/proc/meminfo, stat, uptime, cpuinfo)."""
    slow_after: float = 0.03
    """A render taking longer than this marks its cgroup slow."""
    slow_wait: float = 0.5
    """How long a read of a slow cgroup with no recent render waits for its refresh
    before it gets the host's file (a stuck cgroup holds the loop this long, once)."""
    slow_hold: float = 10.0
    """How long a cgroup stays slow after its last slow render."""
    stale_max: float = 10.0
    """Oldest render served for a slow cgroup while its refresh runs (renders of
    cgroups that are not slow are dropped after their ttl)."""
    max_entries: int = 8192
    """Hard cap on cached renders."""
    max_refreshes: int = 8
    """Background refreshes running at once (one per slow key at most)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> CachePolicy:
        """The default policy, or no render cache with ``KUBE_LXCFS_CACHE=off``."""
        value = environ.get(CACHE_ENV, "")
        if value == "off":
            log.warning("%s=off: every read renders afresh, slow cgroups hold the loop", CACHE_ENV)
            return cls(renders=False, slow_after=float("inf"))
        if value:
            log.error("ignoring %s=%r: the only value is 'off'", CACHE_ENV, value)
        return cls()

    @classmethod
    def off(cls) -> CachePolicy:
        """No caching and no slow isolation: every read renders inline."""
        return cls(
            renders=False,
            usage_ttl=0.0,
            limits_ttl=0.0,
            limit_renders_ttl=0.0,
            host_ttl=0.0,
            slow_after=float("inf"),
        )


Render = Callable[[], bytes]


class RenderCache:
    """Rendered bytes per key, with TTL, slow-key isolation and pruning."""

    def __init__(
        self,
        policy: CachePolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or CachePolicy()
        self.clock = clock
        self._entries: dict[Hashable, tuple[float, bytes, Hashable]] = {}
        """key -> (when the render started, bytes, its group)."""
        self._slow: dict[Hashable, float] = {}
        """slow group -> until when it stays slow."""
        self._jobs: dict[Hashable, _Refresh] = {}
        """key -> its background refresh while one runs."""
        self._lock = threading.Lock()
        self._next_prune = 0.0
        self._slow_since_log = 0
        self._next_slow_log = float("-inf")
        self.keeping = True
        """``False``: renders are looked up but new ones are not kept (a ``stat``'s render)."""

    def __len__(self) -> int:
        return len(self._entries)

    def slow_now(self) -> int:
        """Cgroups currently answered from their last render (for the metrics; any thread)."""
        now = self.clock()
        return sum(1 for until in list(self._slow.values()) if until > now)

    def get(self, key: Hashable, group: Hashable, ttl: float, render: Render) -> bytes:
        """The render for ``key`` not older than ``ttl``; ``group`` is its cgroup (slowness)."""
        if not self.policy.renders:
            return render()
        now = self.clock()
        entry = self._entries.get(key)
        hit = None if entry is None else (entry[0], entry[1])
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        if not self.keeping:
            if self._slow and self._is_slow(group, now):
                raise CgroupSlow("this cgroup's files are slow to read: no render for a stat")
            return render()
        if self._slow and self._is_slow(group, now):
            return self._serve_slow(key, group, render, hit, now)
        data = render()
        self._finished(key, group, now, data)
        return data

    # --- internals ----------------------------------------------------------------------

    def _is_slow(self, group: Hashable, now: float) -> bool:
        until = self._slow.get(group)
        if until is None:
            return False
        if until <= now:
            self._slow.pop(group, None)
            return False
        return True

    def _finished(self, key: Hashable, group: Hashable, started: float, data: bytes) -> None:
        done = self.clock()
        policy = self.policy
        if done - started > policy.slow_after:
            if group not in self._slow:
                self._log_slow(done, done - started)
            self._slow[group] = done + policy.slow_hold
        self._entries[key] = (started, data, group)
        if done >= self._next_prune or len(self._entries) > policy.max_entries:
            self._prune(done)

    def _log_slow(self, now: float, took: float) -> None:
        """Say that cgroups turned slow, at most once a minute (an overloaded node has many)."""
        self._slow_since_log += 1
        if now < self._next_slow_log:
            return
        log.warning(
            "%d cgroup(s) turned slow (last render took %.0f ms): their reads are answered "
            "from background refreshes for %.0f s",
            self._slow_since_log,
            took * 1000,
            self.policy.slow_hold,
        )
        self._slow_since_log = 0
        self._next_slow_log = now + 60.0

    def _prune(self, now: float) -> None:
        policy = self.policy
        keep = max(policy.usage_ttl, policy.limit_renders_ttl)
        self._slow = {g: until for g, until in list(self._slow.items()) if until > now}
        slow = self._slow
        self._entries = {
            k: v
            for k, v in list(self._entries.items())
            if now - v[0] < keep or (v[2] in slow and now - v[0] < policy.stale_max)
        }
        if len(self._entries) > policy.max_entries:
            self._entries.clear()
        self._next_prune = now + keep

    def _serve_slow(
        self,
        key: Hashable,
        group: Hashable,
        render: Render,
        hit: tuple[float, bytes] | None,
        now: float,
    ) -> bytes:
        refresh = self._refresh_in_background(key, group, render)
        if hit is not None and now - hit[0] < self.policy.stale_max:
            return hit[1]
        # Nothing recent to serve: wait for the refresh (a busy machine, not a stuck
        # cgroup, is the usual reason for a slow render), unless a read already waited
        # for this very refresh in vain: then the cgroup is stuck, answer at once.
        if refresh is not None and not refresh.gave_up:
            if refresh.done.wait(self.policy.slow_wait) and refresh.data is not None:
                return refresh.data
            refresh.gave_up = True
        raise CgroupSlow("this cgroup's files are slow to read and no recent render exists")

    def _refresh_in_background(
        self, key: Hashable, group: Hashable, render: Render
    ) -> _Refresh | None:
        """The running refresh of ``key``, or a new one in a thread; ``None`` if too many run."""
        with self._lock:
            running = self._jobs.get(key)
            if running is not None:
                return running
            if len(self._jobs) >= self.policy.max_refreshes:
                return None
            job = _Refresh()
            self._jobs[key] = job

        def refresh() -> None:
            started = self.clock()
            try:
                job.data = render()
            except Exception as exc:  # the next inline or background read reports it
                log.debug("background refresh failed: %s", exc)
                self._slow[group] = self.clock() + self.policy.slow_hold
            else:
                done = self.clock()
                self._finished(key, group, started, job.data)
                if done - started <= self.policy.slow_after:
                    self._slow.pop(group, None)  # fast again: back to inline renders
            finally:
                with self._lock:
                    self._jobs.pop(key, None)
                job.done.set()

        threading.Thread(target=refresh, name="kube-lxcfs-refresh", daemon=True).start()
        return job


class _Refresh:
    """One background render: its result, and when it is there."""

    __slots__ = ("data", "done", "gave_up")

    def __init__(self) -> None:
        self.data: bytes | None = None
        self.done = threading.Event()
        self.gave_up = False
        """A read waited ``slow_wait`` for this refresh in vain: later reads do not wait."""
