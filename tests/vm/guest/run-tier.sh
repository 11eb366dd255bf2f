#!/bin/bash
# Runs inside the VM: unpacks the project shipped by the host (/mnt/results/project.tar) to a
# local tmpfs, where imports are fast and bytecode can be cached, mounts the containers' root
# filesystem cache when the host attached it (/dev/vdc), and runs pytest on the given test
# paths, results as JUnit XML on the results share.
set -eu
mkdir -p /tmp/project
tar -C /tmp/project -xf /mnt/results/project.tar
if [ -b /dev/vdc ]; then
    mkdir -p /mnt/rootfs-cache
    mount -o ro /dev/vdc /mnt/rootfs-cache
    export KUBE_LXCFS_ROOTFS_CACHE=/mnt/rootfs-cache
fi
cd /tmp/project
export PYTHONPATH=/tmp/project/src
# The daemon runs with its default render cache: under emulation every render is slower
# than the slow-cgroup threshold, which exercises the slow-cgroup path (reads wait for the
# background refresh, never the host's file) on every read.
# compile once up front, on both vCPUs
python3 -m compileall -q -j 2 src tests >/dev/null
exec python3 -m pytest -p no:cacheprovider -q -o console_output_style=classic \
    --junitxml=/mnt/results/junit.xml "$@"
