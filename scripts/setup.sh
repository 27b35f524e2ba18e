#!/usr/bin/env bash
# Install everything edgec and its test suite need on a bare Debian/Ubuntu machine:
# the system toolchains (host and aarch64 cross compilers, qemu user-mode emulation) and the
# Python packages (edgec itself, editable, with the dev extras: torch CPU, pytest).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

APT_PACKAGES=(g++ g++-aarch64-linux-gnu qemu-user)
"${PYTHON:-python3}" -m pip --version >/dev/null 2>&1 || APT_PACKAGES+=(python3-pip)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PY="${PYTHON:-python3}"
# A distribution's own python refuses pip installs outside a venv (PEP 668); outside a venv we
# are the machine's setup step, so install into it anyway.
if [ -z "${VIRTUAL_ENV:-}" ] && "$PY" -c 'import sys,sysconfig,os;sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"),"EXTERNALLY-MANAGED")))'; then
    export PIP_BREAK_SYSTEM_PACKAGES=1
fi
# torch==2.13.0 first, on its own, so the CPU build is taken and nothing pulls the CUDA one.
"$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0"
"$PY" -m pip install -q --disable-pip-version-check -e ".[dev]"
echo "edgec is installed: $("$PY" -m edgec.cli --version)"
