"""``python -m kube_lxcfs``."""

import sys

from kube_lxcfs.cli import main

sys.exit(main())
