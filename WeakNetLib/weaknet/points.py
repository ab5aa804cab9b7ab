"""Point sets (the annotator's clicks): read/write Slicer ``.mrk.json``, Slicer ``.fcsv`` and ``x,y,z`` CSV,
and validate them before fitting.

All functions return / take points as (N, 3) float arrays in **LPS millimetres**; the coordinate system
each file declares is honoured and converted in :mod:`weaknet.coords`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from .coords import lps_to_ras, ras_to_lps
from .errors import InputError

MARKUPS_SCHEMA = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
                  "Resources/Schema/markups-schema-v1.0.3.json#")
POINT_TYPES = ("Fiducial", "PointList")


def read_points(path: str | Path) -> np.ndarray:
    """Read points (N, 3) LPS mm from ``.mrk.json``, ``.fcsv`` or ``.csv`` (header ``x,y,z``, LPS mm)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such points file")
    name = p.name.lower()
    if name.endswith(".json"):
        pts = _read_mrk_json(p)
    elif name.endswith(".fcsv"):
        pts = _read_fcsv(p)
    elif name.endswith(".csv"):
        pts = _read_csv(p)
    else:
        raise InputError(f"{p}: unknown points format; use .mrk.json, .fcsv or .csv (x,y,z in LPS mm)")
    return pts


