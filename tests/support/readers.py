"""Read files the way a process in a given cgroup / namespace would.

A reader is a separate process (the filesystem answers by the caller's pid), so
each call starts one: optionally inside a transient cgroup, the root cgroup, a
new pid namespace, or behind a bind mount in a new mount namespace.

    texts = read_files(["/mnt/proc/meminfo"], cgroup=cg)
    texts["/mnt/proc/meminfo"]  # str, or "ERROR <errno>" if the read failed
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from kube_lxcfs.cgroups.transient import TransientCgroup, discover_layout, move_to_root

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
            layout = discover_layout()

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
