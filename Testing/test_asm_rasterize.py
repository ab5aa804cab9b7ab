"""Rasterization of closed meshes into oblique, anisotropic grids (checked voxel by voxel against VTK's
enclosed-points test) and signed distances to a mask boundary."""

from __future__ import annotations

import numpy as np
import pytest
import vtk
from vtk.util.numpy_support import numpy_to_vtk, vtk_to_numpy

from weaknet.asm import bent_template
from weaknet.bench.asm import shape_geometry, shape_mask
from weaknet.mesh import icosphere, to_polydata, volume
from weaknet.rasterize import MaskRasterizer, rasterize_mesh, signed_distance
from weaknet.sampling import sample_surface_points
from weaknet.volume import Geometry


def voxel_centres(geometry: Geometry) -> np.ndarray:
    ijk = np.indices(geometry.shape, dtype=float)[::-1].reshape(3, -1).T
    return geometry.to_lps(ijk)


def vtk_inside(vertices, faces, geometry) -> np.ndarray:
    """Reference: VTK's vtkSelectEnclosedPoints on every voxel centre, (D, H, W) uint8."""
    pts = vtk.vtkPoints()
    pts.SetData(numpy_to_vtk(voxel_centres(geometry), deep=True))
    cloud = vtk.vtkPolyData()
    cloud.SetPoints(pts)
    sel = vtk.vtkSelectEnclosedPoints()
    sel.SetInputData(cloud)
    sel.SetSurfaceData(to_polydata(vertices, faces))
    sel.SetTolerance(1e-6)
    sel.Update()
    return vtk_to_numpy(sel.GetOutput().GetPointData().GetArray("SelectedPoints")).reshape(geometry.shape)


@pytest.fixture(scope="module")
def concave_mesh():
    """A C-shaped closed mesh (an ellipsoid bent along a 270° arc) in LPS mm."""
    from scipy.spatial import ConvexHull

    unit, faces = icosphere(3)
    g0 = shape_geometry(spacing=(1.0, 1.0, 1.0), oblique=False)
    verts, _ = bent_template(sample_surface_points(shape_mask("c_shape", g0), g0, 200), unit)
    assert volume(verts, faces) < 0.75 * ConvexHull(verts).volume  # really concave
    return verts + [3.0, -2.0, 1.0], faces


def test_matches_vtk_in_oblique_anisotropic_grid(concave_mesh):
    geometry = shape_geometry(spacing=(0.9, 1.3, 2.1), oblique=True, extent_mm=60)
    mask = rasterize_mesh(*concave_mesh, geometry)
    ref = vtk_inside(*concave_mesh, geometry)
    assert mask.dtype == np.uint8 and mask.shape == geometry.shape and set(np.unique(mask)) == {0, 1}
    assert mask.sum() > 2000
    assert (mask != ref).sum() <= 0.002 * ref.sum(), ((mask != ref).sum(), ref.sum())


def test_mesh_partly_and_fully_outside_the_grid(concave_mesh):
    geometry = Geometry.create((40, 30, 20), (1.0, 1.5, 2.0), (0.0, -10.0, -15.0))
    mask = rasterize_mesh(*concave_mesh, geometry)
    ref = vtk_inside(*concave_mesh, geometry)
    assert 0 < mask.sum() < ref.size
    assert (mask != ref).sum() <= 0.002 * ref.sum() + 2
    far = concave_mesh[0] + 500.0
    assert rasterize_mesh(far, concave_mesh[1], geometry).sum() == 0


@pytest.mark.parametrize("threads", [2, 3])
def test_slabs_on_threads_give_the_same_mask(concave_mesh, monkeypatch, threads):
    """A large box is rasterised in k-slabs on threads: voxel for voxel the one-slab result, also with
    a slab the mesh misses and at the grid's edge."""
    import weaknet.rasterize as raster

    geometry = shape_geometry(spacing=(0.9, 1.3, 2.1), oblique=True, extent_mm=60)
    shifted = concave_mesh[0] + [12.0, 0.0, 0.0]  # partly off the grid
    single = rasterize_mesh(shifted, concave_mesh[1], geometry)
    monkeypatch.setattr(raster, "PARALLEL_VOXELS", 1)
    monkeypatch.setattr(raster, "THREADS", threads)
    monkeypatch.setattr(raster, "_executor", None)
    assert len(raster._slabs(0, 40, 10 ** 6)) == threads
    assert np.array_equal(rasterize_mesh(shifted, concave_mesh[1], geometry), single) and single.sum() > 1000


