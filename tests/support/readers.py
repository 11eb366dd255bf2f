"""Read files the way a process in a given cgroup / namespace would.

A reader is a separate process (the filesystem answers by the caller's pid), so
each call starts one: optionally inside a transient cgroup, the root cgroup, a
new pid namespace, or behind a bind mount in a new mount namespace.

    texts = read_files(["/mnt/proc/meminfo"], cgroup=cg)
    texts["/mnt/proc/meminfo"]  # str, or "ERROR <errno>" if the read failed
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from kube_lxcfs.cgroups.transient import TransientCgroup, host_layout
from support.cgroups import move_to_root

READER = """\
import json, sys
out = {}
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as f:
            out[path] = f.read().decode()
    except OSError as exc:
        out[path] = f"ERROR {exc.errno}"
print(json.dumps(out))
"""


def in_pid_namespace() -> list[str]:
    """Prefix: a new pid namespace with its own /proc (the reader is its init's child)."""
    return ["unshare", "--fork", "--pid", "--mount-proc"]


def behind_bind_mounts(binds: dict[str, str]) -> list[str]:
    """Prefix: a new mount namespace where each ``source → target`` is bind-mounted."""
    script = " && ".join(f"mount --bind '{src}' '{dst}'" for src, dst in binds.items())
    return ["unshare", "--mount", "sh", "-c", f'{script} && exec "$@"', "sh"]


def read_files(
    paths: Sequence[str | Path],
    *,
    cgroup: TransientCgroup | None = None,
    root_cgroup: bool = False,
    prefix: Sequence[str] = (),
    timeout: float = 60,
) -> dict[str, str]:
    """Contents of ``paths`` read by one new process; ``"ERROR <errno>"`` for failures."""
    argv = [*prefix, sys.executable, "-c", READER, *map(str, paths)]
    if cgroup is not None:
        done = cgroup.run(argv, timeout=timeout)
    else:
        preexec = None
        if root_cgroup:
            layout = host_layout()

            def preexec() -> None:
                move_to_root(0, layout=layout)

        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=preexec,
            check=False,
        )
    if done.returncode != 0:
        raise AssertionError(f"reader failed ({done.returncode}): {done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def meminfo_kb(text: str) -> dict[str, int]:
    """``{"MemTotal": 262144, ...}`` from meminfo text (values in kB, or plain counts)."""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields:
            values[key] = int(fields[0])
    return values


def processors(cpuinfo: str) -> list[int]:
    """The ids of the ``processor`` entries of a cpuinfo text."""
    return [
        int(line.split(":", 1)[1]) for line in cpuinfo.splitlines() if line.startswith("processor")
    ]


def stat_cpus(stat: str) -> list[int]:
    """The ids of the per-CPU ``cpuN`` lines of a /proc/stat text."""
    return [
        int(line.split()[0][3:])
        for line in stat.splitlines()
        if line.startswith("cpu") and line[3].isdigit()
    ]


KEPT_OPEN_READER = """\
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
for _command in sys.stdin:
    os.lseek(fd, 0, os.SEEK_SET)
    print(os.read(fd, 1 << 20).decode().splitlines()[0], flush=True)
"""


class KeptOpenReader:
    """A process that keeps ``path`` open and, on each :meth:`first_line`, seeks to 0 and
    reads it again (what procps ``free``/``top`` do with /proc/meminfo).

    ``start`` is how to start it (``subprocess.Popen``, or a cgroup's ``popen``).
    """

    def __init__(self, path: str | Path, start=subprocess.Popen, **kwargs) -> None:
        self.process: subprocess.Popen[str] = start(
            [sys.executable, "-c", KEPT_OPEN_READER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            **kwargs,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def first_line(self) -> str:
        """lseek(0) + read on the kept-open fd; the first line of what came back."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("read\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the reader exited with {self.process.wait()}")
        return line

    def close(self) -> None:
        self.process.kill()
        self.process.wait()

    def __enter__(self) -> KeptOpenReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_with_init_elsewhere(
    init_cgroup: TransientCgroup, reader_cgroup: TransientCgroup, paths: Sequence[str | Path]
) -> dict[str, str]:
    """Read ``paths`` from a new pid namespace whose init stays in ``init_cgroup`` while
    the reader (the init's child) moves itself into ``reader_cgroup`` first: the
    shared-process-namespace pod, where lxcfs answers with the pause container."""
    procs = " ".join(f"'{p}'" for p in reader_cgroup.procs_files)
    files = " ".join(f"'{p}'" for p in paths)
    script = (
        f"( for f in {procs}; do echo 0 > $f; done; "
        f'exec "{sys.executable}" -c "$READER" {files} ); true'
    )
    done = init_cgroup.run(
        [*in_pid_namespace(), "sh", "-c", script], env={**os.environ, "READER": READER}
    )
    if done.returncode != 0:
        raise AssertionError(f"reader failed ({done.returncode}): {done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])
