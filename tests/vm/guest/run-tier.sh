#!/bin/bash
# Runs inside the VM (cwd: the project, read-only): the guest test suites, results as JUnit XML
# on the results share. Arguments: the test paths to run.
set -u
cd /mnt/src
exec python3 -m pytest -p no:cacheprovider -q -o console_output_style=classic \
    --junitxml=/mnt/results/junit.xml "$@"