def test_sphere_volume_in_permuted_grid():
    v, f = icosphere(5)
    geometry = Geometry.create((50, 40, 30), (0.7, 0.9, 1.2), (-20.0, 15.0, -18.0),
                               direction=[[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    centre = geometry.to_lps(np.array([[25, 20, 15]]))[0]
    mask = rasterize_mesh(centre + 10.0 * v, f, geometry)
    voxel_mm3 = 0.7 * 0.9 * 1.2
    assert mask.sum() * voxel_mm3 == pytest.approx(4 / 3 * np.pi * 1000, rel=0.02)
    inside = np.linalg.norm(voxel_centres(geometry) - centre, axis=1).reshape(geometry.shape) < 10.0
    assert (mask.astype(bool) != inside).sum() < 0.02 * inside.sum()


def test_mask_rasterizer_clears_the_previous_mesh(concave_mesh):
    geometry = Geometry.create((64, 64, 64), (1.0, 1.0, 1.0), (-32.0, -32.0, -32.0))
    raster = MaskRasterizer(geometry)
    raster.update(*concave_mesh)
    first = raster.mask.copy()
    assert np.array_equal(first, rasterize_mesh(*concave_mesh, geometry))
    v, f = icosphere(3)
    raster.update(5.0 * v, f)
    raster.update(6.0 * v, f)  # not read in between: the mask catches up with the newest mesh when read
    raster.update(5.0 * v, f)
    second = raster.mask
    assert np.array_equal(second, rasterize_mesh(5.0 * v, f, geometry))
    assert first.sum() != second.sum()
    assert np.array_equal(raster.mask[raster.box], raster.block) and raster.mask is second
    raster.update(v + 1000.0, f)  # a mesh outside the grid: nothing inside
    assert raster.block is None and not raster.mask.any()


def test_signed_distance_of_a_ball():
    geometry = Geometry.create((48, 40, 32), (1.0, 1.0, 2.0), (-24.0, -20.0, -32.0))
    r = np.linalg.norm(voxel_centres(geometry), axis=1).reshape(geometry.shape)
    mask = (r <= 12.0).astype(np.uint8)
    sd = signed_distance(mask, geometry)
    assert sd.dtype == np.float32 and sd.shape == geometry.shape
    assert (sd[mask == 1] < 0).all() and (sd[mask == 0] > 0).all()
    band = np.abs(r - 12.0) < 8.0
    assert np.abs(sd - (r - 12.0))[band].max() < 1.5  # within about a voxel of the true distance
    limited = signed_distance(mask, geometry, band_mm=5.0)
    near = np.abs(sd) <= 5.0
    assert np.allclose(limited[near], sd[near]) and np.abs(limited).max() <= 5.0
    assert np.isinf(signed_distance(np.zeros_like(mask), geometry)).all()


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_signed_distance_boundary_is_half_way_between_voxel_centres(axis):
    """The one signed-distance convention (templates, phantoms, loss weights): ±½ spacing next to a
    boundary normal to an index axis, whatever that axis's spacing, then + one spacing per voxel."""
    geometry = Geometry.create((12, 10, 8), (0.6, 1.1, 2.5), (0.0, 0.0, 0.0))
    step = geometry.spacing[2 - axis]  # numpy axis 0 = k
    mask = np.zeros(geometry.shape, np.uint8)
    mask[(slice(None),) * axis + (slice(0, 4),)] = 1
    line = np.moveaxis(signed_distance(mask, geometry), axis, 0)[:, 3, 3]
    assert np.allclose(line[:7], step * (np.arange(7) - 3.5), atol=1e-5), line
