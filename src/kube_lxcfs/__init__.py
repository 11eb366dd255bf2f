"""kube-lxcfs: container-accurate /proc for Kubernetes.

The package is split into a functional core (``cgroups`` parsers and
snapshots, ``views`` renderers, ``webhook.mutation``) and a thin shell
(``fuse`` adapter, ``repair``, ``webhook.server``, ``sandbox``) driven by
``cli``.
"""

__version__ = "0.1.0"
