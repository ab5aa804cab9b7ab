"""``weaknet fit-template`` end to end on real files: the mask keeps the image's exact geometry, the mesh is
in LPS, RAS and LPS point files agree, and every bad input exits 2 with one clear line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from weaknet.bench.asm import shape_geometry, shape_mask
from weaknet.metrics import iou
from weaknet.cli import main
from weaknet.coords import lps_to_ras
from weaknet.mesh import check_mesh, read_mesh
from weaknet.points import write_points
from weaknet.sampling import sample_surface_points, surface_distances
from weaknet.volume import Geometry, Volume, read_volume, write_volume


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """An oblique, anisotropic NRRD image of a bean, its true mask and 50 surface points (LPS)."""
    root = tmp_path_factory.mktemp("fit")
    centred = shape_geometry()
    truth = shape_mask("bean", centred)
    # move the grid away from the origin so that LPS and RAS positions differ
    g = Geometry.create(centred.size, centred.spacing, np.add(centred.origin, [40.0, -25.0, 10.0]),
                        centred.direction_matrix)
    image = write_volume(Volume((100.0 + 50.0 * truth).astype(np.float32), g), root / "image.nrrd")
    pts = sample_surface_points(truth, g, 50)
    return root, image, truth, pts


def run_cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_fit_template_writes_mask_with_image_geometry_and_lps_mesh(case, capsys):
    root, image, truth, pts = case
    points = write_points(pts, root / "clicks.mrk.json")
    code, out, err = run_cli(["fit-template", "--image", str(image), "--points", str(points),
                              "--output", str(root / "mask.nii.gz"), "--mesh", str(root / "mesh.vtp")], capsys)
    assert code == 0, err
    assert "mask.nii.gz" in out
    # the click-to-surface distance of the written mask is reported, and it is the mask's own
    median = float(re.search(r"surface: median ([0-9.]+) mm", out).group(1))
    arr0 = read_volume(root / "mask.nii.gz")
    assert median == pytest.approx(np.median(surface_distances(pts, arr0.array, arr0.geometry)), abs=0.006)
    assert median < 0.5
    ref, mask = sitk.ReadImage(str(image)), sitk.ReadImage(str(root / "mask.nii.gz"))
    assert mask.GetSize() == ref.GetSize()
    assert np.allclose(mask.GetSpacing(), ref.GetSpacing(), atol=1e-5)
    assert np.allclose(mask.GetOrigin(), ref.GetOrigin(), atol=1e-4)
    assert np.allclose(mask.GetDirection(), ref.GetDirection(), atol=1e-6)
    arr = sitk.GetArrayFromImage(mask)
    assert set(np.unique(arr)) == {0, 1}
    assert iou(arr, truth) > 0.9
    verts, faces = read_mesh(root / "mesh.vtp")
    assert check_mesh(verts, faces).ok
    # LPS mesh: passes through the LPS clicks (in RAS it would be mirrored away from them)
    d = np.linalg.norm(pts[:, None] - verts[None], axis=2).min(axis=1)
    assert np.median(d) < 1.0
    d_ras = np.linalg.norm(lps_to_ras(pts)[:, None] - verts[None], axis=2).min(axis=1)
    assert np.median(d_ras) > 5.0


def test_ras_markups_fcsv_and_csv_give_the_same_mask(case, capsys):
    root, image, _, pts = case
    ras = lps_to_ras(pts)
    doc = {"@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
                      "Resources/Schema/markups-schema-v1.0.3.json#",
           "markups": [{"type": "Fiducial", "coordinateSystem": "RAS", "controlPoints": [
               {"id": str(i), "label": f"F-{i}", "position": p.tolist(), "positionStatus": "defined"}
               for i, p in enumerate(ras)]}]}
    (root / "ras.mrk.json").write_text(json.dumps(doc), encoding="utf-8")
    # Slicer .fcsv without a CoordinateSystem header: RAS
    (root / "legacy.fcsv").write_text("# Markups fiducial file version = 4.6\n"
                                      "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n"
                                      + "".join(f"p{i},{x!r},{y!r},{z!r},0,0,0,1,1,1,0,F-{i},,\n"
                                                for i, (x, y, z) in enumerate(ras.tolist())))
    write_points(pts, root / "clicks.csv")
    masks = []
    for name in ("ras.mrk.json", "legacy.fcsv", "clicks.csv"):
        out = root / f"mask_{name.split('.')[0]}.nrrd"
        code, _, err = run_cli(["fit-template", "--image", str(image), "--points", str(root / name),
                                "--output", str(out)], capsys)
        assert code == 0, err
        masks.append(read_volume(out).array)
    assert masks[0].sum() > 1000
    assert np.array_equal(masks[0], masks[1]) and np.array_equal(masks[0], masks[2])


def test_installed_command_and_help():
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    exe = [sys.executable, "-m", "weaknet"]
    top = subprocess.run(exe + ["--help"], capture_output=True, text=True, env=env, timeout=60)
    assert top.returncode == 0 and "fit-template" in top.stdout
    sub = subprocess.run(exe + ["fit-template", "--help"], capture_output=True, text=True, env=env, timeout=60)
    for option in ("--image", "--points", "--output", "--mesh", "--iterations", "--subdivisions"):
        assert option in sub.stdout
    bad = subprocess.run(exe + ["fit-template", "--image", "missing.nrrd", "--points", "p.csv", "--output",
                                "m.nii.gz"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "no such file" in bad.stderr and "Traceback" not in bad.stderr


def _csv(path, rows):
    path.write_text("x,y,z\n" + "".join(",".join(str(v) for v in r) + "\n" for r in rows))
    return path


BAD_POINTS = {
    "three": ("need at least 4 points", lambda p: p[:3]),
    "collinear": ("lie on one line", lambda p: p[0] + np.outer(np.arange(6.0), [1.0, 2.0, 0.5])),
    "coplanar": ("lie in one plane", lambda p: np.c_[p[:, :2], np.full(len(p), p[0, 2])]),
    "duplicate": ("duplicates", lambda p: np.vstack([p[:10], p[3:4]])),
    "nan": ("NaN or infinite", lambda p: np.vstack([p[:10], [[np.nan, 0.0, 0.0]]])),
    "inf": ("NaN or infinite", lambda p: np.vstack([p[:10], [[0.0, np.inf, 0.0]]])),
    "outside": ("outside the image", lambda p: np.vstack([p[:10], [[500.0, 0.0, 0.0]]])),
}


@pytest.mark.parametrize("name", list(BAD_POINTS))
def test_bad_points_exit_2_with_one_line(case, capsys, name):
    root, image, _, pts = case
    expected, make = BAD_POINTS[name]
    path = _csv(root / f"bad_{name}.csv", make(pts))
    out = root / f"never_{name}.nii.gz"
    code, _, err = run_cli(["fit-template", "--image", str(image), "--points", str(path), "--output", str(out)],
                           capsys)
    assert code == 2 and expected in err, err
    assert err.startswith("weaknet fit-template: error:") and err.strip().count("\n") == 0
    assert not out.exists()


def _markups(root, name, doc):
    path = root / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def _bytes(path, data: bytes):
    path.write_bytes(data)
    return path


def _flat(path):
    sitk.WriteImage(sitk.Image(16, 16, sitk.sitkUInt8), str(path))
    return path


BAD_FILES = {
    "empty image": ("image", lambda r: _bytes(r / "empty.nrrd", b""), "file is empty"),
    "corrupt image": ("image", lambda r: _bytes(r / "corrupt.nii.gz", b"\x1f\x8bnot a volume" * 20),
                      "cannot read as a volume"),
    "2-D image": ("image", lambda r: _flat(r / "flat.nrrd"), "2-D image"),
    "curve markups": ("points", lambda r: _markups(r, "curve.mrk.json", {
        "@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/"
                   "Schema/markups-schema-v1.0.3.json#",
        "markups": [{"type": "Curve", "coordinateSystem": "LPS", "controlPoints": []}]}), "not a point list"),
    "other schema": ("points", lambda r: _markups(r, "other.mrk.json", {"@schema": "https://example.org/x.json",
                                                                       "points": [[1, 2, 3]]}),
                     "not a Slicer markups file"),
    "broken json": ("points", lambda r: _markups(r, "broken.mrk.json", "{\"markups\": ["), "not valid JSON"),
    "csv without header": ("points", lambda r: _markups(r, "nohead.csv", "1,2,3\n4,5,6\n"), "header 'x,y,z'"),
    "unknown points format": ("points", lambda r: _markups(r, "clicks.txt", "1 2 3\n"), "unknown points format"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_exit_2_with_one_line(case, capsys, name):
    root, image, _, pts = case
    which, make, expected = BAD_FILES[name]
    bad = make(root)
    good_points = write_points(pts, root / "good.csv")
    argv = ["fit-template", "--image", str(bad if which == "image" else image),
            "--points", str(bad if which == "points" else good_points), "--output", str(root / "x.nii.gz")]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and expected in err, err
    assert err.strip().count("\n") == 0 and str(bad.name) in err


@pytest.mark.parametrize("extra, expected", [
    (["--iterations", "0"], "--iterations must be >= 1"),
    (["--subdivisions", "9"], "--subdivisions must be between 1 and 6"),
    (["--mesh", "mesh.xyz"], "unknown mesh format"),
])
def test_bad_options_exit_2(case, capsys, extra, expected):
    root, image, _, pts = case
    argv = ["fit-template", "--image", str(image), "--points", str(write_points(pts, root / "ok.csv")),
            "--output", str(root / "y.nii.gz")] + extra
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and expected in err, err


def test_unwritable_output_exit_2(case, capsys):
    root, image, _, pts = case
    argv = ["fit-template", "--image", str(image), "--points", str(write_points(pts, root / "ok2.csv")),
            "--output", str(root / "mask.unknownformat")]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "cannot write the mask" in err and err.strip().count("\n") == 0
