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


def ellipsoid_template(points: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """The unit-sphere vertices (V, 3) mapped onto the points' principal ellipsoid (V, 3) LPS mm."""
    centre, axes, radii = ellipsoid_frame(points)
    return centre + (unit * radii) @ axes.T


def bent_template(points: np.ndarray, unit: np.ndarray) -> np.ndarray | None:
    """The unit-sphere vertices mapped onto an ellipsoid bent along a circular arc (banana, C) fitted to the
    points (N, 3) LPS mm, or None when the points do not follow an arc.

    The arc lies in the plane of the two main principal axes: a circle fitted to the points projected there
    (algebraic least squares), spanning the angles not in the largest angular gap between points. Along
    the arc, across it and out of plane the radii are √3 × the standard deviations, as in
    :func:`ellipsoid_frame`.
    """
    centre, axes, _ = ellipsoid_frame(points)
    x, y, h = ((points - centre) @ axes).T
    design = np.stack([x, y, np.ones_like(x)], axis=1)
    (d, e, f), *_ = np.linalg.lstsq(design, -(x * x + y * y), rcond=None)
    cx, cy = -d / 2, -e / 2
    if cx * cx + cy * cy - f <= 0:
        return None
    for _ in range(10):  # geometric refinement (Gauss-Newton on Σ (|p − c| − r)², r eliminated)
        dx, dy = x - cx, y - cy
        rho = np.maximum(np.hypot(dx, dy), 1e-9)
        jac = np.stack([-dx / rho, -dy / rho], axis=1)
        jac -= jac.mean(axis=0)
        step, *_ = np.linalg.lstsq(jac, -(rho - rho.mean()), rcond=None)
        cx, cy = cx + step[0], cy + step[1]
    radius = np.hypot(x - cx, y - cy).mean()
    angle = np.arctan2(y - cy, x - cx)
    order = np.sort(angle)
    gaps = np.diff(np.append(order, order[0] + 2 * np.pi))
    k = int(np.argmax(gaps))
    if gaps[k] < np.radians(30):
        return None
    mid = order[k] + gaps[k] / 2 + np.pi  # opposite the gap's centre
    s = radius * ((angle - mid + np.pi) % (2 * np.pi) - np.pi)
    root3 = np.sqrt(3.0)
    half_length = min(root3 * s.std(), 0.95 * np.pi * radius)
    across = min(root3 * (np.hypot(x - cx, y - cy) - radius).std(), 0.8 * radius)
    height = root3 * (h - h.mean()).std()
    phi = mid + half_length * unit[:, 0] / radius
    rho = radius - across * unit[:, 1]  # minus keeps the faces outward (the bend flips orientation)
    local = np.stack([cx + rho * np.cos(phi), cy + rho * np.sin(phi), h.mean() + height * unit[:, 2]], axis=1)
    return centre + local @ axes.T


def initial_shape(points: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Rest shape (V, 3) LPS mm for the points (N, 3): the principal ellipsoid, or the bent ellipsoid when
    it lies clearly closer to the points (mean point-to-nearest-vertex distance 20 % smaller)."""
    straight = ellipsoid_template(points, unit)
    bent = bent_template(points, unit)
    if bent is None:
        return straight
    residual = [cKDTree(v).query(points)[0].mean() for v in (straight, bent)]
    return bent if residual[1] < 0.8 * residual[0] else straight


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
        self.rest = initial_shape(pts, self.unit)
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
