"""Prints its pid, then os.cpu_count(), psutil's cpu_count() and total memory, and the affinity
size, once per input line."""

import os
import sys

import psutil

print(os.getpid(), flush=True)
for _ in sys.stdin:
    print(
        os.cpu_count(),
        psutil.cpu_count(),
        psutil.virtual_memory().total,
        len(os.sched_getaffinity(0)),
        flush=True,
    )
