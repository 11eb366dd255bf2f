"""The FUSE adapter: maps kernel requests onto the virtual tree, owns offsets and snapshots."""
