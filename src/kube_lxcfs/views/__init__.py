"""Pure renderers: (host text, cgroup snapshot, options) → bytes, one module per file family."""
