#!/usr/bin/env bash
# Set up a local virtual environment (.venv) from nothing, pinned by constraints.txt.
#   scripts/setup.sh core   numpy/torch/vtk/SimpleITK/MONAI + the weaknet package (enough for `weaknet demo`)
#   scripts/setup.sh full   core + slicer-core/trame-slicer, playwright, Debian chromium + EGL, real data
# Idempotent: a stamp file skips work already done for the same constraints.
set -euo pipefail
level=${1:-core}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
venv="$root/.venv"
pip="$venv/bin/pip"
hash=$( (cat constraints.txt scripts/*.sh */pyproject.toml 2>/dev/null || true) | sha1sum | cut -c1-12)
stamp="$venv/.weaknet-$level-$hash"
[ -f "$stamp" ] && exit 0

if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating $venv with $($PY --version)"
  "$PY" -m venv "$venv"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
echo "[setup] installing the weaknet package and its pinned dependencies (CPU torch) ..."
"$pip" install -q -c constraints.txt -e "WeakNetLib[standalone,test]"

if [ "$level" = full ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    missing=""
    for pkg in chromium libegl1 libegl-mesa0 libgl1-mesa-dri; do
      dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
      echo "[setup] apt-get install$missing"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    fi
  fi
  echo "[setup] installing Slicer's core (slicer-core, trame-slicer) and playwright ..."
  "$pip" install -q -c constraints.txt "trame-slicer[standalone]" playwright
  for pkg in WeakNetSlicer WeakNetWeb; do
    [ -f "$pkg/pyproject.toml" ] && "$pip" install -q -c constraints.txt --no-deps -e "$pkg"
  done
  bash scripts/fetch_data.sh
fi
rm -f "$venv"/.weaknet-"$level"-*
touch "$stamp"
echo "[setup] done ($level)"
