"""A plain ``pip install kube-lxcfs`` (no extras): commands that need one say which, in one line.

The commands run from a real virtual environment that holds only the project (editable, so
this checkout's code) and its base dependencies, mfusepy and prometheus-client: nothing of
the ``webhook`` or ``kubernetes`` extras. The environment is cached under
/var/cache/kube-lxcfs/bare-venv (keyed by the interpreter, the checkout and pyproject.toml);
building it the first time needs PyPI, like the rest of ``scripts/bootstrap.sh --test``.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from kube_lxcfs.cli import EXTRA_MODULES
from kube_lxcfs.commands import SUBCOMMANDS

REPO = Path(__file__).resolve().parents[1]
CACHE_ROOT = Path(os.environ.get("KUBE_LXCFS_BARE_VENV_CACHE", "/var/cache/kube-lxcfs/bare-venv"))


def _cache_key() -> str:
    mfusepy = importlib.metadata.version("mfusepy")
    prometheus = importlib.metadata.version("prometheus-client")
    text = "\n".join(
        (
            sys.version,
            sys.base_prefix,
            str(REPO),
            mfusepy,
            prometheus,
            (REPO / "pyproject.toml").read_text(),
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _build(target: Path) -> None:
    """Create the venv at ``target`` (a venv's scripts name their interpreter by absolute
    path, so it is built in place, under a lock, and marked complete at the end)."""
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    pip = [str(target / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps"]
    subprocess.run([*pip, f"mfusepy=={importlib.metadata.version('mfusepy')}"], check=True)
    version = importlib.metadata.version("prometheus-client")
    subprocess.run([*pip, f"prometheus-client=={version}"], check=True)
    subprocess.run([*pip, "-e", str(REPO)], check=True)
    (target / "complete").touch()


@pytest.fixture(scope="module")
def bare_venv() -> Path:
    target = CACHE_ROOT / _cache_key()
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(CACHE_ROOT / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "complete").exists():
            _build(target)
    return target


def _run(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(
        [str(venv / "bin" / "kube-lxcfs"), *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd="/",
    )


def test_the_bare_venv_really_lacks_every_extra(bare_venv: Path) -> None:
    for module in EXTRA_MODULES:
        proc = subprocess.run(
            [str(bare_venv / "bin" / "python"), "-c", f"import {module}"],
            check=False,
            capture_output=True,
            text=True,
            env={"PATH": os.environ["PATH"]},
        )
        assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr, module


def test_the_table_of_extras_matches_pyproject() -> None:
    """Every package of an optional extra (but the test tools) is in the CLI's table."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    declared = {
        re.split(r"[<>=\[; ]", requirement)[0].lower(): extra
        for extra, requirements in extras.items()
        if extra != "test"
        for requirement in requirements
    }
    table = {distribution.lower(): extra for distribution, extra in EXTRA_MODULES.values()}
    assert table == declared


TB = "/tmp/kube-lxcfs-no-extras"  # must never be created: the command fails first
NEEDS_EXTRA = [
    # Serving needs no extra (the certificate's expiry comes from CPython's own decoder);
    # provisioning the certificate does.
    (
        (
            "webhook",
            "--self-provision-secret=s",
            "--namespace=ns",
            f"--tls-cert={TB}/tls.crt",
            f"--tls-key={TB}/tls.key",
        ),
        "webhook",
    ),
    (("certs", "--out-dir", f"{TB}/certs"), "webhook"),
    (("certs", "--secret-yaml"), "webhook"),
    (("manifests",), "kubernetes"),
    (("install", "--dry-run"), "kubernetes"),
    (("uninstall", "--dry-run"), "kubernetes"),
    (("doctor",), "kubernetes"),
]


@pytest.mark.parametrize(
    ("argv", "extra"), NEEDS_EXTRA, ids=lambda v: " ".join(v) if isinstance(v, tuple) else v
)
def test_a_command_without_its_extra_says_how_to_get_it(
    bare_venv: Path, argv: tuple[str, ...], extra: str
) -> None:
    proc = _run(bare_venv, *argv)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"kube-lxcfs {argv[0]}: needs ")
    assert f"extra '{extra}'" in lines[0]
    assert lines[0].endswith(f"fix: pip install 'kube-lxcfs[{extra}]'")
    assert proc.stdout == ""
    assert not Path(TB).exists()


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_help_works_without_extras(bare_venv: Path, name: str) -> None:
    proc = _run(bare_venv, name, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def test_commands_without_extras_run_in_the_bare_venv(bare_venv: Path) -> None:
    """The base install is enough for the node side: a bad fs option is an ordinary error."""
    proc = _run(bare_venv, "fs", "--cgroup-of", "nobody", "/nonexistent")
    assert proc.returncode == 2
    assert "extra" not in proc.stderr and "Traceback" not in proc.stderr
    proc = _run(bare_venv, "--version")
    assert proc.returncode == 0 and proc.stdout.startswith("kube-lxcfs ")
