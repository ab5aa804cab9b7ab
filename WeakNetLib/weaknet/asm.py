"""Active Surface Model: a closed template mesh deformed through sparse clicked surface points.

Rest shape X₀: the icosphere mapped onto the points' principal ellipsoid, onto an ellipsoid bent along
a circular arc when the points follow one (banana, C-shape: a single ellipsoid cannot carve their
concavity, the bent one starts inside it), onto a tube around the points' principal curve with a
fitted radius profile (thin, curved, tapered anatomy: hippocampus, caudate), or onto a folded plate
(thin sheets), whichever lies clearly closest to the points.

Energy: ½ (X−X₀)ᵀ K (X−X₀) + external, K = α L + β L² on the mesh's graph Laplacian L = (D − A) / mean
degree (≈ the umbrella operator; membrane + thin plate acting on the displacement from the rest shape, so
the surface does not shrink between points; β = 0 leaves a membrane only, see docs/asm.md).
External forces (displacement targets per vertex):

- every clicked point pulls the surface's nearest vertex onto itself (points sharing a vertex: their mean);
- every vertex is pulled along its normal towards the tangent level of its nearest clicked point, with a
  Gaussian fall-off at the points' typical spacing, and only where that point's own surface faces the
  same way (this lets regions without a point of their own follow their neighbours, e.g. into a
  concavity, without pulling one wall of a thin part onto the other).

Semi-implicit steps (I + τK) Dₜ₊₁ = Dₜ + Fₜ with D = X − X₀, coarse to fine over a few stiffness levels τ,
each factorised once when the model is created (banded Cholesky after reverse Cuthill–McKee ordering).
A fit from scratch runs twice, the second pass regularising towards the first result (plastic rest
shape), and is redone with a weaker pull if it folds. An update after a click re-uses the current mesh
(warm start) and costs a few triangular band solves; the interactive path defers the rest (``refine``: the fit
of the points, on a worker thread once the click is shown). ``correct`` deforms a given rest shape (a model's
proposal) through points, some of them held exactly, in four steps.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Callable

import numpy as np
import scipy.sparse as sp
from scipy.linalg import cholesky_banded
from scipy.linalg.lapack import spbtrs
from scipy.sparse.csgraph import reverse_cuthill_mckee
from scipy.spatial import cKDTree

from . import mesh
from .points import validate_points

ROOT3 = np.sqrt(3.0)
COLUMN_CACHE = 64
"""Columns of each stiffness level's inverse kept by :meth:`BandedSolver.columns` (vertices recently clicked)."""
STALL = 0.95
"""An update stops its rounds once a round brings the farthest added or moved point less than 5 % closer."""
THIN_MIN_POINTS = 10
"""Points needed before a tube or sheet rest shape may be chosen: each has more parameters than fewer points
determine (below this they won on a few clicks of compact shapes, then folded; see docs/asm.md)."""


