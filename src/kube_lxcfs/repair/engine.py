"""One repair (or detach) pass over every mount namespace of the host.

Glue between the scan (inputs), the plan (pure findings) and the fix (syscalls):
``repair`` swaps stale mounts of our filesystem for live ones and re-attaches
what a ``detach`` removed; ``detach`` removes the live mounts from every
container (planned stop) and records them so the next start puts them back.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from kube_lxcfs.defaults import MOUNT_DIR, STATE_DIR
from kube_lxcfs.errors import KubeLxcfsError
from kube_lxcfs.mountinfo import MountEntry, parse_mountinfo, topmost_at
from kube_lxcfs.repair import fix, plan, scan
from kube_lxcfs.repair.plan import LiveFs, State
from kube_lxcfs.repair.scan import Namespace

log = logging.getLogger("kube_lxcfs.repair")


class RepairError(KubeLxcfsError):
    """The pass cannot start at all (e.g. no live filesystem at the mount directory)."""


class MountStatus(StrEnum):
    """What happened to one mount; the value is what reports, logs and metrics show."""

    HEALTHY = "healthy"
    REPAIRED = "repaired"
    STALE = "stale"
    """Found stale by a dry run (nothing changed)."""
    FAILED = "failed"
    SKIPPED = "skipped"
    """Not ours to touch, or in a state repair does not handle (the reason says which)."""
    GONE = "gone"
    """The container exited while we looked (or before a detached mount came back)."""
    DETACHED = "detached"
    REATTACHED = "reattached"


CHANGED = frozenset({MountStatus.REPAIRED, MountStatus.REATTACHED, MountStatus.DETACHED})
"""Outcomes that changed a container: logged at info level."""
TROUBLE = frozenset({MountStatus.FAILED, MountStatus.GONE})
"""Outcomes logged as warnings."""


@dataclass(frozen=True, slots=True)
class DetachRecord:
    """One mount a planned stop took out of a container, to put back at the next start.

    Stored as JSON in the state directory; the keys are the field names.
    """

    ns: int
    """Inode of the container's mount namespace."""
    pid: int
    label: str
    mount_point: str
    root: str
    options: tuple[str, ...]
    """Per-mount flags (``ro``, ``nosuid``...) to restore."""

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "options": list(self.options)}

    @classmethod
    def from_json(cls, data: dict) -> DetachRecord:
        return cls(
            ns=int(data["ns"]),
            pid=int(data["pid"]),
            label=str(data["label"]),
            mount_point=str(data["mount_point"]),
            root=str(data["root"]),
            options=tuple(data["options"]),
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one mount of ours in one namespace."""

    namespace: Namespace
    mount_point: str
    root: str
    status: MountStatus
    reason: str = ""
    method: str = ""

    def line(self) -> str:
        extra = f" via {self.method}" if self.method else ""
        why = f": {self.reason}" if self.reason else ""
        where = f"in {self.namespace.label}"
        return f"{self.status:9} {self.mount_point} ({self.root}){extra} {where}{why}"


@dataclass(slots=True)
class Report:
    """Per-mount outcomes of one pass, grouped per container (namespace) for display."""

    outcomes: list[Outcome] = field(default_factory=list)
    namespaces_scanned: int = 0
    seconds: float = 0.0

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status is MountStatus.FAILED]

    def count(self, status: MountStatus) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def by_namespace(self) -> dict[Namespace, list[Outcome]]:
        grouped: dict[Namespace, list[Outcome]] = {}
        for o in self.outcomes:
            grouped.setdefault(o.namespace, []).append(o)
        return grouped

    def container_lines(self) -> list[str]:
        """One line per container (mount namespace): how many mounts ended how.

        Containers whose mounts were all healthy are left out.
        """
        lines = []
        for ns, outcomes in self.by_namespace().items():
            counts = Counter(o.status for o in outcomes)
            if set(counts) <= {MountStatus.HEALTHY}:
                continue
            parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            lines.append(f"container {ns.label}: {parts}")
        return lines

    def summary(self) -> str:
        counts = Counter(o.status for o in self.outcomes)
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no mounts of ours"
        return (
            f"{self.namespaces_scanned} mount namespaces scanned, {parts} "
            f"in {self.seconds * 1000:.0f} ms"
        )


class RepairMetrics:
    """Counters the daemon exposes (Prometheus text format), updated after every pass."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()  # "passes" and one per MountStatus
        self.last_pass_seconds = 0.0

    def record(self, report: Report) -> None:
        with self._lock:
            self._counts["passes"] += 1
            for o in report.outcomes:
                self._counts[o.status] += 1
            self.last_pass_seconds = report.seconds

    def get(self, status: str) -> int:
        with self._lock:
            return self._counts[status]

    def snapshot(self) -> tuple[dict[str, int], float]:
        """The counts ("passes" and one per outcome) and the last pass's seconds."""
        with self._lock:
            return {"passes": 0, **self._counts}, self.last_pass_seconds

    def collect(self) -> Iterator[Metric]:
        """The counters as Prometheus metric families (a prometheus_client collector)."""
        counts, last = self.snapshot()
        yield CounterMetricFamily(
            "kube_lxcfs_repair_passes", "Repair or detach passes run.", value=counts.pop("passes")
        )
        mounts = CounterMetricFamily(
            "kube_lxcfs_repair_mounts", "Container mounts seen, by outcome.", labels=["outcome"]
        )
        for status in sorted(counts):
            mounts.add_metric([status], counts[status])
        yield mounts
        yield GaugeMetricFamily(
            "kube_lxcfs_repair_last_pass_seconds", "Duration of the last pass.", value=last
        )

    def registry(self) -> CollectorRegistry:
        """A registry of these counters alone (the textfile of ``--metrics-file``)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return registry


def live_filesystem(mount_dir: str) -> LiveFs:
    """The live FUSE mount at ``mount_dir`` in our namespace (``RepairError`` if none)."""
    mount_dir = os.path.realpath(mount_dir)
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        mounts = parse_mountinfo(f.read())
    live = plan.find_live_fs(mounts, mount_dir)
    if live is None:
        raise RepairError(f"no FUSE filesystem is mounted at {mount_dir}")
    try:
        os.stat(mount_dir)
    except OSError as exc:
        raise RepairError(f"the filesystem at {mount_dir} does not answer: {exc.strerror}") from exc
    return live


def _state_file(state_dir: str | os.PathLike[str], mount_dir: str) -> Path:
    key = os.path.realpath(mount_dir).strip("/").replace("/", "_") or "root"
    return Path(state_dir) / f"detached-{key}.json"


GENERATIONS_KEPT = 64


def _generations_file(state_dir: str | os.PathLike[str], mount_dir: str) -> Path:
    key = os.path.realpath(mount_dir).strip("/").replace("/", "_") or "root"
    return Path(state_dir) / f"generations-{key}.json"


def known_generations(state_dir: str, mount_dir: str) -> set[tuple[int, int]] | None:
    """Devices of the FUSE connections this mount directory had (None if never recorded)."""
    try:
        data = json.loads(_generations_file(state_dir, mount_dir).read_text())
        return {(int(major), int(minor)) for major, minor in data["devices"]}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable generation record in %s: %s", state_dir, exc)
        return None


def record_generation(state_dir: str, mount_dir: str, dev: tuple[int, int]) -> None:
    """Remember ``dev`` as a connection of ``mount_dir`` (best effort, bounded)."""
    path = _generations_file(state_dir, mount_dir)
    devices = [list(d) for d in sorted(known_generations(state_dir, mount_dir) or ()) if d != dev]
    devices = [*devices[-(GENERATIONS_KEPT - 1) :], list(dev)]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"mount_dir": mount_dir, "devices": devices}))
        tmp.replace(path)
    except OSError as exc:
        log.warning("cannot record the filesystem generation in %s: %s", state_dir, exc)
    _forget_removed_mount_dirs(Path(state_dir))


def forget_unused_generations(state_dir: str, mount_dir: str) -> bool:
    """After the daemon unmounted: drop the generation record of ``mount_dir`` when no
    mount namespace holds a mount of any recorded generation any more, so that an
    uninstall leaves no state on the node. While a container still holds one, the record
    stays: the next daemon's automatic repair only takes mounts it knows. True if dropped."""
    known = known_generations(state_dir, mount_dir)
    if known is None:
        return False
    for ns in scan.list_namespaces():
        # FUSE mounts only: the kernel reuses the device numbers of ended connections for
        # any new filesystem (tmpfs, overlay, another FUSE daemon).
        held = [
            m for m in _namespace_mounts(ns) or () if m.dev in known and m.fstype.startswith("fuse")
        ]
        if held:
            log.info("generation record kept: %s holds %s", ns.label, held[0].mount_point)
            return False
    _generations_file(state_dir, mount_dir).unlink(missing_ok=True)
    log.info("no container holds a mount of %s any more: generation record removed", mount_dir)
    return True


def _forget_removed_mount_dirs(state_dir: Path) -> None:
    """Drop the records of mount directories that no longer exist (temporary ones)."""
    for record in state_dir.glob("generations-*.json"):
        try:
            mount_dir = json.loads(record.read_text())["mount_dir"]
            if not os.path.isdir(mount_dir):
                record.unlink()
        except (OSError, ValueError, KeyError, TypeError):
            continue


def _namespace_mounts(ns: Namespace) -> list[MountEntry] | None:
    try:
        return parse_mountinfo(scan.read_mountinfo(ns))
    except (OSError, ValueError):
        return None


def repair(
    mount_dir: str = MOUNT_DIR,
    *,
    dry_run: bool = False,
    strategy: fix.Strategy = fix.Strategy.AUTO,
    state_dir: str | None = None,
    metrics: RepairMetrics | None = None,
    probe_timeout: float = 2.0,
    previous_devs: Collection[tuple[int, int]] = (),
    only_known: bool = False,
) -> Report:
    """Find and (unless ``dry_run``) repair every stale mount of our filesystem.

    Stale mounts count as ours when their device is a recorded generation of
    this mount directory (``state_dir``) or in ``previous_devs`` (the dead mount
    the daemon found at its mount point); with neither, any stale mount of our
    name does (one daemon per node) — unless ``only_known``, as for the daemon's
    automatic pass: a private or temporary daemon must not take over the mounts of
    the node's daemon.
    """
    started = time.monotonic()
    live = live_filesystem(mount_dir)
    report = Report()
    known = known_generations(state_dir, live.mount_dir) if state_dir else None
    if previous_devs or only_known:
        known = (known or set()) | set(previous_devs)
    new_api = strategy is not fix.Strategy.BIND and fix.new_api_available()
    detached = _load_detached(state_dir, live.mount_dir) if state_dir else {}
    if state_dir and not dry_run:
        # Before the first swap: a daemon killed half-way through this pass leaves mounts of
        # its own connection in containers, and a later start must know them as ours.
        record_generation(state_dir, live.mount_dir, live.dev)
    for ns in scan.list_namespaces():
        mounts = _namespace_mounts(ns)
        if mounts is None:
            continue  # exited while we looked
        report.namespaces_scanned += 1
        probes = {
            m.mount_id: scan.probe(ns, m, probe_timeout)
            for m in plan.probe_targets(mounts, live, host=ns.host, known_devs=known)
        }
        findings = plan.classify(mounts, live, probes, host=ns.host, known_devs=known)
        report.outcomes += _handle_findings(
            ns, mounts, live, findings, dry_run=dry_run, strategy=strategy, new_api=new_api
        )
        records = detached.pop(ns.inode, [])
        if records:
            report.outcomes += _reattach(
                ns, mounts, live, records, dry_run=dry_run, strategy=strategy, new_api=new_api
            )
    for records in detached.values():
        for rec in records:
            gone_ns = Namespace(inode=rec.ns, pids=(rec.pid,), label=rec.label, host=False)
            report.outcomes.append(
                Outcome(gone_ns, rec.mount_point, rec.root, MountStatus.GONE, "container exited")
            )
    if state_dir and not dry_run:
        _state_file(state_dir, live.mount_dir).unlink(missing_ok=True)
    report.seconds = time.monotonic() - started
    _log_report(report, "repair")
    if metrics is not None and not dry_run:
        metrics.record(report)
    return report


def _handle_findings(
    ns: Namespace,
    mounts: list[MountEntry],
    live: LiveFs,
    findings: list[plan.Finding],
    *,
    dry_run: bool,
    strategy: fix.Strategy,
    new_api: bool,
) -> list[Outcome]:
    outcomes = []
    actions: list[tuple[str, fix.Action]] = []
    for f in findings:
        e = f.entry
        if f.state is State.HEALTHY:
            outcomes.append(Outcome(ns, e.mount_point, e.root, MountStatus.HEALTHY))
        elif f.state is State.UNKNOWN and not scan.still_in(ns):
            outcomes.append(
                Outcome(ns, e.mount_point, e.root, MountStatus.GONE, "container exited")
            )
        elif f.state is not State.STALE:
            outcomes.append(
                Outcome(ns, e.mount_point, e.root, MountStatus.SKIPPED, f"{f.state}: {f.reason}")
            )
        elif dry_run:
            outcomes.append(Outcome(ns, e.mount_point, e.root, MountStatus.STALE, f.reason))
        else:
            try:
                action = _swap_action(live, mounts, e, new_api)
            except OSError as exc:
                outcomes.append(
                    Outcome(
                        ns,
                        e.mount_point,
                        e.root,
                        MountStatus.FAILED,
                        f"cannot clone: {exc.strerror}",
                    )
                )
                continue
            actions.append((e.root, action))
    if actions:
        outcomes += _run(ns, actions, strategy, ok_status=MountStatus.REPAIRED)
    return outcomes


def _swap_action(
    live: LiveFs, mounts: list[MountEntry], entry: MountEntry, new_api: bool
) -> fix.Action:
    if not new_api:
        return fix.bind_action(live, mounts, entry)
    action = fix.Action(mount_point=entry.mount_point, expect_mount_id=entry.mount_id, kind="swap")
    fix.prepare_clone(live, entry, action, new_api=True)
    return action


def _run(
    ns: Namespace,
    pairs: list[tuple[str, fix.Action]],
    strategy: fix.Strategy,
    *,
    ok_status: MountStatus,
) -> list[Outcome]:
    """Run ``(root, action)`` pairs in ``ns``; one outcome each."""
    actions = [a for _, a in pairs]
    try:
        results = {r.mount_point: r for r in fix.run_in_namespace(ns, actions, strategy)}
    finally:
        for a in actions:
            if a.clone_fd is not None:
                os.close(a.clone_fd)
    outcomes = []
    for root, action in pairs:
        r = results[action.mount_point]
        if r.ok:
            outcomes.append(Outcome(ns, action.mount_point, root, ok_status, method=r.method))
        else:
            status = (
                MountStatus.GONE
                if r.gone
                else MountStatus.SKIPPED
                if r.skipped
                else MountStatus.FAILED
            )
            outcomes.append(Outcome(ns, action.mount_point, root, status, r.reason))
    return outcomes


def _log_report(report: Report, what: str) -> None:
    for o in report.outcomes:
        if o.status in CHANGED:
            log.info("%s", o.line())
        elif o.status in TROUBLE:
            log.warning("%s", o.line())
    log.info("%s: %s", what, report.summary())


# --- planned stop: detach and re-attach ---------------------------------------------------


def detach(
    mount_dir: str = MOUNT_DIR,
    *,
    state_dir: str = STATE_DIR,
    metrics: RepairMetrics | None = None,
) -> Report:
    """Remove our live mounts from every container, recording them for :func:`repair`.

    Containers then read the real /proc (host values) instead of ENOTCONN while
    the daemon is down. The mount directory itself, in our namespace, is left
    to the daemon's own unmount.
    """
    started = time.monotonic()
    live = live_filesystem(mount_dir)
    report = Report()
    records: list[DetachRecord] = []
    for ns in scan.list_namespaces():
        mounts = _namespace_mounts(ns)
        if mounts is None:
            continue
        report.namespaces_scanned += 1
        pairs: list[tuple[DetachRecord, fix.Action]] = []
        for f in plan.classify(mounts, live, {}, host=ns.host):
            if f.state is not State.HEALTHY or (ns.host and f.entry.mount_point == live.mount_dir):
                continue
            e = f.entry
            rec = DetachRecord(ns.inode, ns.pid, ns.label, e.mount_point, e.root, e.mount_options)
            action = fix.Action(
                mount_point=e.mount_point, expect_mount_id=e.mount_id, kind="detach"
            )
            pairs.append((rec, action))
        if not pairs:
            continue
        roots = [(rec.root, action) for rec, action in pairs]
        outcomes = _run(ns, roots, fix.Strategy.AUTO, ok_status=MountStatus.DETACHED)
        report.outcomes += outcomes
        ok = {o.mount_point for o in outcomes if o.status is MountStatus.DETACHED}
        records += [rec for rec, _ in pairs if rec.mount_point in ok]
    path = _state_file(state_dir, live.mount_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {"mount_dir": live.mount_dir, "mounts": [r.to_json() for r in records]}, indent=1
        )
    )
    tmp.replace(path)
    report.seconds = time.monotonic() - started
    _log_report(report, "detach")
    if metrics is not None:
        metrics.record(report)
    return report


