"""Mesh template, sanity checks (catching open, flipped and self-intersecting meshes) and mesh files."""

from __future__ import annotations

import numpy as np
import pytest

from weaknet.errors import InputError
from weaknet.mesh import (check_mesh, icosphere, laplacian, read_mesh, self_intersections, to_polydata,
                          vertex_normals, volume, write_mesh)


def test_icosphere_sizes_and_sanity():
    for s, nv in ((0, 12), (2, 162), (4, 2562)):
        v, f = icosphere(s)
        assert v.shape == (nv, 3) and f.shape == (2 * nv - 4, 3)
        assert np.allclose(np.linalg.norm(v, axis=1), 1.0)
        assert check_mesh(v, f).ok
    v, f = icosphere(4)
    assert volume(v, f) == pytest.approx(4 / 3 * np.pi, rel=0.005)
    assert np.allclose(vertex_normals(v, f), v, atol=0.01)  # outward unit normals of the unit sphere
    assert np.allclose(laplacian(f, len(v)) @ np.ones(len(v)), 0.0)


def test_checks_catch_open_flipped_and_self_intersecting_meshes():
    v, f = icosphere(3)
    opened = check_mesh(v, f[1:])
    assert not opened.watertight and not opened.ok
    flipped = f.copy()
    flipped[0] = flipped[0, ::-1]
    assert check_mesh(v, flipped).watertight and not check_mesh(v, flipped).consistent
    assert not check_mesh(v, f[:, ::-1]).outward
    # push one vertex through the sphere: its fan pierces the faces on the far side
    folded = v.copy()
    folded[0] = -1.3 * v[0]
    hits = self_intersections(folded, f)
    assert len(hits) > 0 and not check_mesh(folded, f).ok
    # a dent that stays inside the sphere is fine
    dented = v.copy()
    dented[0] *= 0.9
    assert len(self_intersections(dented, f)) == 0


def test_star_shaped_meshes_skip_the_pair_search(monkeypatch):
    """A mesh star-shaped from its centroid is passed without the pair search; the search agrees. Nested
    spheres (every face turns outwards, but two sheets) and a fold are not taken for star-shaped."""
    import weaknet.mesh as mesh

    v, f = icosphere(3)
    bumpy = v * (1.0 + 0.3 * np.sin(3 * v[:, :1]) * np.cos(2 * v[:, 1:2])) * [3.0, 1.0, 1.5]
    assert mesh._star_shaped(bumpy[f], f)
    nested_v, nested_f = np.vstack([v, 0.5 * v]), np.vstack([f, f + len(v)])
    assert not mesh._star_shaped(nested_v[nested_f], nested_f)
    folded = v.copy()
    folded[0] = -1.3 * v[0]
    assert not mesh._star_shaped(folded[f], f)
    monkeypatch.setattr(mesh, "_star_shaped", lambda *_: False)
    assert len(self_intersections(bumpy, f)) == 0 and len(self_intersections(nested_v, nested_f)) == 0


def test_two_touching_spheres_intersect():
    v, f = icosphere(2)
    both_v = np.vstack([v, v + [1.5, 0, 0]])
    both_f = np.vstack([f, f + len(v)])
    assert len(self_intersections(both_v, both_f)) > 0
    apart_v = np.vstack([v, v + [2.5, 0, 0]])
    assert len(self_intersections(apart_v, both_f)) == 0


@pytest.mark.parametrize("ext", [".vtp", ".vtk", ".stl", ".obj", ".ply"])
def test_mesh_file_round_trip(tmp_path, ext):
    v, f = icosphere(2)
    v = v * [10.0, 20.0, 5.0] + [-30.0, 12.5, 100.0]  # LPS mm
    path = write_mesh(v, f, tmp_path / "sub" / f"mesh{ext}")
    assert path.is_file() and path.stat().st_size > 0
    v2, f2 = read_mesh(path)
    if ext in (".stl",):  # STL stores triangle soups; VTK merges the points back
        assert len(f2) == len(f)
        assert np.allclose(np.sort(v2, axis=0), np.sort(v, axis=0), atol=1e-4)
    else:
        assert np.allclose(v2, v, atol=1e-4) and np.array_equal(f2, f)
    assert check_mesh(v2, f2).watertight


def test_polydata_and_bad_mesh_paths(tmp_path):
    v, f = icosphere(1)
    poly = to_polydata(v, f)
    assert poly.GetNumberOfPoints() == len(v) and poly.GetNumberOfCells() == len(f)
    with pytest.raises(InputError, match="unknown mesh format"):
        write_mesh(v, f, tmp_path / "mesh.xyz")
    with pytest.raises(InputError, match="not a readable mesh"):
        read_mesh(tmp_path / "missing.vtp")


def test_point_distances_match_vtk():
    """Exact point-to-mesh distances agree with VTK's implicit polydata distance (inside and outside)."""
    import vtk

    from weaknet.mesh import point_distances, to_polydata

    v, f = icosphere(3)
    v = v * [10.0, 6.0, 4.0]
    pts = np.random.default_rng(0).normal(size=(300, 3)) * 8.0
    reference = vtk.vtkImplicitPolyDataDistance()
    reference.SetInput(to_polydata(v, f))
    expected = np.abs([reference.EvaluateFunction(*p) for p in pts])
    assert np.allclose(point_distances(pts, v, f), expected, atol=1e-9)
