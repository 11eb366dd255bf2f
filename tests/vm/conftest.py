"""The VM tier: host-side tests boot the VM; tests under guest/ only run inside it."""

from __future__ import annotations

import os

import pytest

# guest/ holds tests for the pure cgroup v2 guest; on the host they are collected only
# through the VM (tests/vm/test_v2_tier.py runs them there).
collect_ignore = [] if os.environ.get("KUBE_LXCFS_IN_VM") else ["guest"]

_summaries: list[str] = []


@pytest.fixture(scope="session")
def vm_tier_summaries() -> list[str]:
    """Lines (build, boot and run times) printed at the end of the pytest run."""
    return _summaries


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _summaries:
        terminalreporter.write_line(f"[vm] {line}")
