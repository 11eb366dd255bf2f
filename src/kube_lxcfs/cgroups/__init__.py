"""Cgroup discovery, pid → cgroup resolution and typed snapshots (v1, hybrid, v2)."""
