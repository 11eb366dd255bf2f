"""Repair of containers' bind mounts after a daemon restart.

- :mod:`.plan`: pure — mountinfo records (:mod:`kube_lxcfs.mountinfo`) and probe results in,
  findings (healthy / stale / shadowed / ...) out.
- :mod:`.scan`: finds every mount namespace and probes mounts from inside it.
- :mod:`.fix`: swaps stale mounts for live ones with
  open_tree/move_mount from a forked child that joined the namespace.
- :mod:`.engine`: one pass (``repair``, ``detach``), reports and metrics.
- :mod:`.hook`: what the daemon calls after (re)start and on SIGTERM.
"""

from kube_lxcfs.repair.engine import (
    DetachRecord,
    MountStatus,
    Outcome,
    RepairError,
    RepairMetrics,
    Report,
    detach,
    repair,
)
from kube_lxcfs.repair.fix import Strategy

__all__ = [
    "DetachRecord",
    "MountStatus",
    "Outcome",
    "RepairError",
    "RepairMetrics",
    "Report",
    "Strategy",
    "detach",
    "repair",
]
