"""Certificate defaults, importable without ``cryptography`` (the CLI parser needs them).

The node agent image installs only the base package; building ``kube-lxcfs``'s
parser must not import optional dependencies.
"""

KEY_TYPES = ("ecdsa-p256", "rsa2048")
DEFAULT_KEY_TYPE = "ecdsa-p256"
DEFAULT_CA_DAYS = 3650
DEFAULT_DAYS = 365
