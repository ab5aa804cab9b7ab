"""Active Surface Model: a closed template mesh deformed through sparse clicked surface points.

Energy: E(X) = ½ (X−X₀)ᵀ K (X−X₀) + external, with K = α L + β L² on the uniform mesh Laplacian L
(membrane + thin plate acting on the displacement from the rest shape X₀, so the surface does not shrink
between points). External forces: each clicked point pulls the surface's nearest vertex, and each vertex
is pulled along its normal towards its nearest clicked point. Semi-implicit steps
(I + τK) Dₜ₊₁ = Dₜ + Fₜ with D = X − X₀ use one sparse LU factorisation made once per template, so an
update after a click costs a few triangular solves.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu
from scipy.spatial import cKDTree

from . import mesh
from .points import validate_points


def ellipsoid_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre (3,), axes (3, 3) (columns, right-handed) and radii (3,) mm of the points' principal ellipsoid.

    Radii are √3 × the standard deviation along each principal axis: exact for points spread evenly over
    an ellipsoid's surface.
    """
    centre = points.mean(axis=0)
    _, s, vt = np.linalg.svd(points - centre, full_matrices=False)
    axes = vt.T
    if np.linalg.det(axes) < 0:
        axes[:, 2] *= -1
    radii = np.sqrt(3.0) * s / np.sqrt(len(points))
    return centre, axes, np.maximum(radii, 1e-3 * radii.max())


class ActiveSurface:
    """A template mesh fitted to clicked surface points (LPS mm).

    ``fit(points)`` starts from the points' principal ellipsoid; ``update(points)`` re-fits from the
    current mesh after points were added, moved or removed. ``vertices`` (V, 3) LPS mm, ``faces`` (F, 3).
    """

    def __init__(self, subdivisions: int = 4, alpha: float = 1.0, beta: float = 4.0, tau: float = 20.0,
                 iterations: int = 80, update_iterations: int = 6, pull: float = 1.0,
                 normal_pull: float = 0.2) -> None:
        self.unit, self.faces = mesh.icosphere(subdivisions)
        n = len(self.unit)
        lap = mesh.laplacian(self.faces, n)
        stiffness = alpha * lap + beta * (lap @ lap)
        self._lu = splu((sp.identity(n) + tau * stiffness).tocsc())
        self.iterations = iterations
        self.update_iterations = update_iterations
        self.pull = pull
        self.normal_pull = normal_pull
        self.rest: np.ndarray | None = None
        self.vertices: np.ndarray | None = None
        self.points: np.ndarray | None = None

    def fit(self, points_lps: np.ndarray) -> "ActiveSurface":
        """Fit from scratch: initialise on the points' ellipsoid and iterate. points (N, 3) LPS mm."""
        pts = validate_points(points_lps)
        centre, axes, radii = ellipsoid_frame(pts)
        self.rest = centre + (self.unit * radii) @ axes.T
        self.vertices = self.rest.copy()
        self.points = pts
        self._iterate(pts, self.iterations)
        return self

    def update(self, points_lps: np.ndarray) -> "ActiveSurface":
        """Warm-start re-fit from the current mesh for a changed point set (N, 3) LPS mm."""
        if self.vertices is None:
            return self.fit(points_lps)
        pts = validate_points(points_lps)
        self.points = pts
        self._iterate(pts, self.update_iterations)
        return self

    def _forces(self, x: np.ndarray, pts: np.ndarray, tree_pts: cKDTree) -> np.ndarray:
        """(V, 3) displacement targets: clicked points → nearest vertex, vertices → nearest point along normal."""
        f = np.zeros_like(x)
        _, nearest_vertex = cKDTree(x).query(pts)
        np.add.at(f, nearest_vertex, self.pull * (pts - x[nearest_vertex]))
        if self.normal_pull:
            d, nearest_point = tree_pts.query(x)
            n = mesh.vertex_normals(x, self.faces)
            along = np.einsum("ij,ij->i", pts[nearest_point] - x, n)
            f += (self.normal_pull * along)[:, None] * n
        return f

    def _iterate(self, pts: np.ndarray, iterations: int) -> None:
        tree_pts = cKDTree(pts)
        d = self.vertices - self.rest
        for _ in range(iterations):
            d = self._lu.solve(d + self._forces(self.rest + d, pts, tree_pts))
        self.vertices = self.rest + d
