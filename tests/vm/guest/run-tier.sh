#!/bin/bash
# Runs inside the VM: unpacks the project shipped by the host (/mnt/results/project.tar) to a
# local tmpfs, where imports are fast and bytecode can be cached, and runs pytest on the given
# test paths, results as JUnit XML on the results share.
set -eu
mkdir -p /tmp/project
tar -C /tmp/project -xf /mnt/results/project.tar
cd /tmp/project
export PYTHONPATH=/tmp/project/src
# compile once up front, on both vCPUs
python3 -m compileall -q -j 2 src tests >/dev/null
exec python3 -m pytest -p no:cacheprovider -q -o console_output_style=classic \
    --junitxml=/mnt/results/junit.xml "$@"
