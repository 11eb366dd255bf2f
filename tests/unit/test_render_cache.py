"""The render cache: TTL, slow-cgroup isolation, bounds; and the stall fault's parsing."""

from __future__ import annotations

import threading
import time

import pytest

from kube_lxcfs.cgroups.reader import StallFault
from kube_lxcfs.render_cache import CachePolicy, CgroupSlow, RenderCache
from kube_lxcfs.ttl_cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Counter:
    """A render that returns a new value each time, optionally advancing the clock."""

    def __init__(self, clock: Clock, takes: float = 0.0) -> None:
        self.clock = clock
        self.takes = takes
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        self.clock.now += self.takes
        return f"render {self.calls}".encode()


def test_a_render_is_kept_for_its_ttl_only() -> None:
    clock = Clock()
    cache = RenderCache(CachePolicy(), clock)
    render = Counter(clock)
    assert cache.get("k", "g", 0.1, render) == b"render 1"
    clock.now += 0.09
    assert cache.get("k", "g", 0.1, render) == b"render 1"
    clock.now += 0.02
    assert cache.get("k", "g", 0.1, render) == b"render 2"
    assert cache.get("other", "g", 0.1, render) == b"render 3"  # keys never share


def test_off_policy_renders_every_time() -> None:
    clock = Clock()
    cache = RenderCache(CachePolicy.off(), clock)
    render = Counter(clock, takes=5.0)  # even very slow renders stay inline
    assert [cache.get("k", "g", 0.0, render) for _ in range(3)] == [
        b"render 1",
        b"render 2",
        b"render 3",
    ]
    assert len(cache) == 0


def test_failures_are_not_cached() -> None:
    cache = RenderCache(CachePolicy(), Clock())

    def broken() -> bytes:
        raise OSError("gone")

    with pytest.raises(OSError):
        cache.get("k", "g", 1.0, broken)
    assert cache.get("k", "g", 1.0, lambda: b"back") == b"back"


def test_a_slow_group_is_served_from_its_last_render_while_refreshing() -> None:
    clock = Clock()
    policy = CachePolicy(usage_ttl=0.1, slow_after=0.02, stale_max=1.0)
    cache = RenderCache(policy, clock)
    slow = Counter(clock, takes=0.05)
    assert cache.get("meminfo", "g", 0.1, slow) == b"render 1"  # inline, marks g slow
    clock.now += 0.2  # expired
    release = threading.Event()
    started = threading.Event()

    def blocked() -> bytes:
        started.set()
        release.wait(10)
        return b"fresh"

    # the loop is not held: the stale render answers, the refresh runs elsewhere
    assert cache.get("meminfo", "g", 0.1, blocked) == b"render 1"
    assert started.wait(10)
    assert cache.get("meminfo", "g", 0.1, blocked) == b"render 1"  # one refresh at a time
    # another file of the slow group without any render: the host's answer
    with pytest.raises(CgroupSlow):
        cache.get("stat", "g", 0.1, blocked)
    release.set()
    deadline = time.monotonic() + 10
    while cache.get("meminfo", "g", 0.1, blocked) != b"fresh":  # the refresh lands
        assert time.monotonic() < deadline
        time.sleep(0.005)  # polling the background thread's result with a deadline
    # other groups are untouched by g's slowness
    assert cache.get("meminfo of h", "h", 0.1, lambda: b"h inline") == b"h inline"


def test_a_slow_group_without_recent_render_waits_a_little_then_fails_over() -> None:
    clock = Clock()
    cache = RenderCache(CachePolicy(slow_after=0.02, stale_max=1.0, slow_wait=1.0), clock)
    cache.get("k", "g", 0.1, Counter(clock, takes=0.05))
    clock.now += 1.5  # older than stale_max, still slow (hold 10 s)
    # a refresh that comes back quickly (one render was slow, the cgroup is not stuck)
    assert cache.get("k", "g", 0.1, lambda: b"quick") == b"quick"  # and g is fast again
    cache.get("other", "g", 0.1, Counter(clock, takes=0.05))  # slow again
    clock.now += 1.5
    stuck = threading.Event()
    try:
        started = time.monotonic()
        with pytest.raises(CgroupSlow):
            cache.get("k", "g", 0.1, lambda: stuck.wait(30) and b"late")
        assert 0.9 <= time.monotonic() - started < 10  # waited slow_wait, not the render
        started = time.monotonic()
        with pytest.raises(CgroupSlow):  # its refresh still runs: no wait at all
            cache.get("k", "g", 0.1, lambda: b"never asked")
        assert time.monotonic() - started < 0.5
    finally:
        stuck.set()


