"""A host directory served as it is, plus per-CPU files the table renders where the host has none.

/sys/devices/system/cpu is mounted over a container's as a whole, so everything in
it must stay: names, modes, symlinks and contents come from the host's directory;
only the table's files (``online``, ``offline``, ``cpuN/online``) are rendered, and
``cpuN/online`` is listed even where the host has none (cpu0 on x86).
"""

from __future__ import annotations

import os
import re
import stat

from kube_lxcfs.vfs import Node

RENDERED_SIZE = 4096
"""Size given to a rendered file that has no host file (as sysfs does)."""


def path_pattern(path: str) -> re.Pattern[str]:
    """A table path with ``{n}`` (a CPU number) as a regex capturing the number."""
    return re.compile("^" + re.escape(path).replace(r"\{n\}", r"(\d+)") + "$")


class SysMirror:
    """The host's directory ``host_dir`` served at ``mount_dir``."""

    def __init__(self, mount_dir: str, host_dir: str, per_cpu_paths: tuple[str, ...]) -> None:
        self.mount_dir = mount_dir
        self.host_dir = host_dir
        self._per_cpu = tuple(path_pattern(p) for p in per_cpu_paths)
        self._added: list[tuple[re.Pattern[str], str]] = [
            (path_pattern(os.path.dirname(p)), os.path.basename(p)) for p in per_cpu_paths
        ]
        """(directory pattern, name listed in it even where the host has none)."""

    def covers(self, path: str) -> bool:
        """Whether ``path`` is the mirror's directory or inside it."""
        return path == self.mount_dir or path.startswith(self.mount_dir + "/")

    def host(self, path: str) -> str:
        return self.host_dir + path[len(self.mount_dir) :]

    def lookup(self, path: str) -> Node | None:
        try:
            st = os.lstat(self.host(path))
        except OSError:
            if self.is_added(path) and os.path.isdir(self.host(os.path.dirname(path))):
                return Node("file", 0o444, size=RENDERED_SIZE)
            return None
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            return Node("dir", mode)
        if stat.S_ISLNK(st.st_mode):
            return Node("symlink", 0o777, target=os.readlink(self.host(path)))
        return Node("file", mode, size=st.st_size)

    def listdir(self, path: str) -> list[str]:
        try:
            names = os.listdir(self.host(path))
        except OSError:
            return []
        for directory, name in self._added:
            if directory.match(path) and name not in names:
                names.append(name)
        return names

    def is_added(self, path: str) -> bool:
        """Whether ``path`` is one of the per-CPU rendered files (host file or not)."""
        return any(p.match(path) for p in self._per_cpu)

    def read(self, path: str) -> bytes:
        """The host's file; never anything outside the mirror."""
        if "/.." in path or not self.covers(path):
            return b""
        try:
            with open(self.host(path), "rb") as f:
                return f.read()
        except OSError:
            return b""  # sysfs files that fail on the host read as empty (as in lxcfs)
