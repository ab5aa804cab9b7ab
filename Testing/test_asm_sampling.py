"""Farthest-point sampling of simulated clicks on a mask's true surface."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from weaknet.bench.asm import shape_geometry, shape_mask
from weaknet.errors import InputError
from weaknet.sampling import farthest_point_sampling, mask_surface, sample_surface_points
from weaknet.volume import Geometry


@pytest.fixture(scope="module")
def banana():
    g = shape_geometry()
    return shape_mask("banana", g), g


def test_fps_is_nested_deterministic_and_spread():
    pts = np.random.default_rng(1).normal(size=(3000, 3))
    idx = farthest_point_sampling(pts, 40, seed=5)
    assert len(set(idx.tolist())) == 40
    assert np.array_equal(idx, farthest_point_sampling(pts, 40, seed=5))
    assert np.array_equal(farthest_point_sampling(pts, 15, seed=5), idx[:15])
    spread = cKDTree(pts[idx]).query(pts[idx], k=2)[0][:, 1].min()
    random = cKDTree(pts[:40]).query(pts[:40], k=2)[0][:, 1].min()
    assert spread > 2 * random
    with pytest.raises(InputError):
        farthest_point_sampling(pts[:5], 6)


def test_points_lie_on_the_true_surface_and_cover_it(banana):
    mask, g = banana
    pts = sample_surface_points(mask, g, 50, seed=0)
    assert pts.shape == (50, 3)
    surface, _ = mask_surface(mask, g)
    # on the marching-cubes boundary of the mask, inside the grid
    assert cKDTree(surface).query(pts)[0].max() < 1e-6
    assert g.contains(pts).all()
    # every surface vertex has a sampled point nearby (even coverage)
    cover = cKDTree(pts).query(surface)[0]
    assert cover.max() < 2.5 * np.median(cKDTree(pts).query(pts, k=2)[0][:, 1])
    # boundary points sit between an inside and an outside voxel centre
    ijk = np.rint(g.to_index(pts)).astype(int)
    assert 0.3 < mask[ijk[:, 2], ijk[:, 1], ijk[:, 0]].mean() < 0.7


def test_jitter_and_seed(banana):
    mask, g = banana
    a = sample_surface_points(mask, g, 30, seed=0)
    b = sample_surface_points(mask, g, 30, seed=0, jitter_mm=1.5)
    assert not np.allclose(a, sample_surface_points(mask, g, 30, seed=1))
    assert 0.8 < (b - a).std() < 2.2
    with pytest.raises(InputError, match="empty"):
        sample_surface_points(np.zeros_like(mask), g, 10)


def test_surface_distances_to_a_mask_boundary():
    """Points on a mask's marching-cubes surface are at 0 mm; a point 3 mm beyond a flat face is 3 mm off,
    in an anisotropic grid cropped to the mask's box."""
    from weaknet.sampling import surface_distances

    g = Geometry.create((30, 30, 20), (1.0, 0.8, 2.0), (-5.0, 3.0, 7.0))
    mask = np.zeros(g.shape, np.uint8)
    mask[5:15, 8:20, 6:24] = 1
    on = sample_surface_points(mask, g, 40)
    assert np.abs(surface_distances(on, mask, g)).max() < 1e-9
    face = g.to_lps(np.array([[23.5, 14.0, 10.0]]))[0]  # i = 23.5: half-way past the last inside column
    assert surface_distances(face[None] + [3.0, 0.0, 0.0], mask, g)[0] == pytest.approx(3.0, abs=1e-9)
