"""The root of kube-lxcfs's exceptions.

Every error kube-lxcfs raises on purpose derives from :class:`KubeLxcfsError`, one class per
package that says where it comes from (``cgroups.CgroupError``, ``repair.RepairError``,
``webhook.config.ConfigError``, ``deploy.kubeapi.ApiError``...). Where callers used to catch a
builtin (``ValueError`` for bad input, ``RuntimeError``, ``OSError`` with an errno), the class
keeps that base too. ``except KubeLxcfsError`` therefore catches our own failures and nothing
else; commands turn them into one line on stderr and an exit code.
"""

from __future__ import annotations


class KubeLxcfsError(Exception):
    """Base of every error kube-lxcfs raises on purpose."""
