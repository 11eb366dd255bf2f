"""The node agent image installs only the base package: its commands must not need extras."""

from __future__ import annotations

import subprocess
import sys

BLOCKER = """
import sys

class BlockExtras:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"cryptography", "yaml", "kubernetes", "jsonschema"}:
            raise ImportError("optional dependency imported: " + name)

sys.meta_path.insert(0, BlockExtras())
from kube_lxcfs.cli import build_parser

parser = build_parser()
args = parser.parse_args(["fs", "/var/lib/lxcfs"])
assert args.command == "fs"
args = parser.parse_args(["doctor", "--node"])
import kube_lxcfs.deploy.doctor  # what `doctor --node` runs
print("ok")
"""


def test_cli_and_node_doctor_work_without_optional_dependencies() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_the_blocker_blocks() -> None:
    code = BLOCKER.replace("from kube_lxcfs.cli import build_parser", "import yaml")
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode != 0
    assert "optional dependency imported: yaml" in proc.stderr
