"""Deployment: manifests rendered from one source of truth, install/uninstall, doctor."""
