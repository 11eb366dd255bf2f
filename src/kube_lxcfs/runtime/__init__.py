"""Delivery below the Pod API: an OCI runtime wrapper and sysinfo(2) interception.

``spec`` edits a bundle's config.json (pure); ``wrapper`` is the runc-compatible
command that applies it and hands over to the real runtime; ``seccomp`` and
``listener`` answer the sysinfo(2) notifications of wrapped containers.
"""
