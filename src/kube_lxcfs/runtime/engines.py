"""Register the runtime wrapper with Docker and Podman as the runtime ``kube-lxcfs``.

Docker and Podman users then write ``docker run --runtime kube-lxcfs ...`` instead of
eight ``-v`` flags binding the virtual files, and get sysinfo(2) answered from the cgroup too.

- Docker: the ``runtimes`` map of ``/etc/docker/daemon.json`` gets
  ``"kube-lxcfs": {"path": LAUNCHER}``; dockerd loads new runtimes on SIGHUP
  (``systemctl reload docker``), no restart, running containers untouched.
- Podman: a containers.conf ``[engine.runtimes]`` entry ``kube-lxcfs = [LAUNCHER]``. By
  default in its own drop-in (``/etc/containers/containers.conf.d/99-kube-lxcfs.conf``), so
  the user's containers.conf is never edited; ``--config FILE`` edits that file instead (for a
  ``CONTAINERS_CONF`` setup), our lines marked like setup-node's. Podman has no daemon: the
  next ``podman run`` reads it.

The wrapper is installed as ``setup-node`` installs it (zipapp plus launcher, host python3),
under a prefix (default /usr/local). Settings other than the defaults (mount dir, seccomp
socket, real runtime) are exported by the launcher, since an engine passes the runtime no
settings. Every change to an existing config leaves a timestamped backup next to it; nothing
else in the file changes (Docker's JSON is re-indented). ``undo`` removes our entry only.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kube_lxcfs.errors import KubeLxcfsError
from kube_lxcfs.runtime.install import (
    HANDLER,
    MIN_HOST_PYTHON,
    SetupReport,
    _write_if_changed,
    launcher_script,
    zipapp_bytes,
)

RUNTIME_NAME = HANDLER
"""The name users pass to ``--runtime``: the same as the RuntimeClass handler."""
DEFAULT_PREFIX = "/usr/local"
DOCKER_CONFIG = "/etc/docker/daemon.json"
PODMAN_DROPIN = "/etc/containers/containers.conf.d/99-kube-lxcfs.conf"
BEGIN = "# BEGIN kube-lxcfs runtime (managed by kube-lxcfs setup-podman; edits here are replaced)"
END = "# END kube-lxcfs runtime"


class EngineConfigError(KubeLxcfsError, ValueError):
    """A config file we cannot edit safely (not JSON/TOML, or an unexpected shape)."""


# --- pure: the edits ---------------------------------------------------------------------


def _docker_object(text: str) -> dict:
    if not text.strip():
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EngineConfigError(f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(config, dict):
        raise EngineConfigError("not a JSON object")
    if not isinstance(config.get("runtimes", {}), dict):
        raise EngineConfigError('"runtimes" is not an object')
    return config


def _docker_text(config: dict) -> str:
    return json.dumps(config, indent=4) + "\n"


def docker_registered(text: str) -> str | None:
    """The path daemon.json gives the runtime ``kube-lxcfs``, or None."""
    entry = _docker_object(text).get("runtimes", {}).get(RUNTIME_NAME)
    return str(entry.get("path", "")) if isinstance(entry, dict) else None


def docker_with_runtime(text: str, launcher: str) -> str:
    """daemon.json ``text`` with ``runtimes.kube-lxcfs.path = launcher``; the rest kept."""
    config = _docker_object(text)
    if docker_registered(text) == launcher:
        return text
    config.setdefault("runtimes", {})[RUNTIME_NAME] = {"path": launcher}
    return _docker_text(config)


def docker_without_runtime(text: str) -> str:
    """daemon.json ``text`` without our runtime (and without ``runtimes`` if that emptied it)."""
    config = _docker_object(text)
    runtimes = config.get("runtimes", {})
    if RUNTIME_NAME not in runtimes:
        return text
    del runtimes[RUNTIME_NAME]
    if not runtimes:
        del config["runtimes"]
    return _docker_text(config)


_BLOCK = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.DOTALL)
_RUNTIMES_HEADER = re.compile(r"^[ \t]*\[[ \t]*engine[ \t]*\.[ \t]*runtimes[ \t]*\][^\n]*\n?", re.M)


def _toml(text: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise EngineConfigError(f"not valid TOML ({exc})") from None


def podman_registered(text: str) -> str | None:
    """The first path containers.conf gives the runtime ``kube-lxcfs``, or None."""
    paths = _toml(text).get("engine", {}).get("runtimes", {}).get(RUNTIME_NAME)
    return str(paths[0]) if isinstance(paths, list) and paths else None


def podman_with_runtime(text: str, launcher: str) -> str:
    """containers.conf ``text`` with ``[engine.runtimes] kube-lxcfs = [launcher]``.

    Our lines sit between marker comments: right after the file's own ``[engine.runtimes]``
    header when it has one (TOML forbids a second), else appended with the header.
    """
    outside = _BLOCK.sub("", text)
    if RUNTIME_NAME in _toml(outside).get("engine", {}).get("runtimes", {}):
        raise EngineConfigError(
            f"it already defines the runtime '{RUNTIME_NAME}' itself; left it alone"
        )
    entry = f"{RUNTIME_NAME} = [{json.dumps(launcher)}]"
    header = _RUNTIMES_HEADER.search(outside)
    if header:
        head = outside[: header.end()]
        head = head if head.endswith("\n") else head + "\n"
        new = f"{head}{BEGIN}\n{entry}\n{END}\n{outside[header.end() :]}"
    else:
        kept = outside.rstrip("\n") + "\n\n" if outside.strip() else ""
        new = f"{kept}{BEGIN}\n[engine.runtimes]\n{entry}\n{END}\n"
    try:
        registered = podman_registered(new)
    except EngineConfigError as exc:
        registered = f"{exc}"
    if registered != launcher:
        raise EngineConfigError(
            f"adding [engine.runtimes] would not register the runtime ({registered});"
            f" add {entry} to its [engine.runtimes] by hand"
        )
    return new


def podman_without_runtime(text: str) -> str:
    """containers.conf ``text`` without our marked lines (and the blank line we added)."""
    match = _BLOCK.search(text)
    if match is None:
        return text
    rest = text[: match.start()] + text[match.end() :]
    if match.end() == len(text):
        rest = rest.rstrip("\n") + "\n" if rest.strip() else ""
    return rest


# --- the engines -------------------------------------------------------------------------


@dataclass(frozen=True)
class Engine:
    """What differs between Docker and Podman."""

    name: str
    default_config: str
    registered: Callable[[str], str | None]
    with_runtime: Callable[[str, str], str]
    without_runtime: Callable[[str], str]
    load_hint: str
    drop_in: bool
    """The default config is a file of ours (removed by undo when nothing else is left)."""


DOCKER = Engine(
    name="docker",
    default_config=DOCKER_CONFIG,
    registered=docker_registered,
    with_runtime=docker_with_runtime,
    without_runtime=docker_without_runtime,
    load_hint="reload dockerd to load it: systemctl reload docker (or kill -HUP <dockerd pid>)",
    drop_in=False,
)
PODMAN = Engine(
    name="podman",
    default_config=PODMAN_DROPIN,
    registered=podman_registered,
    with_runtime=podman_with_runtime,
    without_runtime=podman_without_runtime,
    load_hint="podman reads it on the next run: podman run --runtime kube-lxcfs ...",
    drop_in=True,
)
ENGINES = {engine.name: engine for engine in (DOCKER, PODMAN)}


def launcher_paths(prefix: Path) -> tuple[Path, Path]:
    """(launcher, zipapp) under ``prefix``, as setup-node lays them out under /usr/local."""
    return prefix / "bin" / "kube-lxcfs-runc", prefix / "lib" / "kube-lxcfs" / "kube-lxcfs-runc.pyz"


def wrapper_env(mount_dir: str, seccomp_socket: str, runtime: str) -> dict[str, str]:
    """The settings the launcher exports: only those that differ from the wrapper's defaults."""
    from kube_lxcfs.defaults import MOUNT_DIR, SECCOMP_SOCKET

    wanted = {
        "KUBE_LXCFS_MOUNT_DIR": (mount_dir, MOUNT_DIR),
        "KUBE_LXCFS_SECCOMP_SOCKET": (seccomp_socket, SECCOMP_SOCKET),
        "KUBE_LXCFS_RUNTIME": (runtime, "runc"),
    }
    return {key: value for key, (value, default) in wanted.items() if value != default}


