"""Chaos: the node agent stopped at random moments under 10 runc containers x 4 readers.

Ten containers (two of them with nothing but a static busybox) each run four read loops:
three read the first line of /proc/meminfo, one /sys/devices/system/cpu/online, every
0.2 s, and count each answer as their own limit, the host's value (a detached mount), an
error (a dead mount) or anything else (another container's values: must never happen).
The agent (``kube-lxcfs fs --on-stop=detach`` on a temporary mount point, repair on) is
stopped 25 times in a seeded random order: 20 SIGKILLs and 5 SIGTERMs. A stop comes at a
random moment, either while the readers read a healthy mount or, for about a third of
them, during the previous start's repair pass (right after the mount answers), so stops
also interrupt repairs and detaches half-way.

After every start that is allowed to finish, every reader reads its own limit within 5 s
of the launch, and no mount of ours is leaked: one in the host's namespace (the live
one), exactly the injected ones, all live, in each container. At the end, the agent's RSS
and open fds are within 10 % of those of the first start, measured at the same point
(recovered, then 5 more reads per reader). ``KUBE_LXCFS_CHAOS_SEED`` replays a run; the
seed is printed and named in every failure.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kube_lxcfs.mountinfo import parse_mountinfo
from kube_lxcfs.sandbox.mounts import INJECTED_DIRS, INJECTED_FILES

from .conftest import harness, needs_root, rootfs_builder
from .helpers import KubeLxcfsSource, wait_for
from .readers import make_bare_rootfs

containers_harness = harness()
rootfs_module = rootfs_builder()

pytestmark = [
    needs_root,
    pytest.mark.root,
    pytest.mark.fuse,
    pytest.mark.containers,
    pytest.mark.chaos,
    pytest.mark.slow,
]

MIB = 1024 * 1024
CONTAINERS = 10
BARE_CONTAINERS = 2
KILLS = 20
TERMS = 5
EARLY_SHARE = 0.3
RECOVERY_LIMIT = 5.0
GROWTH_LIMIT = 0.10
PERIOD = "0.2"

READERS = """\
reader() {{
  n=$1; file=$2; want=$3; host=$4
  ok=0; err=0; hst=0; other=0; last=none; seen=
  while :; do
    if read -r line < "$file"; then
      set -- $line; v="$*"
      if [ "$v" = "$want" ]; then ok=$((ok+1)); last=o
      elif [ "$v" = "$host" ]; then hst=$((hst+1)); last=h
      else other=$((other+1)); last=x; seen=$v; fi
    else err=$((err+1)); last=e; fi 2>/dev/null
    echo "$ok $err $hst $other $last $seen" > /tmp/status.$n
    {sleep} {period}
  done
}}
{readers}
wait
"""


@dataclass(frozen=True)
class Status:
    """What one read loop reported last: counts of each kind of answer."""

    ok: int
    errors: int
    host: int
    other: int
    last: str
    seen: str


@dataclass
class Reader:
    """One read loop: which file it reads and in which container."""

    container_pid: int
    index: int
    file: str
    want: str

    def status(self) -> Status | None:
        try:
            text = Path(f"/proc/{self.container_pid}/root/tmp/status.{self.index}").read_text()
        except OSError:
            return None
        fields = text.rstrip("\n").split(" ", 5)
        if len(fields) < 5 or not all(f.isdigit() for f in fields[:4]):
            return None  # caught between the shell's truncate and write
        counts = [int(f) for f in fields[:4]]
        return Status(*counts, fields[4], fields[5] if len(fields) > 5 else "")

    def label(self) -> str:
        return f"reader {self.index} ({self.file}) of container pid {self.container_pid}"


def first_line(text: str) -> str:
    """A first line as the shell loop normalizes it (words joined by one space)."""
    return " ".join(text.splitlines()[0].split())


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tiny = rootfs_module.ensure_rootfs(rootfs_module.TINY)
    bare = make_bare_rootfs(tiny, tmp_path_factory.mktemp("bare") / "rootfs")
    return {"tiny": tiny, "bare": bare}


@pytest.fixture
def runc() -> Iterator[object]:
    with containers_harness.runc_session() as session:
        yield session
    assert not session.leaked_cgroups()


def start_containers(runc, images, mount_dir: Path) -> list[Reader]:
    """Ten containers with distinct memory limits and cpusets, four readers each."""
    host_mem = first_line(Path("/proc/meminfo").read_text())
    host_cpus = Path("/sys/devices/system/cpu/online").read_text().strip()
    cpusets = ["0", host_cpus, *(["1"] if os.cpu_count() and os.cpu_count() > 1 else [])]
    readers: list[Reader] = []
    for number in range(CONTAINERS):
        limit_mib = 96 + 16 * number
        cpuset = cpusets[number % len(cpusets)]
        wants = [("/proc/meminfo", f"MemTotal: {limit_mib * 1024} kB")] * 3
        wants.append(("/sys/devices/system/cpu/online", cpuset))
        hosts = [host_mem] * 3 + [host_cpus]
        calls = "\n".join(
            f"reader {i} {file} '{want}' '{host}' &"
            for i, ((file, want), host) in enumerate(zip(wants, hosts, strict=True))
        )
        if number < BARE_CONTAINERS:
            image, shell = "bare", ["/busybox", "sh", "-c"]
            script = READERS.format(sleep="/busybox sleep", period=PERIOD, readers=calls)
        else:
            image, shell = "tiny", ["/bin/sh", "-c"]
            script = READERS.format(sleep="sleep", period=PERIOD, readers=calls)
        container = runc.start(
            images[image],
            resources=containers_harness.Resources(memory=limit_mib * MIB, cpuset=cpuset),
            mount_dir=mount_dir,
            args=[*shell, script],
        )
        pid = container.pid
        readers += [Reader(pid, i, file, want) for i, (file, want) in enumerate(wants)]
    return readers


class Chaos:
    """The agent, its readers, and the checks made after each start."""

    def __init__(self, agent: KubeLxcfsSource, readers: list[Reader], seed: int) -> None:
        self.agent = agent
        self.readers = readers
        self.seed = seed
        self.recoveries: list[float] = []
        self.injected = len(INJECTED_FILES) + len(INJECTED_DIRS)

    def statuses(self) -> dict[int, Status | None]:
        return {id(r): r.status() for r in self.readers}

    def fail(self, message: str) -> str:
        return f"{message} (seed {self.seed}; replay with KUBE_LXCFS_CHAOS_SEED={self.seed})"

    def no_foreign_values(self) -> None:
        for reader in self.readers:
            status = reader.status()
            if status is not None and status.other:
                raise AssertionError(
                    self.fail(f"{reader.label()} read {status.seen!r}, not {reader.want!r}")
                )

    def all_read_their_own(
        self, since: dict[int, Status | None], readers: list[Reader] | None = None
    ) -> bool:
        for reader in self.readers if readers is None else readers:
            status, before = reader.status(), since[id(reader)]
            if status is None or status.last != "o":
                return False
            if before is not None and status.ok <= before.ok:
                return False
        return True

    def more_reads(self, count: int) -> None:
        since = self.statuses()

        def advanced() -> bool:
            now = self.statuses()
            return all(
                s is not None and (since[k] is None or s.ok >= since[k].ok + count)
                for k, s in now.items()
            )

        wait_for(advanced, timeout=30, what=self.fail(f"{count} more reads by every reader"))

    def check_start(self, launched: float, since: dict[int, Status | None]) -> None:
        """Every reader reads its own limit within 5 s of the launch; no mount leaked."""
        try:
            wait_for(lambda: self.all_read_their_own(since), timeout=RECOVERY_LIMIT)
        except AssertionError:
            behind = [
                f"{r.label()}: {r.status()} (at launch {since[id(r)]})"
                for r in self.readers
                if not self.all_read_their_own({id(r): since[id(r)]}, [r])
            ]
            raise AssertionError(
                self.fail(
                    f"not every reader reads its own limits {RECOVERY_LIMIT}s after the launch:\n"
                    + "\n".join(behind)
                    + "\nagent log:\n"
                    + self.agent.log()[-4000:]
                )
            ) from None
        self.recoveries.append(time.monotonic() - launched)
        wait_for(self.agent.repaired, what=self.fail("the repair summary"))
        log = self.agent.log()
        assert "Traceback" not in log, self.fail(log)
        summary = log[log.rindex("repair: repair:") :].splitlines()[0]
        assert " failed" not in summary and " skipped" not in summary, self.fail(summary)
        self.no_foreign_values()
        self.no_leaked_mounts()

    def no_leaked_mounts(self) -> None:
        live = self.agent.dev
        host = [m for m in mounts_of("self") if m.source == self.agent.fsname]
        assert [(m.mount_point, m.dev) for m in host] == [(str(self.agent.mount_dir), live)], (
            self.fail(f"host namespace: {host}")
        )
        for pid in sorted({r.container_pid for r in self.readers}):
            ours = [m for m in mounts_of(str(pid)) if m.source == self.agent.fsname]
            assert len(ours) == self.injected, self.fail(f"container {pid}: {ours}")
            assert all(m.dev == live for m in ours), self.fail(f"container {pid}: {ours}")

    def usage(self) -> tuple[int, int]:
        """(RSS in KiB, open fds) of the running agent."""
        assert self.agent.proc is not None
        pid = self.agent.proc.pid
        status = Path(f"/proc/{pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmRSS:")
        return rss, len(os.listdir(f"/proc/{pid}/fd"))


def mounts_of(pid: str):
    return parse_mountinfo(Path(f"/proc/{pid}/mountinfo").read_text())


def schedule(rng: random.Random) -> list[tuple[str, bool]]:
    """(signal, early) per stop: 20 kills and 5 terms in random order; early = mid-repair."""
    signals = ["KILL"] * KILLS + ["TERM"] * TERMS
    rng.shuffle(signals)
    return [(sig, index > 0 and rng.random() < EARLY_SHARE) for index, sig in enumerate(signals)]


def test_chaos_agent_stopped_at_random_moments(tmp_path: Path, runc, images) -> None:
    seed = int(os.environ.get("KUBE_LXCFS_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nchaos seed {seed}")
    rng = random.Random(seed)
    plan = schedule(rng)
    started = time.monotonic()
    agent = KubeLxcfsSource(tmp_path / "agent", "--on-stop=detach")
    try:
        agent.start()
        chaos = Chaos(agent, start_containers(runc, images, agent.mount_dir), seed)
        launched, since = started, {id(r): None for r in chaos.readers}
        chaos.check_start(launched, since)
        chaos.recoveries.clear()  # the first start includes the containers' own start
        chaos.more_reads(5)
        first = chaos.usage()
        for sig, early in plan:
            if early:
                time.sleep(rng.uniform(0, 0.5))  # a random moment of the start-up repair
            else:
                chaos.check_start(launched, since)
                time.sleep(rng.uniform(0, 1.0))  # a random moment among the reads
            before = chaos.statuses()
            if sig == "KILL":
                agent.kill9()
            else:
                assert agent.stop() == 0, chaos.fail(agent.log())
                if not early:
                    chaos_reads_host_while_detached(chaos, before)
            time.sleep(rng.uniform(0, 0.5))  # a random time down
            since = chaos.statuses()
            launched = time.monotonic()
            agent.start()
        chaos.check_start(launched, since)
        chaos.more_reads(5)
        last = chaos.usage()
        elapsed = time.monotonic() - started
        times = chaos.recoveries
        print(
            f"chaos seed {seed}: {KILLS} SIGKILL + {TERMS} SIGTERM (detach), "
            f"{sum(1 for _, early in plan if early)} of them during a start-up repair; "
            f"{len(times)} starts checked: limits back after {min(times):.2f}-{max(times):.2f}s "
            f"(mean {sum(times) / len(times):.2f}s); RSS {first[0]} -> {last[0]} KiB, "
            f"fds {first[1]} -> {last[1]}; {elapsed:.0f}s"
        )
        assert max(times) < RECOVERY_LIMIT
        assert last[0] <= first[0] * (1 + GROWTH_LIMIT), chaos.fail(f"RSS {first} -> {last}")
        assert last[1] <= first[1] * (1 + GROWTH_LIMIT), chaos.fail(f"fds {first} -> {last}")
    finally:
        agent.close()
    leaked = [m for m in mounts_of("self") if m.source == agent.fsname]
    assert not leaked, f"mounts left on the host: {leaked} (seed {seed})"


def chaos_reads_host_while_detached(chaos: Chaos, before: dict[int, Status | None]) -> None:
    """After a clean SIGTERM with detach, the readers get the host's file, never an error."""
    meminfo = [r for r in chaos.readers if r.file == "/proc/meminfo"]

    def on_host() -> bool:
        return all(
            (s := r.status()) is not None
            and s.last == "h"
            and (before[id(r)] is None or s.host > before[id(r)].host)
            for r in meminfo
        )

    wait_for(on_host, timeout=10, what=chaos.fail("readers read the host's /proc while down"))
    now = chaos.statuses()
    for reader in chaos.readers:
        b, s = before[id(reader)], now[id(reader)]
        assert b is None or s is None or s.errors == b.errors, chaos.fail(
            f"{reader.label()}: errors while detached ({b} -> {s})"
        )
