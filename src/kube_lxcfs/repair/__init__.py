"""Repair of containers' bind mounts after a daemon restart."""
