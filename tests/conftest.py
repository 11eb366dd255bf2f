"""Shared test setup.

Subprocesses started by tests (``python -m kube_lxcfs ...``) must import the
package from this checkout, not from wherever it is installed, so the source
directory is put on PYTHONPATH for the whole run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p
)


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    """A real ``helm`` built from its pinned Go module (tests/cluster/go/helm), cached.

    Skips only when there is no Go toolchain; a failed build fails the test.
    """
    from cluster.binaries import BuildError, GoMissingError, find_or_build_one

    try:
        return find_or_build_one("helm")
    except GoMissingError as exc:
        pytest.skip(str(exc))
    except BuildError as exc:
        pytest.fail(str(exc), pytrace=False)
