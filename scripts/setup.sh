#!/usr/bin/env bash
# Install everything edgec and its test suite need on a bare Debian/Ubuntu machine:
# the system toolchains (host and aarch64 cross compilers, qemu user-mode emulation), the Vulkan
# pieces (loader and headers, glslang, spirv-tools, Mesa's lavapipe as a CPU Vulkan device), and
# the Python packages (edgec itself, editable, with the dev extras: torch CPU, pytest, spconv).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

APT_PACKAGES=(g++ g++-aarch64-linux-gnu qemu-user
              libvulkan1 libvulkan-dev glslang-tools spirv-tools mesa-vulkan-drivers)
"${PYTHON:-python3}" -m pip --version >/dev/null 2>&1 || APT_PACKAGES+=(python3-pip)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
export DEBIAN_FRONTEND=noninteractive
if [ "${#missing[@]}" -gt 0 ]; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# CUDA and Jetson targets compile kernels with nvcc. Install Debian's CUDA toolkit when the
# machine has none and the archive offers it (it lives in non-free); otherwise say so.
if ! command -v nvcc >/dev/null 2>&1; then
    if apt-cache policy nvidia-cuda-toolkit 2>/dev/null | grep -q "Candidate: [0-9]"; then
        $SUDO apt-get install -y -qq --no-install-recommends nvidia-cuda-toolkit
    else
        echo "setup: nvcc not found and no nvidia-cuda-toolkit package available: CUDA/Jetson targets" \
             "(and their tests) need the CUDA toolkit on PATH" >&2
    fi
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