def test_a_busy_node_still_answers_with_the_cgroup_not_the_host() -> None:
    """A slow group's file with no render yet waits for its (slow, not stuck) refresh,
    also when another read started that refresh, instead of serving the host's file."""
    clock = Clock()
    cache = RenderCache(CachePolicy(slow_after=0.02, slow_wait=5.0), clock)
    cache.get("meminfo", "g", 0.1, Counter(clock, takes=0.05))  # g is slow now
    gate = threading.Event()
    answers: list[bytes] = []

    def slow_stat() -> bytes:
        gate.wait(10)
        return b"stat of g"

    first = threading.Thread(target=lambda: answers.append(cache.get("stat", "g", 0.1, slow_stat)))
    first.start()
    deadline = time.monotonic() + 10
    while "stat" not in cache._jobs:  # the first read started the refresh
        assert time.monotonic() < deadline
        time.sleep(0.001)  # polling the other thread's progress with a deadline
    second: list[bytes] = []
    waiter = threading.Thread(
        target=lambda: second.append(cache.get("stat", "g", 0.1, lambda: b"never asked"))
    )
    waiter.start()
    gate.set()
    first.join(10)
    waiter.join(10)
    assert answers == [b"stat of g"] and second == [b"stat of g"]


def test_a_slow_group_keeps_its_renders_for_stale_max_others_only_their_ttl() -> None:
    clock = Clock()
    cache = RenderCache(CachePolicy(slow_after=0.02, stale_max=10.0, slow_hold=60.0), clock)
    cache.get("meminfo of slow", "slow", 0.1, Counter(clock, takes=0.05))
    cache.get("meminfo of fast", "fast", 0.1, lambda: b"fast")
    clock.now += 5.0
    cache.get("trigger prune", "fast", 0.1, lambda: b"x")
    assert "meminfo of slow" in cache._entries
    assert "meminfo of fast" not in cache._entries
    # and the old render of the slow group is what its reads get meanwhile
    assert cache.get("meminfo of slow", "slow", 0.1, lambda: b"refresh") == b"render 1"


def test_slowness_expires_after_the_hold() -> None:
    clock = Clock()
    cache = RenderCache(CachePolicy(slow_after=0.02, slow_hold=10.0), clock)
    cache.get("k", "g", 0.1, Counter(clock, takes=0.05))
    clock.now += 11.0
    assert cache.get("k", "g", 0.1, lambda: b"inline again") == b"inline again"


def test_cgroups_that_come_and_go_leave_nothing_behind() -> None:
    clock = Clock()
    cache = RenderCache(CachePolicy(max_entries=100), clock)
    for i in range(10_000):
        clock.now += 0.001
        cache.get(("meminfo", i), i, 0.1, lambda: b"x" * 100)
        assert len(cache) <= 101
    clock.now += 5.0
    cache.get("last", "g", 0.1, lambda: b"y")
    assert len(cache) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", None),
        ("/pod-a=50", StallFault("/pod-a", 0.05)),
        ("a=b=7.5", StallFault("a=b", 0.0075)),
        ("no-millis", None),
        ("x=slow", None),
        ("=50", None),
        ("x=-1", None),
    ],
)
def test_stall_fault_from_env(value: str, expected: StallFault | None) -> None:
    assert StallFault.from_env({"KUBE_LXCFS_FAULT_STALL": value}) == expected


def test_ttl_cache_keeps_values_for_their_ttl_and_prunes_the_rest() -> None:
    clock = Clock()
    cache = TtlCache(clock)
    calls: list[str] = []

    def compute(key: str) -> str:
        calls.append(key)
        return key.upper()

    assert cache.get("a", 0.5, lambda: compute("a")) == "A"
    clock.now += 0.4
    assert cache.get("a", 0.5, lambda: compute("a")) == "A"
    clock.now += 0.2
    assert cache.get("a", 0.5, lambda: compute("a")) == "A"
    assert calls == ["a", "a"]
    assert cache.get("b", 0.0, lambda: compute("b")) == "B"  # ttl 0: never kept
    assert cache.get("b", 0.0, lambda: compute("b")) == "B"
    assert calls == ["a", "a", "b", "b"]
    for i in range(1000):  # keys that come and go
        clock.now += 0.01
        cache.get(i, 0.5, lambda: "x")
        assert len(cache) <= 2 * 50 + 2


def test_cache_env_turns_renders_off_only() -> None:
    assert CachePolicy.from_env({}) == CachePolicy()
    assert CachePolicy.from_env({"KUBE_LXCFS_CACHE": "bogus"}) == CachePolicy()
    off = CachePolicy.from_env({"KUBE_LXCFS_CACHE": "off"})
    assert not off.renders and off.slow_after == float("inf")
    assert (off.host_ttl, off.limits_ttl) == (CachePolicy().host_ttl, CachePolicy().limits_ttl)
    clock = Clock()
    cache = RenderCache(off, clock)
    render = Counter(clock)
    assert [cache.get("k", "g", 1.0, render) for _ in range(2)] == [b"render 1", b"render 2"]
