"""One module per CLI subcommand; each exposes ``register(subparsers)``.

A subcommand module adds its parser with ``set_defaults(handler=...)``; the
handler takes the parsed namespace and returns the process exit code.
Keeping each subcommand in its own module lets the parts of the product be
developed side by side without touching a shared file.
"""

# The order here is the order of ``kube-lxcfs --help``.
SUBCOMMANDS = (
    "fs",
    "run",
    "repair",
    "webhook",
    "certs",
    "manifests",
    "install",
    "uninstall",
    "doctor",
    "runtime",
    "setup-node",
    "setup-docker",
    "setup-podman",
)