def covariance_ellipsoid(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre (3,) and shape matrix M (3, 3) of the points' principal ellipsoid {centre + M u : |u| = 1}.

    Axes: principal axes of the points; radii: least-squares fit of Σ (q_c / r_c)² = 1 to the points in
    that frame (√3 × the standard deviations, exact for points spread evenly over a sphere, when the fit
    fails). M = V diag(r) Vᵀ is symmetric and follows the points continuously (no eigenvector sign or
    order ambiguity), so successive templates stay in correspondence as points are added.
    """
    centre = points.mean(axis=0)
    w, v = np.linalg.eigh(np.cov((points - centre).T, bias=True))
    radii = ROOT3 * np.sqrt(np.maximum(w, 1e-6 * w.max()))
    radii = _axis_radii((points - centre) @ v, radii)
    return centre, (v * radii) @ v.T


def _axis_radii(q: np.ndarray, guess: np.ndarray) -> np.ndarray:
    """Radii r (3,) of the axis-aligned ellipsoid Σ (q_c / r_c)² = 1 through points q (N, 3) in the least
    squares sense (linear in 1/r²); ``guess`` where that has no positive solution or is unreasonable."""
    inv2, *_ = np.linalg.lstsq(q * q, np.ones(len(q)), rcond=None)
    if np.all(inv2 > 0):
        r = 1.0 / np.sqrt(inv2)
        if np.all((r > 0.5 * guess) & (r < 2.0 * guess)):
            return r
    return guess


def ellipsoid_template(points: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Unit-sphere vertices (V, 3) mapped onto the points' principal ellipsoid: (V, 3) LPS mm."""
    centre, shape = covariance_ellipsoid(points)
    return centre + unit @ shape.T


def _fit_arc(points: np.ndarray, normal_hint: np.ndarray | None = None) -> dict | None:
    """A circular arc through points (N, 3) in the plane of their two main principal axes: a circle fitted
    there (algebraic, then geometric least squares), spanning the angles outside the largest angular gap.

    Returns None when the points leave no angular gap of ≥ 30° (no arc), else a dict: centre (3,), frame
    e1, e2, normal (3,) (``normal_hint`` fixes the sign), the circle (cx, cy, radius) in (e1, e2), per
    point x, y, h (N,) coordinates, rho (N,) distance to the circle centre, s (N,) arc length from the
    arc's middle, angle ``mid`` (rad) of that middle.
    """
    centre = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
    normal = vt[2] if normal_hint is None or vt[2] @ normal_hint >= 0 else -vt[2]
    e1 = vt[0]
    e2 = np.cross(normal, e1)
    q = points - centre
    x, y, h = q @ e1, q @ e2, q @ normal
    design = np.stack([x, y, np.ones_like(x)], axis=1)
    (d, e, f), *_ = np.linalg.lstsq(design, -(x * x + y * y), rcond=None)
    cx, cy = -d / 2, -e / 2
    if cx * cx + cy * cy - f <= 0:
        return None
    for _ in range(10):  # geometric refinement: Gauss-Newton on Σ (|p − c| − mean |p − c|)²
        dx, dy = x - cx, y - cy
        rho = np.maximum(np.hypot(dx, dy), 1e-9)
        jac = np.stack([-dx / rho, -dy / rho], axis=1)
        step, *_ = np.linalg.lstsq(jac - jac.mean(axis=0), -(rho - rho.mean()), rcond=None)
        cx, cy = cx + step[0], cy + step[1]
    rho = np.hypot(x - cx, y - cy)
    radius = rho.mean()
    angle = np.arctan2(y - cy, x - cx)
    order = np.sort(angle)
    gaps = np.diff(np.append(order, order[0] + 2 * np.pi))
    k = int(np.argmax(gaps))
    if gaps[k] < np.radians(30):
        return None
    mid = order[k] + gaps[k] / 2 + np.pi  # opposite the gap's centre
    s = radius * ((angle - mid + np.pi) % (2 * np.pi) - np.pi)
    return dict(centre=centre, e1=e1, e2=e2, normal=normal, cx=cx, cy=cy, radius=radius, x=x, y=y, h=h,
                rho=rho, s=s, mid=mid)


def bent_template(points: np.ndarray, unit: np.ndarray, normal_hint: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """Unit-sphere vertices mapped onto an ellipsoid bent along a circular arc fitted to the points (N, 3)
    (:func:`_fit_arc`). Radii along the arc, across it and out of the plane are √3 × the standard
    deviations. Returns (vertices (V, 3) LPS mm, plane normal (3,)), or None when the points leave no
    angular gap (no arc). ``normal_hint`` fixes the sign of the plane normal (keeps successive templates
    in correspondence).
    """
    arc = _fit_arc(points, normal_hint)
    if arc is None:
        return None
    radius, s, rho = arc["radius"], arc["s"], arc["rho"]
    half_length = min(ROOT3 * s.std(), 0.95 * np.pi * radius)
    across = min(ROOT3 * (rho - radius).std(), 0.8 * radius)
    height = ROOT3 * arc["h"].std()
    phi = arc["mid"] + half_length * unit[:, 0] / radius
    r = radius - across * unit[:, 1]  # minus keeps faces outward (bending alone would flip them)
    local_x, local_y = arc["cx"] + r * np.cos(phi), arc["cy"] + r * np.sin(phi)
    local_h = arc["h"].mean() + height * unit[:, 2]
    verts = (arc["centre"] + np.outer(local_x, arc["e1"]) + np.outer(local_y, arc["e2"])
             + np.outer(local_h, arc["normal"]))
    return verts, arc["normal"]


def tube_template(points: np.ndarray, unit: np.ndarray, normal_hint: np.ndarray | None = None,
                  line: np.ndarray | None = None, cap_power: float = 2.0, degree: int = 3
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit-sphere vertices mapped onto a tube around the points' principal curve (generalises the bent
    ellipsoid to curved, tapered shapes such as a hippocampus).

    Centre line: the arc of :func:`_fit_arc` (a straight principal axis when there is none), moved in its
    normal plane by polynomials of arc length (``degree``) fitted to the mean offset of the points,
    three times (a principal curve); or, warm, once from a previous centre ``line`` (64, 3) with its
    ``normal_hint``. Cross-sections: one ellipse shape (fitted to all points' offsets in the line's frame)
    scaled by a radius profile r(s) (polynomial in s fitted to log radius) and by a cap
    (1 − |σ|^p)^(1/p), p = ``cap_power``, σ ∈ [−1, 1] along the points' extent, which closes both ends.
    The sphere's first coordinate maps to σ (so vertices spread evenly along the line), the other two
    around the section. Returns (vertices (V, 3) LPS mm, bend-plane normal (3,), centre line (64, 3)).
    """
    if line is not None and normal_hint is not None:
        normal, rounds = normal_hint, 1
    else:
        arc, centre, rounds = _fit_arc(points, normal_hint), points.mean(axis=0), 3
        if arc is not None:
            normal = arc["normal"]
            extent = np.abs(arc["s"]).max() * 1.25 / arc["radius"]
            phi = arc["mid"] + np.linspace(-min(extent, 0.98 * np.pi), min(extent, 0.98 * np.pi), 64)
            r, hm = arc["radius"], arc["h"].mean()
            line = (centre + np.outer(arc["cx"] + r * np.cos(phi), arc["e1"])
                    + np.outer(arc["cy"] + r * np.sin(phi), arc["e2"]) + hm * normal)
        else:
            _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
            normal = vt[2] if normal_hint is None or vt[2] @ normal_hint >= 0 else -vt[2]
            t = (points - centre) @ vt[0]
            line = centre + np.outer(np.linspace(1.25 * t.min(), 1.25 * t.max(), 64), vt[0])
    for _ in range(rounds):
        s_line, tangent, n1, n2 = _line_frames(line, normal)
        s, a, b = _project(points, line, s_line, tangent, n1, n2)
        lo, hi = s.min(), s.max()
        basis = _legendre((s - lo) / (hi - lo) * 2 - 1, degree)
        ridge = 1e-3 * len(s) * np.eye(degree + 1)
        coef = np.linalg.solve(basis.T @ basis + ridge, basis.T @ np.stack([a, b], axis=1))
        at = _legendre(np.clip((s_line - lo) / (hi - lo) * 2 - 1, -1, 1), degree) @ coef
        line = line + at[:, :1] * n1 + at[:, 1:] * n2
    s_line, tangent, n1, n2 = _line_frames(line, normal)
    s, a, b = _project(points, line, s_line, tangent, n1, n2)
    lo, hi = s.min(), s.max()
    sigma = (s - lo) / (hi - lo) * 2 - 1
    cap = np.clip(1 - np.abs(sigma) ** cap_power, 0, 1) ** (1 / cap_power)
    # one section shape: least squares [a² 2ab b²]·q = cap² (points near the tips carry little weight)
    w = cap ** 2
    design = np.stack([a * a, 2 * a * b, b * b], axis=1) * w[:, None]
    qa, qb, qc = np.linalg.lstsq(design, cap ** 2 * w, rcond=None)[0]
    ev, evec = np.linalg.eigh(np.array([[qa, qb], [qb, qc]]))
    spread = np.sqrt(np.mean(a * a + b * b))
    radii = 1 / np.sqrt(np.clip(ev, 1 / (4 * spread) ** 2, None))
    radii = np.clip(radii, radii.max() / 4, None)
    shape = (evec * radii) @ evec.T  # maps the unit circle onto the section ellipse (2, 2)
    # radius profile: log of each point's radius in units of that ellipse, polynomial in σ
    unit_r = np.linalg.norm(np.linalg.solve(shape, np.stack([a, b])), axis=0)
    ok = cap > 0.3
    rel = np.log(np.maximum(unit_r[ok] / cap[ok], 1e-3))
    basis = _legendre(sigma[ok], degree)
    coef = np.linalg.solve((basis.T * w[ok]) @ basis + 1e-3 * ok.sum() * np.eye(degree + 1),
                           (basis.T * w[ok]) @ rel)
    u0 = np.clip(unit[:, 0], -1, 1)
    profile = np.exp(np.clip(_legendre(u0, degree) @ coef, -3, 1.5))
    vcap = np.clip(1 - np.abs(u0) ** cap_power, 0, 1) ** (1 / cap_power)
    around = unit[:, 1:] / np.maximum(np.sqrt(1 - u0 ** 2), 1e-9)[:, None]
    section = (around @ shape.T) * (profile * vcap)[:, None]  # (V, 2) in (n1, n2)
    # line position and frame at each vertex's arc length, by linear interpolation of the samples
    sv = lo + (u0 + 1) / 2 * (hi - lo)
    k = np.clip(np.searchsorted(s_line, sv) - 1, 0, len(s_line) - 2)
    frac = ((sv - s_line[k]) / (s_line[k + 1] - s_line[k]))[:, None, None]
    table = np.stack([line, n1, n2], axis=1)  # (M, 3, 3)
    pos, f1, f2 = np.moveaxis(table[k] + frac * (table[k + 1] - table[k]), 1, 0)
    return pos + section[:, :1] * f1 + section[:, 1:] * f2, normal, line


def sheet_template(points: np.ndarray, unit: np.ndarray, degree: int = 4) -> np.ndarray:
    """Unit-sphere vertices mapped onto a folded plate (thin, folded sheets), (V, 3) LPS mm.

    Frame: the points' principal axes, e3 the sheet normal. Outline: the ellipse of radii 2σ along e1, e2
    (points spread evenly over both faces of a plate). Mid-surface: h(x, y), a Legendre polynomial of
    total ``degree`` least-squares fitted to the points' heights (both faces, so the middle). Half
    thickness t: the points' mean distance from h (away from the rim), measured along h's normal; each
    face is flat up to a rounded rim (height offset t·sign(u₃)|u₃|^½·√(1 + |∇h|²)).
    """
    centre = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
    e1, e2 = vt[0], vt[1]
    e3 = np.cross(e1, e2)
    q = points - centre
    x, y, z = q @ e1, q @ e2, q @ e3
    rx, ry = 2 * x.std(), 2 * y.std()
    terms = [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]

    def height(u, v):
        """h at in-plane (u, v) in units of the outline radii: (M,), and its design matrix (M, T)."""
        lu = np.polynomial.legendre.legvander(np.clip(u, -1.2, 1.2), degree)
        lv = np.polynomial.legendre.legvander(np.clip(v, -1.2, 1.2), degree)
        return np.stack([lu[:, i] * lv[:, j] for i, j in terms], axis=1)

    design = height(x / rx, y / ry)
    coef = np.linalg.solve(design.T @ design + 1e-2 * len(x) * np.eye(len(terms)), design.T @ z)
    slope = lambda u, v, h0: np.hypot(  # noqa: E731  (mm per mm, by central differences)
        (height(u + 1e-3, v) @ coef - h0) / (1e-3 * rx), (height(u, v + 1e-3) @ coef - h0) / (1e-3 * ry))
    h_pts = design @ coef
    rim = (x / rx) ** 2 + (y / ry) ** 2 < 0.64
    thick = np.abs(z - h_pts) / np.sqrt(1 + slope(x / rx, y / ry, h_pts) ** 2)
    t = float(np.mean(thick[rim])) if rim.sum() >= 4 else float(np.mean(thick))
    u0, u1, u2 = unit.T
    h = height(u0, u1) @ coef
    offset = t * np.sign(u2) * np.sqrt(np.abs(u2)) * np.sqrt(1 + slope(u0, u1, h) ** 2)
    return centre + np.outer(rx * u0, e1) + np.outer(ry * u1, e2) + np.outer(h + offset, e3)


def _line_frames(line: np.ndarray, normal: np.ndarray):
    """Arc length (M,) and frame (M, 3) ×3 — tangent, n1 = n2 × tangent, n2 = ``normal`` made
    perpendicular to the tangent — of a polyline (M, 3)."""
    seg = np.linalg.norm(np.diff(line, axis=0), axis=1)
    s_line = np.concatenate([[0.0], np.cumsum(seg)])
    tangent = np.gradient(line, s_line, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-12)
    n2 = normal - (tangent @ normal)[:, None] * tangent
    n2 /= np.maximum(np.linalg.norm(n2, axis=1, keepdims=True), 1e-12)
    return s_line, tangent, np.cross(n2, tangent), n2


def _project(points, line, s_line, tangent, n1, n2):
    """Arc length s (N,) of each point's nearest polyline sample plus the along-offset, and its offsets
    a, b (N,) along n1, n2 there."""
    k = np.argmin(((points[:, None, :] - line[None]) ** 2).sum(axis=2), axis=1)
    d = points - line[k]
    return s_line[k] + (d * tangent[k]).sum(1), (d * n1[k]).sum(1), (d * n2[k]).sum(1)


def _legendre(x: np.ndarray, degree: int) -> np.ndarray:
    """(len(x), degree + 1) Legendre polynomials P0..P_degree at x ∈ [−1, 1]."""
    return np.polynomial.legendre.legvander(x, degree)


class Abandoned(Exception):
    """A :meth:`ActiveSurface.refine` stopped from another thread before it finished."""


class BandedSolver:
    """Prefactorised solver for a sparse symmetric positive definite matrix (V, V): reverse Cuthill–McKee
    ordering makes it banded, LAPACK factorises the band once (Cholesky) and each solve of (V, 3)
    right-hand sides is two triangular band sweeps in single precision (a few hundred µs at 2,562
    vertices, about 4× faster than SuperLU on the same system)."""

    def __init__(self, matrix: sp.spmatrix) -> None:
        m = sp.csr_matrix(matrix)
        self._order = reverse_cuthill_mckee(m, symmetric_mode=True)
        self._inverse = np.argsort(self._order)
        p = m[self._order][:, self._order].tocoo()
        upper = p.col >= p.row
        band = int((p.col - p.row)[upper].max())
        ab = np.zeros((band + 1, m.shape[0]))
        ab[band + p.row[upper] - p.col[upper], p.col[upper]] = p.data[upper]
        self._factor = cholesky_banded(ab).astype(np.float32)
        self._columns: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def __deepcopy__(self, memo) -> "BandedSolver":
        """Itself: a solver is shared by every surface with the same settings (a deep copy of an
        :class:`ActiveSurface` shares it too)."""
        return self

    def __call__(self, rhs: np.ndarray) -> np.ndarray:
        """Solve for rhs (V, k); returns float64 (V, k)."""
        x, info = spbtrs(self._factor, rhs[self._order].astype(np.float32), lower=0)
        return x[self._inverse].astype(np.float64)

    def columns(self, vertices: np.ndarray) -> np.ndarray:
        """Columns (V, k) of the inverse matrix for vertex indices (k,): the response of every vertex to a unit
        load on each (what :meth:`ActiveSurface.update` needs to pull the clicked vertices implicitly). The
        :data:`COLUMN_CACHE` most recently used columns are kept, so a vertex dragged over many events costs one
        solve. Thread-safe (a template may be refined on a worker thread while clicks are answered)."""
        with self._lock:
            return self._cached_columns(vertices)

    def _cached_columns(self, vertices: np.ndarray) -> np.ndarray:
        cache = self._columns
        wanted = [int(v) for v in dict.fromkeys(vertices.tolist())]
        missing = [v for v in wanted if v not in cache]
        if missing:
            unit = np.zeros((len(self._order), len(missing)))
            unit[missing, np.arange(len(missing))] = 1.0
            for v, column in zip(missing, self(unit).T):
                cache[v] = column
        out = np.stack([cache[int(v)] for v in vertices], axis=1)
        for v in wanted:  # most recently used last
            cache[v] = cache.pop(v)
        while len(cache) > COLUMN_CACHE:  # after use: one call may need more columns than the cache keeps
            cache.pop(next(iter(cache)))
        return out


COARSE_FOLLOW_FROM = 5
"""From this icosphere level on (10,242 vertices), a deferred update follows the points on the next coarser
level and carries the change up (:meth:`ActiveSurface.update` with ``defer``)."""


@lru_cache(maxsize=4)
def _prolongation(subdivisions: int) -> sp.csr_matrix:
    """(V, V') linear map from the vertices of icosphere level ``subdivisions`` − 1 to those of level
    ``subdivisions``: a coarse vertex keeps its index, each new vertex is the mean of its edge's two ends
    (the order :func:`weaknet.mesh.icosphere` gives them)."""
    _, faces = mesh.icosphere(subdivisions - 1)
    n = int(faces.max()) + 1
    edges = np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1),
                      axis=0)
    rows = np.r_[np.arange(n), np.repeat(n + np.arange(len(edges)), 2)]
    cols = np.r_[np.arange(n), edges.ravel()]
    vals = np.r_[np.ones(n), np.full(2 * len(edges), 0.5)]
    return sp.csr_matrix((vals, (rows, cols)), shape=(n + len(edges), n))


@lru_cache(maxsize=4)
def _parents(subdivisions: int) -> np.ndarray:
    """(V,) a coarse vertex of each vertex of level ``subdivisions``: itself, or one end of its edge."""
    p = _prolongation(subdivisions)
    return p.indices[p.indptr[:-1]]


@lru_cache(maxsize=8)
def _operators(subdivisions: int, alpha: float, beta: float, taus: tuple[float, ...]):
    """Template mesh and its prefactorised systems, shared by every :class:`ActiveSurface` with the same
    settings (they depend on the mesh and the stiffness only, never on the points), so that a new surface
    (first fit, re-fit, undo, another object) costs no factorisation. Read-only after construction.

    Returns unit-sphere vertices (V, 3), faces (F, 3), one :class:`BandedSolver` per stiffness level, the
    (V, F) vertex-face incidence used for area-weighted vertex normals and each vertex's ring of faces
    (V, 6) (a vertex with five repeats one).
    """
    unit, faces = mesh.icosphere(subdivisions)
    n = len(unit)
    adj = mesh.adjacency(faces, n)
    degree = np.asarray(adj.sum(axis=1)).ravel()
    lap = (sp.diags(degree) - adj) / degree.mean()  # symmetric graph Laplacian, ≈ the umbrella operator
    stiffness = alpha * lap + beta * (lap @ lap)
    solvers = tuple(BandedSolver(sp.identity(n) + t * stiffness) for t in taus)
    rows = faces.ravel()
    cols = np.repeat(np.arange(len(faces)), 3)
    incidence = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, len(faces)))
    order = np.argsort(rows, kind="stable")
    start = np.searchsorted(rows[order], np.arange(n))
    valence = np.diff(np.r_[start, len(rows)])
    ring = cols[order][start[:, None] + np.minimum(np.arange(6), valence[:, None] - 1)]
    for array in (unit, faces, ring):
        array.setflags(write=False)
    return unit, faces, solvers, incidence, ring


class ActiveSurface:
    """A template mesh fitted to clicked surface points (LPS mm).

    ``fit(points)`` starts from the rest shape of the points; ``update(points)`` re-fits from the current
    mesh after points were added, moved or removed (falling back to ``fit`` when the rest shape changed a
    lot, e.g. during the first clicks). ``vertices`` (V, 3) LPS mm and ``faces`` (F, 3) int after a fit.

    subdivisions: icosphere level (4 → 2,562 vertices); alpha, beta: membrane and thin-plate weights (default
    4 and 16 at level 4, scaled by 4 and 16 per level above it — the graph operators' units shrink with the
    edges, h² and h⁴ — so that every level is as stiff physically; unscaled, 10,242 vertices lost 0.04–0.13 IoU
    at 10–50 points);
    taus: stiffness levels, coarse to fine (the last one is used by updates); iterations: steps of a
    from-scratch fit; update_iterations: steps after a click; pull: weight of point → nearest-vertex
    forces; normal_pull: weight of vertex → nearest-point forces along the normal (0 disables them);
    refit_mm: rest-shape change (max vertex move, mm) above which ``update`` restarts from the new rest
    shape (as it does when the kind of rest shape changes): one coarse-to-fine pass of
    ``warm_iterations`` steps instead of a fit from scratch (which it falls back to if that folds);
    tolerance_mm: an update repeats its steps (up to ``max_update_rounds`` times) until every added or
    moved point lies within this distance of the surface; bend, tube, sheet: allow the bent-ellipsoid,
    tube and folded-sheet rest shapes; rest_shape: a callable points (N, 3) → rest shape (V, 3) LPS mm
    on this icosphere's topology that replaces the built-in kinds (a shape prior, a model's proposal:
    :mod:`weaknet.shape_prior`, :mod:`weaknet.proposal`);
    passes: fits from scratch run this many times, each later pass regularising towards the previous
    result instead of the ellipsoid (removes the bias of a poor rest shape).
    """

    def __init__(self, subdivisions: int = 4, alpha: float | None = None, beta: float | None = None,
                 taus: tuple[float, ...] = (20.0, 5.0, 2.0), iterations: int = 60, update_iterations: int = 3,
                 pull: float = 8.0, normal_pull: float = 0.1, refit_mm: float = 5.0,
                 tolerance_mm: float = 1.0, max_update_rounds: int = 8, bend: bool = True,
                 warm_iterations: int = 20,
                 passes: int = 2, tube: bool = True, sheet: bool = True,
                 rest_shape: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        alpha = 4.0 * 4.0 ** (int(subdivisions) - 4) if alpha is None else alpha
        beta = 16.0 * 16.0 ** (int(subdivisions) - 4) if beta is None else beta
        self.unit, self.faces, self._solvers, self._incidence, self._ring = _operators(
            int(subdivisions), float(alpha), float(beta), tuple(float(t) for t in taus))
        self.subdivisions = int(subdivisions)
        self._stiffness = (float(alpha), float(beta), tuple(float(t) for t in taus))
        self._coarse: ActiveSurface | None = None  # the next coarser level's follower (see _follow_coarse)
        self._corners = tuple(np.ascontiguousarray(self.faces[:, i]) for i in range(3))  # (F,) each
        self.iterations = iterations
        self.update_iterations = update_iterations
        self.pull = pull
        self.normal_pull = normal_pull
        self.refit_mm = refit_mm
        self.warm_iterations = warm_iterations
        self.tolerance_mm = tolerance_mm
        self.max_update_rounds = max_update_rounds
        self.bend = bend
        self.tube = tube
        self.sheet = sheet
        self.passes = passes
        self.rest_shape = rest_shape
        self.template: np.ndarray | None = None  # the rest shape fitted to the points (ellipsoid or bent)
        self.rest: np.ndarray | None = None  # the regularisation target: template, then the previous pass
        self.vertices: np.ndarray | None = None
        self.points: np.ndarray | None = None
        self._normal: np.ndarray | None = None  # bend-plane normal of a bent or tube rest shape
        self._kind = "ellipsoid"  # kind of rest shape (see _rest_shape)
        self._line: np.ndarray | None = None  # centre line (64, 3) of a tube rest shape
        self._refine = False  # see needs_refine
        self._stop: threading.Event | None = None  # see refine

    def fit(self, points_lps: np.ndarray) -> "ActiveSurface":
        """Fit from scratch through points (N, 3) LPS mm (validated: ≥ 4, distinct, not coplanar).

        The result is checked for self-intersections (local folds where many points crowd a few
        vertices); a folded fit is redone with the point pull halved, up to three times.
        """
        pts = validate_points(points_lps)
        self.template, self._normal, self._kind = self._rest_shape(pts, None)
        self._chosen_at = len(pts)
        self._refine = False
        self.points = pts
        pull = self.pull
        try:
            for _ in range(4):
                self.rest = self.template.copy()
                self.vertices = self.template.copy()
                for p in range(self.passes):
                    if p:
                        self.rest = self.vertices.copy()  # plastic: the next pass starts from this fit
                    self._iterate(pts, self._solvers, self.iterations)
                if not len(mesh.self_intersections(self.vertices, self.faces, first=True)):
                    break
                self.pull /= 2
        finally:
            self.pull = pull
        return self

    def update(self, points_lps: np.ndarray, defer: bool = False) -> "ActiveSurface":
        """Re-fit for a changed point set (N, 3) LPS mm, warm-started from the current mesh.

        ``defer``: the interactive answer: keep the rest shape for now and only follow the points from the
        current mesh (≈ 5 ms; re-deciding the rest shape or restarting from a new one, most of the first ≈ 20
        clicks, takes 15–150 ms); :attr:`needs_refine` is then True until :meth:`refine` (the fit of the
        points, once a front end has shown the click) or an update without ``defer``.
        """
        if self.vertices is None:
            return self.fit(points_lps)
        pts = validate_points(points_lps)
        # re-decide the kind of rest shape only once the point count changed by 10 %
        if defer:
            if self.subdivisions >= COARSE_FOLLOW_FROM:
                return self._follow_coarse(pts)
            return self._follow(pts, refine=True)
        decide = abs(len(pts) - self._chosen_at) >= 0.1 * self._chosen_at
        template, normal, kind = self._rest_shape(pts, self._normal, keep=self._kind,
                                                  only=None if decide else self._kind)
        shift = template - self.template
        if kind != self._kind or np.max(np.linalg.norm(shift, axis=1)) > self.refit_mm:
            return self._restart(pts, template, normal, kind)
        if decide:
            self._chosen_at = len(pts)
        self.vertices += shift
        self.rest += shift
        self.template, self._normal = template, normal
        return self._follow(pts)

    @property
    def needs_refine(self) -> bool:
        """Whether a deferred :meth:`update` left the rest shape to :meth:`refine`."""
        return self._refine

    def refine(self, stop: threading.Event | None = None) -> "ActiveSurface":
        """What deferred updates left out: the fit of the current points from scratch (:meth:`fit`), so that
        the template a user sees once the clicks pause depends on the points only: the same as ``weaknet
        fit-template`` and a reopened session give, and as good as docs/asm.md measures (the warm-started
        follows alone lose 0.02–0.07 IoU at 15–125 points). Does nothing when :attr:`needs_refine` is False.

        ``stop``: set from another thread to abandon the fit (a newer click made it obsolete): raises
        :class:`Abandoned` within one step, the surface then in an unusable state (refine a private copy)."""
        if not self._refine:
            return self
        self._stop = stop
        try:
            return self.fit(self.points)
        finally:
            self._stop = None

    def _follow(self, pts: np.ndarray, refine: bool = False) -> "ActiveSurface":
        """The update's steps from the current mesh and rest shape towards validated points (N, 3) LPS mm;
        ``refine``: what :attr:`needs_refine` says afterwards."""
        self._refine = refine
        old = self.points
        if len(pts) >= len(old) and np.array_equal(pts[:len(old)], old):  # appended: indices unchanged
            fresh, nearest = np.arange(len(old), len(pts)), self._nearest
        else:  # the added or moved points (indices into pts); the last fit's correspondences renumbered
            fresh, nearest = _renumber(old, pts, self._nearest)
        new = pts[fresh]
        self.points = pts
        tree = cKDTree(pts)
        spacing = float(np.median(tree.query(pts, k=2)[0][:, 1]))
        worst = self._off_surface(new).max() if len(new) else 0.0
        for _ in range(self.max_update_rounds):
            self._iterate(pts, self._solvers[-1:], self.update_iterations, refresh=self.update_iterations,
                          nearest=nearest, fresh=fresh, tree=(tree, spacing), implicit=fresh)
            nearest = self._nearest
            if not len(new):
                break
            before, worst = worst, self._off_surface(new).max()
            if worst <= self.tolerance_mm or worst > STALL * before:  # within tolerance, or no longer closing in
                break
        return self

    def _follow_coarse(self, pts: np.ndarray) -> "ActiveSurface":
        """A deferred update of a fine mesh (:data:`COARSE_FOLLOW_FROM`): the first vertices of level s are
        those of level s − 1, so an ActiveSurface of that level with them (and the rest shape's) follows the
        points as :meth:`_follow` does, at a quarter of the cost, and its displacement is carried up by
        :func:`_prolongation` (the fine detail is kept); :meth:`refine` then fits the fine mesh. The follower
        is kept while its vertices are still the fine mesh's first ones (rebuilt after anything else moved
        them: a fit, a refinement, an undo)."""
        coarse = self._coarse
        n = 10 * 4 ** (self.subdivisions - 1) + 2
        if coarse is None or coarse.points is not self.points or not np.array_equal(coarse.vertices,
                                                                                    self.vertices[:n]):
            alpha, beta, taus = self._stiffness
            coarse = self._coarse = ActiveSurface(  # as stiff physically as this level (see the class docstring)
                self.subdivisions - 1, alpha / 4.0, beta / 16.0, taus, update_iterations=self.update_iterations,
                pull=self.pull, normal_pull=self.normal_pull, tolerance_mm=self.tolerance_mm,
                max_update_rounds=self.max_update_rounds)
            coarse.vertices, coarse.rest = self.vertices[:n].copy(), self.rest[:n].copy()
            coarse.template, coarse.points = self.template[:n].copy(), self.points
            coarse._nearest = self._nearest[:n] if self._nearest is not None else np.full(n, -1)
        before = coarse.vertices.copy()
        coarse._follow(pts, refine=True)
        self.vertices = self.vertices + _prolongation(self.subdivisions) @ (coarse.vertices - before)
        self.vertices[:n] = coarse.vertices  # exactly, so that the follower stays valid
        self.points, self._refine = pts, True
        # each fine vertex's nearest point: its coarse parent's (a warm start that the next search corrects)
        self._nearest = coarse._nearest[_parents(self.subdivisions)]
        return self

    def _restart(self, pts: np.ndarray, template: np.ndarray, normal: np.ndarray | None, kind: str
                 ) -> "ActiveSurface":
        """An update whose rest shape changed kind or moved far (the first clicks): one coarse-to-fine pass of
        ``warm_iterations`` steps from the new rest shape, about a sixth of a fit from scratch. When a tube or
        sheet folds there (thin kinds chosen on few points of a compact shape), the pass is redone from the
        best compact kind (bent or ellipsoid); the full :meth:`fit` runs only when a compact kind folds."""
        self._refine = False
        while True:
            self.template, self._normal, self._kind, self.points = template, normal, kind, pts
            self._chosen_at = len(pts)
            self.rest = template.copy()
            self.vertices = template.copy()
            self._iterate(pts, self._solvers, self.warm_iterations)
            if not len(mesh.self_intersections(self.vertices, self.faces, first=True)):
                return self
            if kind not in ("tube", "sheet"):
                return self.fit(pts)
            template, normal, kind = self._rest_shape(pts, None, compact=True)

    def correct(self, points_lps: np.ndarray, held: int, steps: int = 2, nearest: np.ndarray | None = None,
                vertex: np.ndarray | None = None, spacing: float | None = None) -> "ActiveSurface":
        """Deform the rest shape :attr:`rest` (a given mesh, e.g. a model's proposal: set ``rest`` first) through
        points (N, 3) LPS mm, the first ``held`` of them exactly: each held point's nearest rest vertex is
        placed on it (on their mean where several share one), the others pull as in a fit.

        ``steps`` semi-implicit steps at the coarsest stiffness level (the held points carry a wide
        neighbourhood along), then as many at the finest, with the correspondences of the rest shape; the
        result depends on the points only, never on earlier calls. ≈ 5–7 ms at 2,562 vertices. When the caller
        keeps them for its rest shape: ``nearest`` (V,) each rest vertex's nearest point (index into the
        points, -1: search it), ``vertex`` (N,) each point's nearest rest vertex, ``spacing`` the points'
        typical distance (mm).
        """
        pts = validate_points(points_lps)
        fixed = np.arange(held)
        self.vertices, self.points = self.rest.copy(), pts
        self._iterate(pts, (self._solvers[0], self._solvers[-1]), 2 * steps, refresh=2 * steps, nearest=nearest,
                      fresh=fixed, tree=(cKDTree(pts), spacing), implicit=fixed, exact=True, start_vertex=vertex)
        return self

    def _rest_shape(self, pts: np.ndarray, normal_hint: np.ndarray | None, keep: str | None = None,
                    only: str | None = None, compact: bool = False) -> tuple[np.ndarray, np.ndarray | None, str]:
        """The rest shape of the points: (vertices (V, 3), bend-plane normal or None, kind).

        Kinds: 'ellipsoid'; 'bent' (:func:`bent_template`) when its symmetric mean distance to the points
        (points → nearest vertex + vertices → nearest point) is ≥ 15 % smaller than the ellipsoid's;
        'tube' (:func:`tube_template`, its centre line kept in ``_line`` to warm-start the next one) when
        it is ≥ 15 % closer than both; 'sheet' (:func:`sheet_template`) when ≥ 15 % closer than all
        three. A tube or sheet newly chosen must not intersect itself (else the next best).
        ``keep``: the current kind, which needs to be only 5 % closer (hysteresis between clicks);
        ``only``: build that kind without comparing (the ellipsoid when it cannot be built). Tube and sheet
        take part only from :data:`THIN_MIN_POINTS` points on, and not with ``compact``.
        A given ``rest_shape`` callable replaces all kinds ('given').
        """
        if self.rest_shape is not None:
            return np.asarray(self.rest_shape(pts), float), None, "given"
        thin = len(pts) >= THIN_MIN_POINTS and not compact
        allowed = ("ellipsoid",) + (("bent",) if self.bend else ()) + (("tube",) if self.tube and thin else ()) + (
            ("sheet",) if self.sheet and thin else ())
        if only in allowed:
            allowed = (only,)
        else:
            only = None  # e.g. a tube kept from before points were removed: choose again
        shapes, line = {}, None
        for kind in allowed:
            if kind == "ellipsoid":
                shapes[kind] = (ellipsoid_template(pts, self.unit), None)
            elif kind == "bent":
                bent = bent_template(pts, self.unit, normal_hint)
                if bent is not None:
                    shapes[kind] = bent
            elif kind == "tube":
                warm = self._line if keep == "tube" else None
                *shapes[kind], line = tube_template(pts, self.unit, normal_hint, warm)
            else:
                shapes[kind] = (sheet_template(pts, self.unit), None)
        if only is not None:
            best = only if only in shapes else "ellipsoid"
            if best not in shapes:
                shapes[best] = (ellipsoid_template(pts, self.unit), None)
        else:
            tree = cKDTree(pts)
            residual = {k: cKDTree(v).query(pts)[0].mean() + tree.query(v)[0].mean()
                        for k, (v, _) in shapes.items()}
            while True:
                best = "ellipsoid"
                for kind in ("bent", "tube", "sheet"):  # each must beat the simpler ones clearly (less to stay)
                    if kind in residual and residual[kind] < (0.95 if kind == keep else 0.85) * residual[best]:
                        best = kind
                # a newly chosen tube or sheet must not intersect itself (checked for the winner only)
                if best in ("ellipsoid", "bent", keep) or not len(mesh.self_intersections(shapes[best][0],
                                                                                          self.faces, first=True)):
                    break
                del residual[best]
        if best == "tube":
            self._line = line
        return (*shapes[best], best)

    def _off_surface(self, points: np.ndarray) -> np.ndarray:
        """(K,) distance (mm) from each of a few points (K, 3) to the mesh: to the faces around its nearest
        vertex (found by brute force), which hold the closest point on a mesh of even triangles."""
        nearest = ((points[:, None, :] - self.vertices[None]) ** 2).sum(axis=2).argmin(axis=1)
        return mesh.face_distances(points, self.vertices, self.faces, self._ring[nearest])

    def _forces(self, x: np.ndarray, pts: np.ndarray, nearest: np.ndarray, weight: np.ndarray,
                vertex: np.ndarray) -> np.ndarray:
        """(V, 3) displacement targets (see the module docstring) for correspondences ``nearest`` (V,)
        point of each vertex with fall-off ``weight`` (V,), and ``vertex`` (N,) nearest vertex of each point."""
        normals = self._incidence @ self._face_normals(x)
        normals /= np.maximum(np.sqrt(np.einsum("ij,ij->i", normals, normals)), 1e-30)[:, None]
        along = np.einsum("ij,ij->i", pts[nearest] - x, normals)
        # only where the point's own surface (its nearest vertex) faces the same way: never pull one
        # wall of a thin part towards a point on the opposite wall
        facing = np.einsum("ij,ij->i", normals, normals[vertex[nearest]]) > 0.3
        f = (weight * facing * along)[:, None] * normals
        # each clicked point pulls its nearest vertex; several points sharing one vertex pull it to their mean
        share = np.bincount(vertex, minlength=len(x))
        pull = self.pull * (pts - x[vertex]) / share[vertex, None]
        for c in range(3):
            f[:, c] += np.bincount(vertex, pull[:, c], minlength=len(x))
        return f

    def _face_normals(self, x: np.ndarray) -> np.ndarray:
        """(F, 3) area-weighted face normals ×2 of the mesh at vertices x (V, 3) (as
        :func:`weaknet.mesh.face_normals`, on coordinate rows: ≈ 2× faster in the update's inner loop)."""
        xt = np.ascontiguousarray(x.T)
        a, b, c = self._corners
        ax, ay, az = xt[0][a], xt[1][a], xt[2][a]
        ux, uy, uz = xt[0][b] - ax, xt[1][b] - ay, xt[2][b] - az
        vx, vy, vz = xt[0][c] - ax, xt[1][c] - ay, xt[2][c] - az
        out = np.empty((len(a), 3))
        out[:, 0] = uy * vz - uz * vy
        out[:, 1] = uz * vx - ux * vz
        out[:, 2] = ux * vy - uy * vx
        return out

    def _iterate(self, pts: np.ndarray, solvers, iterations: int, refresh: int = 2,
                 nearest: np.ndarray | None = None, fresh: np.ndarray | None = None,
                 tree: tuple[cKDTree, float | None] | None = None, implicit: np.ndarray | None = None,
                 exact: bool = False, start_vertex: np.ndarray | None = None) -> None:
        """Semi-implicit steps; correspondences are recomputed every ``refresh`` steps. ``nearest`` (V,):
        each vertex's nearest point from the previous fit, valid except for the points ``fresh`` (indices of
        points added or moved since) and -1 entries (a point removed), so that the first search only needs
        those (and the vertices whose nearest point moved or was removed). ``tree``: the points' k-d tree and
        their typical spacing (mm, None: measured), when the caller has them. ``implicit``: indices of
        points (the ones just added or moved) whose pull on their nearest vertex is taken into the solve,
        (A + pull·Σ e_v e_vᵀ) Dₜ₊₁ = Dₜ + Fₜ + pull·Dₜ(v) (Woodbury, with the inverse's columns of those
        vertices): the same equilibrium, reached in a few steps instead of tens when a point lies
        millimetres from the surface. ``exact``: hold those points exactly instead (the limit pull → ∞:
        each one's nearest vertex placed on it, on their mean where several share one). ``start_vertex``
        (N,): each point's nearest vertex of the starting mesh, when the caller has it."""
        tree, spacing = tree or (cKDTree(pts), None)
        if spacing is None:
            spacing = float(np.median(tree.query(pts, k=2)[0][:, 1]))  # typical distance between points
        d = self.vertices - self.rest
        step = 0
        for solve in solvers:
            for _ in range(max(iterations // len(solvers), 1)):
                if self._stop is not None and self._stop.is_set():
                    raise Abandoned("the fit was abandoned (its points changed)")
                x = self.rest + d
                if step % refresh == 0:
                    if nearest is not None and step == 0:
                        nearest = nearest.copy()
                        dist = np.linalg.norm(pts[nearest] - x, axis=1)
                        moved = fresh is not None and len(fresh)
                        # the vertices whose nearest point was removed (-1) or moved
                        stale = np.flatnonzero((nearest < 0) | (np.isin(nearest, fresh) if moved else False))
                        if len(stale):
                            dist[stale], nearest[stale] = tree.query(x[stale])
                        if moved:
                            dnew = np.linalg.norm(x[:, None, :] - pts[None, fresh], axis=2)
                            closer = dnew.min(axis=1) < dist
                            nearest = np.where(closer, fresh[dnew.argmin(axis=1)], nearest)
                            dist = np.minimum(dist, dnew.min(axis=1))
                    else:
                        dist, nearest = tree.query(x)
                    weight = self.normal_pull * np.exp(-(dist / spacing) ** 2)
                    vertex = cKDTree(x).query(pts)[1] if start_vertex is None or step else start_vertex
                    held, slot = (None, None) if implicit is None or not len(implicit) else np.unique(
                        vertex[implicit], return_inverse=True)
                    if held is not None and exact:  # each held vertex's displacement: onto its points' mean
                        share = np.bincount(slot)[:, None]
                        target = np.stack([np.bincount(slot, pts[implicit, c]) for c in range(3)], 1) / share
                        target -= self.rest[held]
                    green_for = None
                if held is not None and green_for is not solve:  # the inverse's columns at this stiffness level
                    green, green_for = solve.columns(held), solve
                    coupling = np.linalg.inv(green[held] if exact else np.eye(len(held)) / self.pull + green[held])
                rhs = d + self._forces(x, pts, nearest, weight, vertex)
                if held is None:
                    d = solve(rhs)
                elif exact:  # the limit pull → ∞ of the implicit pull: D(held) = target
                    y = solve(rhs)
                    d = y - green @ (coupling @ (y[held] - target))
                else:
                    rhs[held] += self.pull * d[held]
                    y = solve(rhs)
                    d = y - green @ (coupling @ y[held])
                step += 1
        self.vertices = self.rest + d
        self._nearest = nearest


def _renumber(old: np.ndarray, pts: np.ndarray, nearest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 3) that replace ``old`` (M, 3) in any order: (indices of the added or moved ones (K,),
    ``nearest`` (V,) — each vertex's nearest point, indices into ``old`` — renumbered into ``pts``, -1 where
    that point is gone or moved)."""
    dist, match = cKDTree(old).query(pts)
    kept = dist <= 1e-6
    into = np.full(len(old), -1)
    into[match[kept]] = np.flatnonzero(kept)
    return np.flatnonzero(~kept), into[nearest]
