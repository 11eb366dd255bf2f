"""From a reading process to the process whose cgroups answer, via /proc.

lxcfs finds a pid namespace's init with a forked helper and SCM_CREDENTIALS; here
the same answer comes from /proc alone: the init is the ancestor (or, for
processes that joined with setns, any process) in the same pid namespace whose
innermost pid (last ``NSpid`` entry) is 1.  Answers are cached per namespace and
re-validated by the init's start time, so a recycled pid is never trusted.
"""

from __future__ import annotations

import os
import threading
from typing import Literal

from kube_lxcfs.cgroups.errors import CgroupUnavailable, ParseError, ProcessGone
from kube_lxcfs.cgroups.parse import (
    CgroupEntry,
    parse_pid_stat_starttime,
    parse_pid_status,
    parse_proc_cgroup,
)
from kube_lxcfs.cgroups.reader import read_text

MAX_NAMESPACES = 4096
"""Cached namespace inits; past this many (containers came and went) the cache restarts."""


class ProcessResolver:
    """Reads the /proc facts of processes under a configurable proc root."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root.rstrip("/") or "/"
        self._inits: dict[str, tuple[int, int]] = {}
        """pid-namespace link text -> (init pid, init start time)."""
        self._lock = threading.Lock()
        self._host_ns: str | None = None

    def _path(self, pid: int, name: str) -> str:
        return f"{self.proc_root}/{pid}/{name}"

    def _read(self, pid: int, name: str) -> str:
        try:
            return read_text(self._path(pid, name))
        except (FileNotFoundError, ProcessLookupError) as exc:
            raise ProcessGone(f"process {pid} is gone") from exc

    def cgroups(self, pid: int) -> tuple[CgroupEntry, ...]:
        """The parsed /proc/<pid>/cgroup."""
        return parse_proc_cgroup(self.cgroup_text(pid))

    def cgroup_text(self, pid: int) -> str:
        """The raw /proc/<pid>/cgroup (a cache key: equal text, equal cgroups)."""
        text = self._read(pid, "cgroup")
        if not text:
            raise ProcessGone(f"process {pid} has exited")
        return text

    def pid_namespace(self, pid: int) -> str:
        """The identity of the pid namespace of ``pid`` (the ``ns/pid`` link text)."""
        try:
            return os.readlink(self._path(pid, "ns/pid"))
        except (FileNotFoundError, ProcessLookupError) as exc:
            raise ProcessGone(f"process {pid} is gone") from exc

    @property
    def host_namespace(self) -> str:
        """The daemon's own pid namespace (``<proc>/self``): its readers need no init lookup.

        ``/proc/1/ns/pid`` would do too, but some kernels deny reading it even to root.
        """
        if self._host_ns is None:
            self._host_ns = os.readlink(f"{self.proc_root}/self/ns/pid")
        return self._host_ns

    def starttime(self, pid: int) -> int:
        """When ``pid`` started, in clock ticks after boot."""
        return parse_pid_stat_starttime(self._read(pid, "stat"))

    def namespace_init(self, pid: int) -> int:
        """The pid (in our view) of the init of ``pid``'s pid namespace; 1 for our own."""
        try:
            ns = self.pid_namespace(pid)
        except PermissionError:
            # Some kernels/LSMs deny the ns link even to root; a process in our own
            # namespace still shows it by having as many NSpid levels as we do.
            if self._nspid_depth(pid) == self._nspid_depth("self"):
                return 1
            raise
        if ns == self.host_namespace:
            return 1
        with self._lock:
            cached = self._inits.get(ns)
        if cached is not None:
            init, started = cached
            try:
                if self.pid_namespace(init) == ns and self.starttime(init) == started:
                    return init
            except (CgroupUnavailable, ParseError):
                pass
        init = self._find_init(pid, ns)
        started = self.starttime(init)
        with self._lock:
            if len(self._inits) >= MAX_NAMESPACES:  # namespaces come and go: stay bounded
                self._inits.clear()
            self._inits[ns] = (init, started)
        return init

    def _nspid_depth(self, pid: int | str) -> int:
        return len(parse_pid_status(read_text(f"{self.proc_root}/{pid}/status")).nspid)

    def _find_init(self, pid: int, ns: str) -> int:
        current = pid
        seen = 0
        while current > 0 and seen < 4096:
            seen += 1
            try:
                if self.pid_namespace(current) != ns:
                    break
                status = parse_pid_status(self._read(current, "status"))
            except CgroupUnavailable:
                break
            if status.nspid[-1] == 1:
                return current
            current = status.ppid
        # The reader joined the namespace with setns: its parents are outside it.
        for name in os.listdir(self.proc_root):
            if not name.isdigit():
                continue
            candidate = int(name)
            try:
                if self.pid_namespace(candidate) != ns:
                    continue
                if parse_pid_status(self._read(candidate, "status")).nspid[-1] == 1:
                    return candidate
            except (CgroupUnavailable, ParseError, PermissionError):
                continue
        raise CgroupUnavailable(f"no init found for the pid namespace of {pid} ({ns})")

    def deciding_pid(self, pid: int, rule: Literal["reader", "init"]) -> int:
        """The process whose cgroups answer a read by ``pid``.

        ``reader``: the process itself.  ``init``: lxcfs's rule, the init of its
        pid namespace, except that readers in our own namespace use their own.
        """
        if rule == "reader":
            return pid
        init = self.namespace_init(pid)
        return pid if init == 1 else init
