"""Shared test setup.

Subprocesses started by tests (``python -m kube_lxcfs ...``) must import the
package from this checkout, not from wherever it is installed, so the source
directory is put on PYTHONPATH for the whole run.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p
)
