"""``python -m kube_lxcfs.runtime``: the wrapper without the CLI's imports (kube-lxcfs-runc)."""

import sys

from kube_lxcfs.runtime.wrapper import main

sys.exit(main())
