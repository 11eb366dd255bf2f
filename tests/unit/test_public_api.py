"""The names other packages use from the core stay importable."""

from __future__ import annotations

from kube_lxcfs import cgroups, tree
from kube_lxcfs.vfs import VirtualTree


def test_cgroups_exports() -> None:
    for name in cgroups.__all__:
        assert getattr(cgroups, name) is not None, name


def test_tree_is_a_virtual_tree() -> None:
    assert set(tree.__all__) >= {"ProcTree", "build_tree"}
    for method in ("lookup", "listdir", "read"):
        assert callable(getattr(tree.ProcTree, method))
        assert hasattr(VirtualTree, method)
    for method in ("start", "close", "sysinfo"):
        assert callable(getattr(tree.ProcTree, method))
