"""Simulated clicks: points spread evenly over a mask's true surface by farthest-point sampling.

Used by the quality tests, the benchmarks and the evaluation (effort = number of clicked points).
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .volume import Geometry


def farthest_point_sampling(points: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices (n,) of ``points`` (M, 3) chosen greedily so each is farthest from those already chosen.

    The first index is drawn with ``seed``; the result is deterministic for a given seed. The first k of
    the n indices are themselves a farthest-point sample of size k (nested samples).
    """
    pts = np.asarray(points, dtype=float)
    if n > len(pts):
        raise InputError(f"cannot sample {n} points from {len(pts)}")
    chosen = np.empty(n, np.int64)
    chosen[0] = np.random.default_rng(seed).integers(len(pts))
    dist = np.full(len(pts), np.inf)
    for k in range(1, n):
        dist = np.minimum(dist, np.einsum("ij,ij->i", pts - pts[chosen[k - 1]], pts - pts[chosen[k - 1]]))
        chosen[k] = int(np.argmax(dist))
    return chosen


def mask_surface(mask: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """The mask's boundary as a triangle mesh in LPS mm: vertices (V, 3), faces (F, 3) (marching cubes at 0.5)."""
    from skimage.measure import marching_cubes

    m = np.pad(np.asarray(mask) > 0, 1).astype(np.float32)
    if m.max() == 0:
        raise InputError("the mask is empty; nothing to sample")
    verts, faces, _, _ = marching_cubes(m, level=0.5)
    kji = verts - 1.0  # undo the padding; columns are (k, j, i)
    return geometry.to_lps(kji[:, ::-1]), faces.astype(np.int64)


def surface_distances(points: np.ndarray, mask: np.ndarray, geometry: Geometry) -> np.ndarray:
    """(N,) mm from points (N, 3) LPS mm to the boundary of ``mask`` (D, H, W): its marching-cubes
    surface at 0.5 (:func:`mask_surface`, half-way between inside and outside voxel centres, the surface
    clicks are simulated on), by exact point-to-triangle distances; computed on the mask's bounding box."""
    from .mesh import point_distances

    m = np.asarray(mask) > 0
    if not m.any():
        raise InputError("the mask is empty; it has no surface")
    lo = [int(np.nonzero(m.any(axis=tuple(a for a in range(3) if a != ax)))[0][0]) for ax in range(3)]
    hi = [int(np.nonzero(m.any(axis=tuple(a for a in range(3) if a != ax)))[0][-1]) + 1 for ax in range(3)]
    box = m[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    corner = geometry.to_lps(np.array([lo[::-1]], float))[0]  # (i, j, k) of the box's first voxel
    sub = Geometry.create(box.shape[::-1], geometry.spacing, corner, geometry.direction_matrix)
    verts, faces = mask_surface(box, sub)
    return point_distances(points, verts, faces)


def sample_surface_points(mask: np.ndarray, geometry: Geometry, n: int, seed: int = 0,
                          jitter_mm: float = 0.0) -> np.ndarray:
    """``n`` points (n, 3) LPS mm spread evenly over the surface of ``mask`` (D, H, W).

    The surface is the marching-cubes boundary of the mask; the points are a farthest-point sample of its
    vertices. ``jitter_mm`` > 0 adds isotropic Gaussian noise of that standard deviation (an annotator's
    imprecision).
    """
    verts, _ = mask_surface(mask, geometry)
    pts = verts[farthest_point_sampling(verts, n, seed)]
    if jitter_mm > 0:
        pts = pts + np.random.default_rng(seed + 1).normal(0.0, jitter_mm, pts.shape)
    return pts
