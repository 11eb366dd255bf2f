#!/usr/bin/env bash
# Install what kube-lxcfs needs on a Debian machine (run as root).
#   bash scripts/bootstrap.sh          product only: apt packages, .venv, `kube-lxcfs` on PATH
#   bash scripts/bootstrap.sh --test   also everything the tests need (deps/apt/*.txt, deps/pip/*.txt)
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

log() { printf '[bootstrap] %s\n' "$*" >&2; }

apt_packages() {
    if [[ $want_test == 1 ]]; then cat deps/apt/*.txt; else cat deps/apt/base.txt; fi \
        | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' | sort -u
}
missing=()
for pkg in $(apt_packages); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's lxcfs package may start a system lxcfs on /var/lib/lxcfs; we never use or stop it.

if [[ ! -x .venv/bin/python ]]; then
    log "creating .venv"
    python3 -m venv .venv
fi
log "pip install"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
extras="webhook,kubernetes"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[${extras}]"
if [[ $want_test == 1 ]]; then
    for req in deps/pip/*.txt; do
        .venv/bin/python -m pip install -q --disable-pip-version-check -r "$req"
    done
fi
ln -sf "$repo/.venv/bin/kube-lxcfs" /usr/local/bin/kube-lxcfs
log "ready: $(/usr/local/bin/kube-lxcfs --version)"