def diff(old: str, new: str, path: Path) -> list[str]:
    """A unified diff of a config change, for --dry-run."""
    return [
        line.rstrip("\n")
        for line in difflib.unified_diff(
            old.splitlines(True), new.splitlines(True), str(path), f"{path} (new)"
        )
    ]


# --- the shell: files on the host --------------------------------------------------------


def _backup(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    backup = path.with_name(f"{path.name}.kube-lxcfs-backup-{stamp}")
    counter = 1
    while backup.exists():
        backup = path.with_name(f"{path.name}.kube-lxcfs-backup-{stamp}.{counter}")
        counter += 1
    shutil.copy2(path, backup)
    return backup


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def python3_interpreter() -> tuple[tuple[int, int] | None, str]:
    """(version, real executable) of the ``python3`` on PATH, or (None, "python3").

    The launcher names the executable itself: dockerd's PATH is not the user's shell's, and a
    version manager's ``python3`` shim costs ~300 ms per start here (pyenv), paid on each of
    the several runtime calls per container."""
    import subprocess

    code = "import sys; print(*sys.version_info[:2], sys.executable)"
    try:
        out = subprocess.run(
            ["python3", "-c", code], capture_output=True, text=True, timeout=30, check=True
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None, "python3"
    if len(out) != 3 or not out[2].startswith("/"):
        return None, "python3"
    return (int(out[0]), int(out[1])), out[2]


def setup_engine(
    engine: Engine,
    *,
    config: Path,
    prefix: Path = Path(DEFAULT_PREFIX),
    env: Mapping[str, str] | None = None,
    dry_run: bool = False,
    src_root: Path | None = None,
    python_version: tuple[int, int] | None = None,
) -> SetupReport:
    """Install the wrapper under ``prefix`` and register it in ``config``."""
    report = SetupReport()
    interpreter = "python3"
    if python_version is not None:
        version: tuple[int, int] | None = python_version
    else:
        version, interpreter = python3_interpreter()
    if version is None or version < MIN_HOST_PYTHON:
        found = "no python3" if version is None else f"python3 {version[0]}.{version[1]}"
        report.fail(f"this machine has {found} on PATH; the wrapper needs python3 >= 3.10")
        return report
    old = _read(config)
    launcher, zipapp = launcher_paths(prefix)
    try:
        new = engine.with_runtime(old or "", str(launcher))
    except EngineConfigError as exc:
        report.fail(f"{config}: {exc}")
        return report
    src_root = src_root or Path(__file__).resolve().parents[2]
    script = launcher_script(str(zipapp), env, f"setup-{engine.name}", interpreter)
    for path, data, mode in (
        (zipapp, zipapp_bytes(src_root), 0o644),
        (launcher, script.encode(), 0o755),
    ):
        changed = dry_run or _write_if_changed(path, data, mode)
        report.add(f"{'would write' if dry_run else 'wrote' if changed else 'unchanged'} {path}")
    if new == old:
        report.add(f"unchanged {config} (runtime '{RUNTIME_NAME}' registered)")
        return report
    if dry_run:
        report.add(f"would register runtime '{RUNTIME_NAME}' in {config}:")
        report.lines += diff(old or "", new, config)
        return report
    if old is not None:
        report.add(f"backup {_backup(config)}")
    _write_if_changed(config, new.encode(), config.stat().st_mode & 0o777 if old else 0o644)
    report.add(f"registered runtime '{RUNTIME_NAME}' ({launcher}) in {config}")
    report.add(engine.load_hint)
    return report


def undo_engine(engine: Engine, *, config: Path, dry_run: bool = False) -> SetupReport:
    """Remove our runtime from ``config``; the wrapper's files stay (setup-node shares them)."""
    report = SetupReport()
    old = _read(config)
    try:
        new = engine.without_runtime(old) if old is not None else None
    except EngineConfigError as exc:
        report.fail(f"{config}: {exc}")
        return report
    if old is None or new == old:
        report.add(f"unchanged {config} (runtime '{RUNTIME_NAME}' not registered)")
        return report
    remove = engine.drop_in and config == Path(engine.default_config) and not new.strip()
    if dry_run:
        report.add(f"would {'remove' if remove else 'unregister the runtime in'} {config}:")
        report.lines += diff(old, "" if remove else new, config)
        return report
    report.add(f"backup {_backup(config)}")
    if remove:
        config.unlink()
        report.add(f"removed {config}")
    else:
        _write_if_changed(config, new.encode(), config.stat().st_mode & 0o777)
        report.add(f"unregistered runtime '{RUNTIME_NAME}' in {config}")
    if engine is DOCKER:
        report.add("reload dockerd so that it forgets the runtime: systemctl reload docker")
    return report


def podman_conf_override(config: Path, environ: Mapping[str, str]) -> str:
    """A warning when ``CONTAINERS_CONF`` makes podman read only another file than ``config``."""
    named = environ.get("CONTAINERS_CONF")
    if not named or Path(named).absolute() == config:
        return ""
    return (
        f"CONTAINERS_CONF={named} is set: podman then reads only that file, not {config};"
        f" run kube-lxcfs setup-podman --config {named}"
    )


def registered_launcher(engine: Engine, config: Path) -> tuple[str | None, str]:
    """(the registered launcher or None, why not) for ``kube-lxcfs doctor``."""
    text = _read(config)
    if text is None:
        return None, f"{config} does not exist"
    try:
        path = engine.registered(text)
    except EngineConfigError as exc:
        return None, f"{config}: {exc}"
    return path, "" if path else f"{config} has no runtime '{RUNTIME_NAME}'"


def is_executable(path: str) -> bool:
    """An executable regular file."""
    return os.path.isfile(path) and os.access(path, os.X_OK)