def _load_detached(state_dir: str, mount_dir: str) -> dict[int, list[DetachRecord]]:
    path = _state_file(state_dir, mount_dir)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable detach record %s: %s", path, exc)
        return {}
    grouped: dict[int, list[DetachRecord]] = {}
    for item in data.get("mounts", []):
        try:
            rec = DetachRecord.from_json(item)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("ignoring a malformed detach record in %s: %s", path, exc)
            continue
        grouped.setdefault(rec.ns, []).append(rec)
    return grouped


def _reattach(
    ns: Namespace,
    mounts: list[MountEntry],
    live: LiveFs,
    records: list[DetachRecord],
    *,
    dry_run: bool,
    strategy: fix.Strategy,
    new_api: bool,
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    pairs: list[tuple[str, fix.Action]] = []
    for rec in records:
        mp, root = rec.mount_point, rec.root
        top = topmost_at(mounts, mp)
        if top is not None and plan.is_ours(top, live) and top.dev == live.dev:
            outcomes.append(Outcome(ns, mp, root, MountStatus.HEALTHY))
            continue
        if dry_run:
            outcomes.append(Outcome(ns, mp, root, MountStatus.STALE, "detached at the last stop"))
            continue
        entry = MountEntry(0, 0, live.dev, root, mp, rec.options, "", "", ())
        action = fix.Action(mount_point=mp, expect_mount_id=None, kind="attach", live_dev=live.dev)
        try:
            if new_api:
                fix.prepare_clone(live, entry, action, new_api=True)
            else:
                action.bind_source = plan.bind_source_inside(mounts, live, entry)
                action.ms_flags = fix.mount_attrs_of(entry)[1]
        except OSError as exc:
            outcomes.append(
                Outcome(ns, mp, root, MountStatus.FAILED, f"cannot clone: {exc.strerror}")
            )
            continue
        pairs.append((root, action))
    if pairs:
        outcomes += _run(ns, pairs, strategy, ok_status=MountStatus.REATTACHED)
    return outcomes
