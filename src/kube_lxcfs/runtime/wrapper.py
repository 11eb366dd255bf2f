"""``kube-lxcfs runtime`` / ``kube-lxcfs-runc``: a runc-compatible OCI runtime wrapper.

containerd and CRI-O call it exactly like runc.  On ``create`` and ``run`` it
edits the bundle's config.json (see :mod:`kube_lxcfs.runtime.spec`) and then
execs the real runtime with the same arguments; every other command is exec'd
untouched.  Nothing here may slow a container start: the wrapper imports only
what it needs, reads one small config file, and replaces itself with the runtime.

Settings, since containerd passes only runc's arguments: environment variables
``KUBE_LXCFS_RUNTIME`` (the real runtime, default ``runc``), ``KUBE_LXCFS_MOUNT_DIR``,
``KUBE_LXCFS_SECCOMP_SOCKET`` (empty disables sysinfo interception),
``KUBE_LXCFS_FILES`` (comma-separated), or the same keys in lower case in the JSON
file ``KUBE_LXCFS_RUNTIME_CONFIG`` (default /etc/kube-lxcfs/runtime.json).  The defaults
are the node agent's (:mod:`kube_lxcfs.defaults`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from kube_lxcfs.defaults import MOUNT_DIR, SECCOMP_SOCKET
from kube_lxcfs.runtime.spec import DEFAULT_FILES, WrapSettings, wrap_spec

CONFIG_FILE = "/etc/kube-lxcfs/runtime.json"
LOG_FILE_ENV = "KUBE_LXCFS_RUNTIME_LOG"

GLOBAL_FLAGS_WITH_VALUE = frozenset({"--root", "--log", "--log-format", "--criu", "--rootless"})
"""runc's global flags that take a value (the rest are booleans)."""
BUNDLE_FLAGS = ("--bundle", "-b")
CREATING_COMMANDS = frozenset({"create", "run"})


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """The wrapper's settings: which runtime to hand over to, and what to add."""

    runtime: str = "runc"
    wrap: WrapSettings = field(default_factory=WrapSettings)


def load_settings(env: Mapping[str, str] | None = None) -> RuntimeSettings:
    """Settings from the config file, overridden by the environment."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    config = env.get("KUBE_LXCFS_RUNTIME_CONFIG", CONFIG_FILE)
    with contextlib.suppress(FileNotFoundError), open(config) as f:
        values.update(json.load(f))
    for key in ("runtime", "mount_dir", "seccomp_socket", "files"):
        env_key = "KUBE_LXCFS_" + key.upper()
        if env_key in env:
            values[key] = env[env_key]
    files = values.get("files", DEFAULT_FILES)
    if isinstance(files, str):
        files = tuple(f.strip().strip("/") for f in files.split(",") if f.strip())
    socket = values.get("seccomp_socket", SECCOMP_SOCKET)
    return RuntimeSettings(
        runtime=str(values.get("runtime", "runc")),
        wrap=WrapSettings(
            mount_dir=str(values.get("mount_dir", MOUNT_DIR)),
            seccomp_socket=str(socket) if socket else None,
            files=tuple(files),  # type: ignore[arg-type]
        ),
    )


@dataclass(frozen=True, slots=True)
class Invocation:
    """Where the command is in a runc command line, and the bundle it names."""

    command: str | None
    bundle: str | None


def parse_invocation(argv: Sequence[str], cwd: str) -> Invocation:
    """Find the runc command (after the global flags) and, for create/run, the bundle.

    runc's default bundle is the current directory.
    """
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-"):
            break
        if arg in GLOBAL_FLAGS_WITH_VALUE:
            i += 2
            continue
        i += 1
    if i >= len(argv):
        return Invocation(None, None)
    command = argv[i]
    if command not in CREATING_COMMANDS:
        return Invocation(command, None)
    bundle = cwd
    rest = argv[i + 1 :]
    j = 0
    while j < len(rest):
        arg = rest[j]
        if arg in BUNDLE_FLAGS and j + 1 < len(rest):
            bundle = rest[j + 1]
            j += 2
            continue
        for flag in BUNDLE_FLAGS:
            if arg.startswith(flag + "="):
                bundle = arg.split("=", 1)[1]
        j += 1
    return Invocation(command, os.path.join(cwd, bundle))


def listener_answers(path: str | None) -> bool:
    """Whether the node daemon accepts connections on its seccomp socket.

    runc refuses to start a container whose ``listenerPath`` it cannot reach, so
    without a live daemon the container gets the files but no sysinfo rule.
    """
    if not path:
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def edit_bundle(bundle: str, settings: WrapSettings) -> str:
    """Rewrite ``bundle``/config.json in place (atomically); return a log line."""
    if settings.seccomp_socket and not listener_answers(settings.seccomp_socket):
        settings = replace(settings, seccomp_socket=None)
    config = os.path.join(bundle, "config.json")
    with open(config) as f:
        spec = json.load(f)
    wrapped, report = wrap_spec(spec, settings)
    tmp = os.path.join(bundle, ".config.json.kube-lxcfs")
    with open(tmp, "w") as f:
        json.dump(wrapped, f)
    os.replace(tmp, config)
    return (
        f"mounted={','.join(report.mounted) or '-'} skipped={','.join(report.skipped) or '-'} "
        f"seccomp={report.seccomp}"
    )


def _log(line: str) -> None:
    path = os.environ.get(LOG_FILE_ENV)
    if not path:
        return
    try:
        with open(path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} kube-lxcfs-runc: {line}\n")
    except OSError:
        pass


def _which(program: str) -> str:
    """``program`` on PATH (shutil.which costs more imports than a container start allows)."""
    if "/" in program:
        return program
    for directory in os.environ.get("PATH", "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin").split(
        ":"
    ):
        candidate = os.path.join(directory, program)
        if os.access(candidate, os.X_OK):
            return candidate
    return program


def run_wrapper(argv: Sequence[str], settings: RuntimeSettings | None = None) -> int:
    """Edit the bundle if ``argv`` creates a container, then exec the real runtime."""
    settings = settings or load_settings()
    runtime = _which(settings.runtime)
    invocation = parse_invocation(argv, os.getcwd())
    if invocation.bundle is not None:
        try:
            _log(
                f"{invocation.command} {invocation.bundle}: "
                + edit_bundle(invocation.bundle, settings.wrap)
            )
        except Exception as exc:  # a spec of another shape than we know, a bug of ours: never
            # block a container because of us, hand over unchanged (one line, no traceback).
            print(f"kube-lxcfs-runc: leaving the bundle unchanged: {exc}", file=sys.stderr)
            _log(f"{invocation.command} {invocation.bundle}: unchanged: {exc}")
    try:
        os.execv(runtime, [runtime, *argv])
    except OSError as exc:
        print(f"kube-lxcfs-runc: cannot run {runtime}: {exc}", file=sys.stderr)
        return 127
    return 0  # pragma: no cover  (execv does not return)


def main() -> int:
    """Entry point of the ``kube-lxcfs-runc`` console script (containerd's BinaryName)."""
    return run_wrapper(sys.argv[1:])
