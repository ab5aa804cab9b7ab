"""Point files: Slicer .mrk.json (LPS and RAS), Slicer .fcsv (with and without the CoordinateSystem
header) and x,y,z CSV, all read as LPS mm; round trips; bad files and bad point sets get one clear line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from weaknet.coords import lps_matrix_to_ras, lps_to_ras, ras_to_lps
from weaknet.errors import InputError
from weaknet.points import MARKUPS_SCHEMA, read_points, validate_points, write_points
from weaknet.volume import Geometry

LPS = np.array([[12.5, -30.25, 41.0], [-7.0, 3.5, 60.125], [0.1, 0.2, 0.3], [25.0, 14.0, 52.0],
                [-3.3, -9.9, 47.7]])


def markups(points, system):
    return {"@schema": MARKUPS_SCHEMA, "markups": [{
        "type": "Fiducial", "coordinateSystem": system, "coordinateUnits": "mm",
        "controlPoints": [{"id": str(i + 1), "label": f"F-{i + 1}", "position": p.tolist(),
                           "positionStatus": "defined"} for i, p in enumerate(points)]}]}


def test_lps_ras_conversion_is_its_own_inverse():
    assert np.allclose(lps_to_ras(LPS), LPS * [-1, -1, 1])
    assert np.allclose(ras_to_lps(lps_to_ras(LPS)), LPS)
    m = np.eye(4)
    m[:3, 3] = [1, 2, 3]
    assert np.allclose(lps_matrix_to_ras(m)[:3, 3], [-1, -2, 3])


@pytest.mark.parametrize("system", ["LPS", "RAS"])
def test_mrk_json_honours_coordinate_system(tmp_path, system):
    stored = LPS if system == "LPS" else lps_to_ras(LPS)
    path = tmp_path / f"p_{system}.mrk.json"
    path.write_text(json.dumps(markups(stored, system)))
    assert np.allclose(read_points(path), LPS)


def test_mrk_json_skips_undefined_points_and_reads_point_lists(tmp_path):
    doc = markups(LPS, "LPS")
    doc["markups"][0]["type"] = "PointList"
    doc["markups"][0]["controlPoints"][2]["positionStatus"] = "missing"
    path = tmp_path / "p.mrk.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert np.allclose(read_points(path), np.delete(LPS, 2, axis=0))


FCSV_ROWS = "".join(f"vtkMRMLMarkupsFiducialNode_{i},{x!r},{y!r},{z!r},0,0,0,1,1,1,0,F-{i},,\n"
                    for i, (x, y, z) in enumerate(lps_to_ras(LPS).tolist()))
COLUMNS = "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n"


@pytest.mark.parametrize("header", ["", "# CoordinateSystem = RAS\n", "# CoordinateSystem = 0\n"])
def test_fcsv_ras_with_or_without_header(tmp_path, header):
    path = tmp_path / "p.fcsv"
    path.write_text("# Markups fiducial file version = 4.10\n" + header + COLUMNS + FCSV_ROWS, encoding="utf-8")
    assert np.allclose(read_points(path), LPS)


def test_fcsv_lps_header(tmp_path):
    rows = "".join(f"{i},{x!r},{y!r},{z!r},0,0,0,1,1,1,0,F-{i},,\n" for i, (x, y, z) in enumerate(LPS.tolist()))
    path = tmp_path / "p.fcsv"
    path.write_text("# Markups fiducial file version = 4.11\n# CoordinateSystem = LPS\n" + COLUMNS + rows,
                    encoding="utf-8")
    assert np.allclose(read_points(path), LPS)


@pytest.mark.parametrize("name", ["p.mrk.json", "p.fcsv", "p.csv"])
def test_write_read_round_trip(tmp_path, name):
    path = write_points(LPS, tmp_path / "deep" / name)
    assert np.allclose(read_points(path), LPS, atol=1e-9)


def test_csv_is_lps_with_header(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("x,y,z\n" + "".join(f"{x},{y},{z}\n" for x, y, z in LPS.tolist()))
    assert np.allclose(read_points(path), LPS)


BAD = {
    "other.mrk.json": (json.dumps({"@schema": "https://example.org/other.json", "markups": []}),
                       "not a Slicer markups file"),
    "noschema.mrk.json": (json.dumps({"markups": [{"type": "Fiducial"}]}), "not a Slicer markups file"),
    "line.mrk.json": (json.dumps({"@schema": MARKUPS_SCHEMA, "markups": [{"type": "Line", "controlPoints": []}]}),
                      "not a point list"),
    "system.mrk.json": (json.dumps({"@schema": MARKUPS_SCHEMA, "markups": [
        {"type": "Fiducial", "coordinateSystem": "IJK", "controlPoints": []}]}), "unknown coordinateSystem"),
    "nopos.mrk.json": (json.dumps({"@schema": MARKUPS_SCHEMA, "markups": [
        {"type": "Fiducial", "controlPoints": [{"id": "7", "position": [1, 2]}]}]}), "control point 7"),
    "broken.mrk.json": ("{\"@schema\": ", "not valid JSON"),
    "bad.fcsv": (COLUMNS + "a,b,c,d\n", "malformed .fcsv row"),
    "system.fcsv": ("# CoordinateSystem = XYZ\n" + COLUMNS, "unknown CoordinateSystem"),
    "nohead.csv": ("1,2,3\n", "header 'x,y,z'"),
    "text.csv": ("x,y,z\n1,two,3\n", "non-numeric"),
    "points.txt": ("1 2 3\n", "unknown points format"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_point_files(tmp_path, name):
    text, expected = BAD[name]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=expected) as err:
        read_points(path)
    assert name in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InputError, match="no such points file"):
        read_points(tmp_path / "missing.csv")


def test_validate_points_names_the_problem():
    rng = np.random.default_rng(0)
    good = rng.normal(size=(10, 3)) * 10
    assert validate_points(good).shape == (10, 3)
    cases = [
        (good[:3], "at least 4 points"),
        (np.outer(np.arange(5.0), [1, 2, 3]), "one line"),
        (np.c_[good[:, :2], np.zeros(10)], "one plane"),
        (np.vstack([good, good[2]]), "points 3 and 11 are duplicates"),
        (np.vstack([good, [np.nan, 0, 0]]), "point 11 has a NaN"),
        (np.vstack([good, [0, -np.inf, 0]]), "point 11 has a NaN or infinite"),
        (good[:, :2], "must be an"),
    ]
    for pts, expected in cases:
        with pytest.raises(InputError, match=expected):
            validate_points(pts)
    geometry = Geometry.create((20, 20, 20), (1.0, 1.0, 1.0), (-10.0, -10.0, -10.0))
    with pytest.raises(InputError, match=r"point 4 at RAS \(-30.0, -0.0, 0.0\) mm lies outside the image"):
        validate_points(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [30, 0, 0.0]]), geometry)