def write_points(points: np.ndarray, path: str | Path, labels: list[str] | None = None) -> Path:
    """Write points (N, 3) LPS mm; the format follows the extension (.mrk.json in LPS, .fcsv in LPS, .csv)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    pts = np.asarray(points, dtype=float).reshape(-1, 3)
    labels = labels or [f"P-{i + 1}" for i in range(len(pts))]
    name = p.name.lower()
    if name.endswith(".json"):
        doc = {"@schema": MARKUPS_SCHEMA, "markups": [{
            "type": "Fiducial", "coordinateSystem": "LPS", "coordinateUnits": "mm", "locked": False,
            "labelFormat": "P-%d",
            "controlPoints": [{"id": str(i + 1), "label": lab, "position": [float(v) for v in pt],
                               "positionStatus": "defined", "selected": True, "locked": False,
                               "visibility": True} for i, (pt, lab) in enumerate(zip(pts, labels))],
        }]}
        p.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    elif name.endswith(".fcsv"):
        lines = ["# Markups fiducial file version = 4.11", "# CoordinateSystem = LPS",
                 "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID"]
        lines += [f"{i + 1},{x!r},{y!r},{z!r},0,0,0,1,1,1,0,{lab},," for i, ((x, y, z), lab)
                  in enumerate(zip(pts.tolist(), labels))]
        p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif name.endswith(".csv"):
        with p.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["x", "y", "z"])
            w.writerows(pts.tolist())
    else:
        raise InputError(f"{p}: unknown points format; use .mrk.json, .fcsv or .csv")
    return p


def _read_mrk_json(p: Path) -> np.ndarray:
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or "markups-schema-v1" not in str(doc.get("@schema", "")) \
            or not isinstance(doc.get("markups"), list) or not doc["markups"]:
        raise InputError(f"{p}: not a Slicer markups file (expected '@schema' markups-schema-v1 and a "
                         "'markups' list)")
    out = []
    for m in doc["markups"]:
        kind = m.get("type")
        if kind not in POINT_TYPES:
            raise InputError(f"{p}: markups of type '{kind}' are not a point list; save the clicks as a "
                             "point list (Fiducial) markup")
        system = str(m.get("coordinateSystem", "LPS")).upper()
        if system not in ("LPS", "RAS"):
            raise InputError(f"{p}: unknown coordinateSystem '{system}' (expected LPS or RAS)")
        pts = []
        for cp in m.get("controlPoints", []):
            if cp.get("positionStatus", "defined") != "defined":
                continue
            pos = cp.get("position")
            if not isinstance(pos, list) or len(pos) != 3:
                raise InputError(f"{p}: control point {cp.get('id', '?')} has no 3-D position")
            pts.append(pos)
        arr = np.asarray(pts, dtype=float).reshape(-1, 3)
        out.append(ras_to_lps(arr) if system == "RAS" else arr)
    return np.concatenate(out, axis=0)


def _read_fcsv(p: Path) -> np.ndarray:
    system = "RAS"  # Slicer assumes RAS when the header is absent
    columns = ["id", "x", "y", "z"]
    rows = []
    for line in p.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            key, _, value = line[1:].partition("=")
            key, value = key.strip().lower(), value.strip()
            if key == "coordinatesystem":
                system = {"0": "RAS", "1": "LPS"}.get(value, value.upper())
            elif key == "columns":
                columns = [c.strip() for c in value.split(",")]
            continue
        if line.strip():
            rows.append(next(csv.reader([line])))
    if system not in ("LPS", "RAS"):
        raise InputError(f"{p}: unknown CoordinateSystem '{system}' (expected LPS or RAS)")
    try:
        ix = [columns.index(c) for c in ("x", "y", "z")]
        arr = np.asarray([[float(r[i]) for i in ix] for r in rows], dtype=float).reshape(-1, 3)
    except (ValueError, IndexError):
        raise InputError(f"{p}: malformed .fcsv row; expected columns {','.join(columns)}") from None
    return ras_to_lps(arr) if system == "RAS" else arr


def _read_csv(p: Path) -> np.ndarray:
    with p.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or [c.strip().lower() for c in rows[0][:3]] != ["x", "y", "z"]:
        raise InputError(f"{p}: CSV points need a header 'x,y,z' (LPS mm)")
    try:
        return np.asarray([[float(v) for v in r[:3]] for r in rows[1:] if r], dtype=float).reshape(-1, 3)
    except ValueError:
        raise InputError(f"{p}: non-numeric value in x,y,z columns") from None


def validate_points(points: np.ndarray, geometry=None, min_points: int = 4,
                    tolerance_mm: float = 1e-3) -> np.ndarray:
    """Check clicked points (N, 3) LPS mm before a fit and return a float64 copy (the caller may go on
    changing its array in place, e.g. while a point is dragged).

    Raises :class:`InputError` for: too few points, NaN/inf, duplicates (closer than ``tolerance_mm``),
    all points collinear or coplanar, and (when ``geometry`` is given) points outside the image. The
    message names the offending point (1-based, as shown in Slicer).
    """
    pts = np.array(points, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InputError(f"points must be an (N, 3) array, got shape {pts.shape}")
    bad = ~np.isfinite(pts).all(axis=1)
    if bad.any():
        raise InputError(f"point {int(np.argmax(bad)) + 1} has a NaN or infinite coordinate")
    if len(pts) < min_points:
        raise InputError(f"need at least {min_points} points on the surface to fit a template, got {len(pts)}")
    from scipy.spatial import cKDTree

    pairs = cKDTree(pts).query_pairs(tolerance_mm, output_type="ndarray")
    if len(pairs):
        a, b = sorted(pairs[0])
        raise InputError(f"points {a + 1} and {b + 1} are duplicates (closer than {tolerance_mm} mm); "
                         "remove one of them")
    centred = pts - pts.mean(axis=0)
    sv = np.linalg.svd(centred, compute_uv=False)
    scale = max(sv[0], 1e-12)
    if sv[1] / scale < 1e-6:
        raise InputError("all points lie on one line; click points spread over the object's surface")
    if sv[2] / scale < 1e-6:
        raise InputError("all points lie in one plane; add points on other slices so they enclose a volume")
    if geometry is not None:
        check_inside(pts, geometry)
    return pts


def check_inside(points: np.ndarray, geometry) -> None:
    """Raise :class:`InputError` naming the first of the points (N, 3) LPS mm that lies outside ``geometry``'s
    voxel grid (voxel centres ± ½ voxel)."""
    pts = np.asarray(points, dtype=float).reshape(-1, 3)
    outside = ~geometry.contains(pts)
    if outside.any():
        i = int(np.argmax(outside))
        ras = lps_to_ras(pts[i])
        raise InputError(f"point {i + 1} at RAS ({ras[0]:.1f}, {ras[1]:.1f}, {ras[2]:.1f}) mm lies outside "
                         f"the image; move it inside ({int(outside.sum())} point(s) outside)")
