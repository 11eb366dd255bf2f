"""Where kube-lxcfs lives on a node, and the defaults that several commands share.

Every other module takes these values from here instead of repeating them. Stdlib-only and
free of imports on purpose: the OCI runtime wrapper ships to the host as a zipapp of a few
modules (``runtime/install.py:PACKAGE_FILES``) and imports this one too.
"""

from __future__ import annotations

MOUNT_DIR = "/var/lib/lxcfs"
"""Where the node agent mounts the filesystem; what the webhook and the wrapper bind-mount."""

STATE_DIR = "/run/kube-lxcfs"
"""The node's runtime state: repair generations, detach records, sockets, the webhook's TLS."""

SECCOMP_SOCKET = f"{STATE_DIR}/seccomp.sock"
"""The daemon's seccomp-notify socket for sysinfo(2); the wrapper names it in the spec."""

TLS_DIR = f"{STATE_DIR}/tls"
"""Where the webhook pod finds (or, self-provisioning, writes) its serving certificate."""

WEBHOOK_PORT = 8443
"""The webhook's HTTPS port (AdmissionReviews)."""

HEALTH_PORT = 8080
"""The webhook's plain-HTTP port for /healthz, /readyz and /metrics."""

INJECT_KEY = "kube-lxcfs.io/inject"
"""Pod label or annotation: ``"true"`` opts a pod in, ``"false"`` opts it (or a container) out."""
