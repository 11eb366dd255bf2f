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
# Emulation makes every render slower than the daemon's slow-cgroup threshold (tens of ms on
# real hardware), which would turn reads into host-file fallbacks: render every read inline.
export KUBE_LXCFS_CACHE=off
# compile once up front, on both vCPUs
python3 -m compileall -q -j 2 src tests >/dev/null
exec python3 -m pytest -p no:cacheprovider -q -o console_output_style=classic \
    --junitxml=/mnt/results/junit.xml "$@"
