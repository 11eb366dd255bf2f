"""Value sets of the runtimeClass delivery mode, shared by the deploy tests that render every
template branch (drift, schema validation, helm template equality)."""

from __future__ import annotations

RC_MODE = ["injection.mode=runtimeClass", "runtimeClass.enabled=true"]

RUNTIME_CLASS_VARIANTS = {
    "runtime-class": [
        *RC_MODE,
        "runtimeClass.name=lxcfs.example.com",
        "runtimeClass.nodeSelector.pool=lxcfs",
    ],
    "runtime-class-no-setup": ["runtimeClass.enabled=true", "runtimeClass.setupNode=false"],
}
