"""A value per key, kept for a short time: limits read from cgroupfs, host files.

Neutral ground for the cgroup reader (limits) and the render context (host
files): neither depends on the other, nor on the render cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar, cast

T = TypeVar("T")


class TtlCache:
    """Values computed from slowly changing kernel files (limits, host files), per key.

    Expired entries are pruned at least once per ``ttl`` of the inserting call, so
    the size follows the number of keys used within one period, never history.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._values: dict[Hashable, tuple[float, Any]] = {}
        self._next_prune = 0.0
        self.keeping = True
        """``False``: values are looked up but new ones are not kept (a ``stat``'s render)."""

    def __len__(self) -> int:
        return len(self._values)

    def clear(self) -> None:
        """Forget every value."""
        self._values = {}

    def get(self, key: Hashable, ttl: float, compute: Callable[[], T]) -> T:
        """The value for ``key`` computed less than ``ttl`` seconds ago, else a new one."""
        if ttl <= 0:
            return compute()
        now = self.clock()
        hit = self._values.get(key)
        if hit is not None and now - hit[0] < ttl:
            return cast(T, hit[1])
        value = compute()
        if not self.keeping:
            return value
        self._values[key] = (now, value)
        if now >= self._next_prune:
            self._values = {k: v for k, v in list(self._values.items()) if now - v[0] < ttl}
            self._next_prune = now + ttl
        return value
