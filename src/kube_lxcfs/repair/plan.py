"""Find what is broken: mountinfo of each namespace + probe results -> findings.

Pure functions only; :mod:`kube_lxcfs.repair.scan` gathers the inputs and
:mod:`kube_lxcfs.repair.fix` acts on the findings.

A mount belongs to our filesystem when its fstype and source equal those of the
live FUSE mount at the mount directory. Every FUSE connection gets its own
device number, so a mount of ours with the live device is healthy without
touching it; one with another device is a candidate that a probe (statvfs from
inside the namespace) confirms as stale (ENOTCONN: its daemon is dead).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

from kube_lxcfs.mountinfo import STALE_ERRNOS, MountEntry, is_visible, topmost_at


class State(StrEnum):
    """What a mount of ours is."""

    HEALTHY = "healthy"
    """Served by the live daemon."""
    STALE = "stale"
    """Its daemon is gone: every access fails with ENOTCONN."""
    SHADOWED = "shadowed"
    """Covered by another mount (e.g. replaced by the user): invisible, left alone."""
    FOREIGN = "foreign"
    """Another connection with our name that still answers (another daemon): left alone."""
    UNKNOWN = "unknown"
    """The probe failed otherwise or timed out: left alone, reported."""


@dataclass(frozen=True, slots=True)
class LiveFs:
    """The live FUSE mount at the mount directory, in the host namespace."""

    mount_dir: str
    mount_id: int
    dev: tuple[int, int]
    fstype: str
    source: str

    def path_of(self, root: str) -> str:
        """Host path of the file or directory ``root`` (a mountinfo root) of the live mount."""
        relative = root.lstrip("/")
        return posixpath.join(self.mount_dir, relative) if relative else self.mount_dir


@dataclass(frozen=True, slots=True)
class Probe:
    """Result of statvfs on a mount point from inside its namespace."""

    error: int | None = None
    """errno of the failed statvfs, or None if it succeeded."""
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class Finding:
    """One mount of our filesystem in one namespace, and what it is."""

    entry: MountEntry
    state: State
    reason: str = ""


def find_live_fs(host_mounts: list[MountEntry], mount_dir: str) -> LiveFs | None:
    """The FUSE mount a lookup of ``mount_dir`` reaches, or None if there is none."""
    top = topmost_at(host_mounts, mount_dir)
    if top is None or not top.fstype.startswith("fuse"):
        return None
    return LiveFs(
        mount_dir=mount_dir,
        mount_id=top.mount_id,
        dev=top.dev,
        fstype=top.fstype,
        source=top.source,
    )


def is_ours(entry: MountEntry, live: LiveFs) -> bool:
    """Whether ``entry`` is a mount of our filesystem (any generation)."""
    return entry.fstype == live.fstype and entry.source == live.source


def mounts_of_ours(mounts: list[MountEntry], live: LiveFs, *, host: bool) -> list[MountEntry]:
    """Our mounts in one namespace, without the live mount itself in the host namespace."""
    return [m for m in mounts if is_ours(m, live) and not (host and m.mount_id == live.mount_id)]


def not_ours_because(
    entry: MountEntry,
    live: LiveFs,
    *,
    host: bool,
    known_devs: Collection[tuple[int, int]] | None,
) -> str | None:
    """Why a mount with our name is still not ours to repair, or None.

    Several daemons may share the name (tests, a second instance): the root of a
    FUSE mount in our own namespace at another path is another daemon's mount
    point, and a device missing from this mount directory's known generations
    (when they are known) is another daemon's connection.
    """
    if host and entry.root == "/" and entry.mount_point != live.mount_dir:
        return "the mount point of another daemon"
    if known_devs is not None and entry.dev != live.dev and entry.dev not in known_devs:
        return "a connection this mount directory never had"
    return None


def probe_targets(
    mounts: list[MountEntry],
    live: LiveFs,
    *,
    host: bool,
    known_devs: Collection[tuple[int, int]] | None = None,
) -> list[MountEntry]:
    """The mounts whose staleness must be checked: ours, visible, another device."""
    return [
        m
        for m in mounts_of_ours(mounts, live, host=host)
        if m.dev != live.dev
        and is_visible(mounts, m)
        and not_ours_because(m, live, host=host, known_devs=known_devs) is None
    ]


def classify(
    mounts: list[MountEntry],
    live: LiveFs,
    probes: Mapping[int, Probe],
    *,
    host: bool,
    known_devs: Collection[tuple[int, int]] | None = None,
) -> list[Finding]:
    """Every mount of ours in one namespace with its state.

    ``probes`` maps mount ids (those of :func:`probe_targets`) to probe results;
    a candidate without a probe is UNKNOWN. ``known_devs``: the devices this
    mount directory had before (None: unknown, any device of our name counts).
    """
    findings = []
    for entry in mounts_of_ours(mounts, live, host=host):
        other = not_ours_because(entry, live, host=host, known_devs=known_devs)
        if not is_visible(mounts, entry):
            findings.append(Finding(entry, State.SHADOWED, "covered by another mount"))
        elif entry.dev == live.dev:
            findings.append(Finding(entry, State.HEALTHY))
        elif other is not None:
            findings.append(Finding(entry, State.FOREIGN, other))
        else:
            findings.append(_from_probe(entry, probes.get(entry.mount_id)))
    return findings


def _from_probe(entry: MountEntry, probe: Probe | None) -> Finding:
    if probe is None:
        return Finding(entry, State.UNKNOWN, "not probed")
    if probe.timed_out:
        return Finding(entry, State.UNKNOWN, "statvfs did not answer in time")
    if probe.error is None:
        return Finding(entry, State.FOREIGN, "another live connection of the same name")
    if probe.error in STALE_ERRNOS:
        return Finding(entry, State.STALE, os.strerror(probe.error))
    return Finding(entry, State.UNKNOWN, f"statvfs failed: {os.strerror(probe.error)}")


def bind_source_inside(mounts: list[MountEntry], live: LiveFs, entry: MountEntry) -> str | None:
    """A path inside the namespace where the live file of ``entry`` is visible.

    Needed by the fallback for kernels without open_tree/move_mount: a classic
    bind mount can only take its source from the namespace itself (e.g. the
    mount directory propagated into the pod with HostToContainer).
    """
    for m in mounts:
        if m is entry or m.dev != live.dev or not is_ours(m, live):
            continue
        if not is_visible(mounts, m):
            continue
        base = m.root.rstrip("/")
        if entry.root == m.root or entry.root.startswith(base + "/"):
            rest = entry.root[len(base) :].lstrip("/")
            return posixpath.join(m.mount_point, rest) if rest else m.mount_point
    return None
