"""Statistical shape prior: a mean shape and PCA modes learned from earlier template fits of one structure.

Every fitted template shares the icosphere's topology, but vertex *i* of two fits is not the same
anatomical place (each rest shape maps the sphere through its own principal axes, arc or centre line).
Correspondence is therefore re-established first: the first mesh (the reference) is aligned to each other
mesh (similarity, iterative closest points from 24 principal-axis starts) and deformed onto it with the
Active Surface Model itself (its vertices as dense "clicks", the aligned reference as rest shape), so that
every mesh is re-sampled on the reference's parametrisation. Then generalised Procrustes analysis
(similarity: translation, rotation, scale) gives the mean shape, and PCA of the aligned shapes its modes.

Fitting to clicks (:meth:`ShapePrior.fit`): pose s, R, t and mode weights b of X = s·(μ + Σ bⱼ Φⱼ)·Rᵀ + t,
alternating closest-vertex correspondences, a weighted Umeyama similarity for the pose and a ridge solve
for b (point-to-plane residuals, Gaussian prior b ~ N(0, diag(σ²)), clipped to ±3σ), from 24 starts
(axis permutations and signs of the clicks' vs the mean's principal axes) or warm from the last fit.
:class:`PriorRestShape` makes that the Active Surface Model's rest shape, which then deforms locally
through the clicks as without a prior.

How far that local deformation may leave the prior's shape depends on the structure: the surface's pull
towards the nearest click along its normal (``ActiveSurface.normal_pull``, 0.1 without a prior) flattens a
good prior shape between the clicks, and helps where a new case lies far from every earlier one. The prior
chooses it when it is built (:func:`tune_normal_pull`): leave one earlier fit out, build the prior from the
others, fit its farthest-point samples of 10 and 25 vertices, keep the candidate closest to the left-out
surface (mean symmetric surface distance over the folds). The same folds fitted without the prior tell
whether it helps at all (:attr:`ShapePrior.worse_than_plain`; with 5 earlier fits, napari's nuclei: yes, 0.052
vs 0.076 RMS radii; the project's phantom families: no, 0.069–0.110 vs 0.060–0.069).

File (``.npz``, loads with ``allow_pickle=False``): mean (V, 3) (centred, unit RMS radius), modes (M, V, 3),
variances (M,), faces (F, 3), structure (str), size_mm (mean RMS radius of the fits), meshes (count),
format (int), normal_pull (float; absent in files written before it: 0.1), and when the pull was chosen here
tuning_pulls (C,), tuning_errors (C,), tuning_plain (): the leave-one-out errors behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import permutations, product
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from . import mesh
from .errors import InputError

FORMAT = 1
MIN_MESHES = 3
PULLS = (0.1, 0.01)  # normal_pull candidates of the leave-one-out choice; the first is the ASM's default
TUNE_CLICKS = (10, 25)  # clicks of its simulated fits
TUNE_FOLDS = 5  # earlier fits left out at most (spread over them), so that tuning costs the same from 5 fits on


def similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None
               ) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity dst ≈ s·R·src + t (Umeyama) of corresponding points (N, 3):
    (scale s, proper rotation R (3, 3), translation t (3,))."""
    w = np.full(len(src), 1.0 / len(src)) if weights is None else weights / weights.sum()
    ms, md = w @ src, w @ dst
    a, b = src - ms, dst - md
    u, sv, vt = np.linalg.svd((b * w[:, None]).T @ a)
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1.0
    rot = (u * d) @ vt
    var = float(w @ (a * a).sum(axis=1))
    scale = float((sv * d).sum() / max(var, 1e-30))
    return scale, rot, md - scale * rot @ ms


def vertex_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V,) one third of the area of the faces around each vertex (mm² for mm vertices)."""
    area = 0.5 * np.linalg.norm(mesh.face_normals(vertices, faces, normalize=False), axis=1)
    return np.bincount(faces.ravel(), np.repeat(area / 3, 3), minlength=len(vertices))


def _principal_axes(points: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Weighted centre (3,) and principal axes (3, 3) as columns, largest variance first."""
    w = np.full(len(points), 1.0 / len(points)) if weights is None else weights / weights.sum()
    centre = w @ points
    q = points - centre
    _, vecs = np.linalg.eigh((q * w[:, None]).T @ q)
    return centre, vecs[:, ::-1]


def _rotations() -> list[np.ndarray]:
    """The 24 proper rotations mapping the coordinate axes onto each other (permutations × signs)."""
    out = []
    for perm, signs in product(permutations(range(3)), product((1.0, -1.0), repeat=3)):
        m = np.zeros((3, 3))
        m[list(perm), range(3)] = signs
        if np.linalg.det(m) > 0:
            out.append(m)
    return out


@dataclass
class PriorFit:
    """The prior fitted to points: vertices (V, 3) LPS mm, pose (scale, rotation (3, 3), translation (3,)),
    weights (M,) in units of each mode's σ, residual_mm: median point-to-surface distance (point-to-plane
    at the nearest vertex), points: how many points it was fitted to."""

    vertices: np.ndarray
    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    weights: np.ndarray
    residual_mm: float
    points: int


@dataclass
class ShapePrior:
    """Mean shape (V, 3) (centred, RMS radius 1), modes (M, V, 3) (orthonormal as flat vectors),
    variances (M,) of the aligned shapes along each mode, faces (F, 3) (the icosphere's), the structure's
    name, size_mm (mean RMS radius of the fits, mm), the number of meshes it was built from, and the
    Active Surface's normal_pull to fit with it. ``tuning``: the leave-one-out errors behind that choice,
    {normal_pull: mean symmetric surface distance in RMS radii, "plain": the template without a prior}
    (empty when the pull was not chosen here)."""

    mean: np.ndarray
    modes: np.ndarray
    variances: np.ndarray
    faces: np.ndarray
    structure: str
    size_mm: float
    meshes: int
    normal_pull: float = PULLS[0]
    tuning: dict[str | float, float] = field(default_factory=dict)

    @property
    def vertex_count(self) -> int:
        return len(self.mean)

    @property
    def worse_than_plain(self) -> bool:
        """Whether, left out of it, the earlier fits were fitted closer without the prior (known only for a
        prior built here from 4 or more meshes)."""
        return bool(self.tuning) and self.tuning[self.normal_pull] >= self.tuning["plain"]

    def surface_options(self) -> dict:
        """Keyword arguments of :class:`~weaknet.asm.ActiveSurface` that fit with this prior: a fresh
        :class:`PriorRestShape` and the prior's normal_pull."""
        return {"rest_shape": PriorRestShape(self), "normal_pull": self.normal_pull}

    def shape(self, weights: np.ndarray) -> np.ndarray:
        """(V, 3) normalised shape μ + Σ bⱼ σⱼ Φⱼ for weights (M,) in units of σ."""
        if not len(self.variances):
            return self.mean.copy()
        return self.mean + np.tensordot(np.asarray(weights) * np.sqrt(self.variances), self.modes, axes=1)

    def check(self, faces: np.ndarray | None = None, structure: str | None = None, name: str = "the prior"
              ) -> None:
        """:class:`InputError` unless this prior fits meshes of ``faces`` (F, 3) and, when given, is of
        ``structure``."""
        if faces is not None and (faces.shape != self.faces.shape or not np.array_equal(faces, self.faces)):
            raise InputError(
                f"{name} was built from meshes of {self.vertex_count} vertices "
                f"(subdivisions {_subdivisions(self.vertex_count)}), this fit uses {int(faces.max()) + 1} "
                f"(subdivisions {_subdivisions(int(faces.max()) + 1)}); fit with --subdivisions "
                f"{_subdivisions(self.vertex_count)} or rebuild the prior from meshes of this resolution")
        if structure is not None and structure != self.structure:
            raise InputError(f"{name} is a prior of {self.structure!r}, not of {structure!r}; build one from "
                             f"earlier fits of {structure!r} (weaknet shape-prior) or fit without a prior")

    # ---------------------------------------------------------------------------------------- fitting

    def fit(self, points: np.ndarray, start: PriorFit | None = None, iterations: int = 25,
            noise: float = 0.05) -> PriorFit:
        """Pose and mode weights fitted to points (N, 3) LPS mm on the object's surface.

        ``start``: warm start from an earlier fit (one descent), else the best of 24 principal-axis starts
        (rigid descent from each, then the best three refined with the modes). ``noise``: the expected
        residual in units of the RMS radius (the ridge weight of the Gaussian prior on the weights).
        """
        pts = np.asarray(points, float)
        if start is not None:
            return self._descend(pts, start.scale, start.rotation, start.translation, start.weights,
                                 iterations, noise)
        areas = vertex_areas(self.mean, self.faces)
        m_centre, m_axes = _principal_axes(self.mean, areas)
        p_centre, p_axes = _principal_axes(pts)
        m_rms = np.sqrt(areas @ ((self.mean - m_centre) ** 2).sum(1) / areas.sum())
        scale = np.sqrt(((pts - p_centre) ** 2).sum(1).mean()) / m_rms
        zero = np.zeros(len(self.variances))
        rigid = []
        for flip in _rotations():
            rot = p_axes @ flip @ m_axes.T
            fit = self._descend(pts, scale, rot, p_centre - scale * rot @ m_centre, zero, 8, noise, modes=False)
            rigid.append(fit)
        rigid.sort(key=lambda f: f.residual_mm)
        best = [self._descend(pts, f.scale, f.rotation, f.translation, zero, iterations, noise)
                for f in rigid[:3]]
        return min(best, key=lambda f: f.residual_mm)

    def _descend(self, pts, scale, rot, trans, weights, iterations, noise, modes: bool = True) -> PriorFit:
        """Alternate correspondences, pose and (when ``modes``) weights; returns the last fit."""
        b = np.array(weights, float)
        sd = np.sqrt(self.variances)
        use_modes = modes and len(sd)
        for _ in range(iterations):
            shape = self.shape(b)
            world = scale * shape @ rot.T + trans
            idx = cKDTree(world).query(pts)[1]
            scale, rot, trans = similarity(shape[idx], pts)
            if use_modes:
                shape_normals = mesh.vertex_normals(shape, self.faces)[idx]
                local = (pts - trans) @ rot / scale  # the points in the normalised frame
                phi = self.modes[:, idx, :] * sd[:, None, None]  # (M, N, 3), per unit weight
                a = np.einsum("mnc,nc->nm", phi, shape_normals)
                rhs = ((local - self.mean[idx]) * shape_normals).sum(1)
                # point-to-plane least squares with a Gaussian prior N(0, 1) on b (in units of σ)
                lhs = a.T @ a + noise ** 2 * np.eye(len(sd))
                b = np.clip(np.linalg.solve(lhs, a.T @ rhs), -3.0, 3.0)
        shape = self.shape(b)
        world = scale * shape @ rot.T + trans
        normals = mesh.vertex_normals(world, self.faces)
        idx = cKDTree(world).query(pts)[1]
        resid = np.abs(((pts - world[idx]) * normals[idx]).sum(1))
        return PriorFit(world, float(scale), rot, trans, b, float(np.median(resid)), len(pts))

    # ---------------------------------------------------------------------------------------- files

    def save(self, path: str | Path) -> Path:
        """Write the prior as ``.npz`` (plain arrays, no pickled objects)."""
        p = Path(path)
        if p.suffix.lower() != ".npz":
            raise InputError(f"{p}: a shape prior is written as .npz")
        p.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(p, **self.arrays())
        return p

    def arrays(self) -> dict[str, np.ndarray]:
        """What the file holds (see the module docstring), by name."""
        tuned = [c for c in self.tuning if c != "plain"]
        return dict(mean=self.mean, modes=self.modes, variances=self.variances, faces=self.faces,
                    structure=np.array(self.structure), size_mm=np.array(self.size_mm),
                    meshes=np.array(self.meshes), format=np.array(FORMAT), normal_pull=np.array(self.normal_pull),
                    **({"tuning_pulls": np.array(tuned, float), "tuning_errors": np.array(
                        [self.tuning[c] for c in tuned], float), "tuning_plain": np.array(self.tuning["plain"])}
                       if self.tuning else {}))

    @classmethod
    def load(cls, path: str | Path) -> "ShapePrior":
        """Read a prior written by :meth:`save`; :class:`InputError` for a missing, foreign or corrupt file."""
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: no such shape prior file (write one with weaknet shape-prior)")
        try:
            with np.load(p, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except Exception as exc:  # zipfile/numpy raise many kinds for a damaged or foreign file
            raise InputError(f"{p}: not a readable shape prior ({type(exc).__name__}); rebuild it with "
                             "weaknet shape-prior") from None
        keys = ("mean", "modes", "variances", "faces", "structure", "size_mm", "meshes", "format")
        missing = [k for k in keys if k not in data]
        if missing:
            raise InputError(f"{p}: not a WeakNet shape prior (missing {', '.join(missing)})")
        if int(data["format"]) != FORMAT:
            raise InputError(f"{p}: shape prior format {int(data['format'])}, this WeakNet reads {FORMAT}")
        mean, modes, var, faces = data["mean"], data["modes"], data["variances"], data["faces"]
        v = len(mean)
        if (mean.ndim != 2 or mean.shape[1] != 3 or modes.ndim != 3 or modes.shape[1:] != (v, 3)
                or var.shape != (len(modes),) or faces.ndim != 2 or faces.shape[1] != 3
                or not np.all(np.isfinite(mean)) or not np.all(np.isfinite(modes))
                or (faces.size and (faces.min() < 0 or faces.max() >= v))):
            raise InputError(f"{p}: inconsistent shape prior arrays; rebuild it with weaknet shape-prior")
        pull = float(data["normal_pull"]) if "normal_pull" in data else PULLS[0]
        if not 0.0 <= pull <= 1.0:
            raise InputError(f"{p}: normal_pull {pull} outside [0, 1]; rebuild it with weaknet shape-prior")
        tuning: dict[str | float, float] = {}
        if {"tuning_pulls", "tuning_errors", "tuning_plain"} <= set(data):
            tuning = {float(c): float(e) for c, e in zip(data["tuning_pulls"], data["tuning_errors"])}
            tuning["plain"] = float(data["tuning_plain"])
            if pull not in tuning:
                tuning = {}
        return cls(mean.astype(float), modes.astype(float), var.astype(float), faces.astype(np.int64),
                   str(data["structure"]), float(data["size_mm"]), int(data["meshes"]), pull, tuning)


def _subdivisions(vertices: int) -> str:
    """The icosphere level with this many vertices (10·4^s + 2), or '?'."""
    for s in range(9):
        if 10 * 4 ** s + 2 == vertices:
            return str(s)
    return "?"


class PriorRestShape:
    """The rest shape of an :class:`~weaknet.asm.ActiveSurface` from a prior (its ``rest_shape``): the
    prior fitted to the current points, warm from the last fit until the point count grew by a quarter
    since the last full search (then the 24 starts again, the last fit among them). ``last`` holds the
    latest :class:`PriorFit`."""

    def __init__(self, prior: ShapePrior) -> None:
        self.prior = prior
        self.last: PriorFit | None = None
        self._searched_at = 0

    def __call__(self, points: np.ndarray) -> np.ndarray:
        n = len(points)
        if self.last is not None and n < 1.25 * self._searched_at:
            self.last = self.prior.fit(points, start=self.last, iterations=6)
        else:
            fresh = self.prior.fit(points)
            if self.last is not None:
                warm = self.prior.fit(points, start=self.last)
                fresh = min((fresh, warm), key=lambda f: f.residual_mm)
            self.last, self._searched_at = fresh, n
        return self.last.vertices


# -------------------------------------------------------------------------------------------- building

def correspond(reference: np.ndarray, target: np.ndarray, faces: np.ndarray, iterations: int = 100,
               taus: tuple[float, ...] = (20.0, 5.0, 1.0, 0.2)) -> np.ndarray:
    """``target`` (V, 3) re-sampled on ``reference``'s parametrisation (V, 3), both on the icosphere's
    ``faces``: the reference aligned to the target (similarity, 24 starts), then deformed onto it
    (non-rigid closest points: every vertex pulled towards its nearest target vertex and every target
    vertex pulling its nearest vertex, regularised by the Active Surface Model's membrane + thin-plate
    stiffness, coarse to fine)."""
    from .asm import ActiveSurface
    from .sampling import farthest_point_sampling

    pts = target[farthest_point_sampling(target, min(600, len(target)))]
    rigid = ShapePrior(_normalise(reference), np.zeros((0,) + reference.shape), np.zeros(0), faces, "", 1.0, 1)
    rest = rigid.fit(pts).vertices
    solvers = ActiveSurface(subdivisions=int(_subdivisions(len(reference))), taus=taus)._solvers
    tree = cKDTree(target)
    d = np.zeros_like(rest)
    for solve in solvers:
        for _ in range(iterations // len(solvers)):
            x = rest + d
            f = 0.5 * (target[tree.query(x)[1]] - x)
            vertex = cKDTree(x).query(target)[1]
            share = np.bincount(vertex, minlength=len(x))[vertex, None]
            pull = 0.5 * (target - x[vertex]) / share
            for c in range(3):
                f[:, c] += np.bincount(vertex, pull[:, c], minlength=len(x))
            d = solve(d + f)
    return rest + d


def _normalise(x: np.ndarray) -> np.ndarray:
    """(V, 3) centred on the vertex mean and scaled to RMS radius 1."""
    c = x - x.mean(axis=0)
    return c / np.sqrt((c * c).sum(1).mean())


def build_prior(meshes: list[tuple[np.ndarray, np.ndarray]], structure: str, max_modes: int | None = None,
                names: list[str] | None = None, tune: bool = True) -> ShapePrior:
    """A prior from fitted templates (vertices (V, 3) LPS mm, faces (F, 3)) of one structure.

    Raises :class:`InputError` for fewer than 3 meshes or meshes of another topology than the first (not
    written by ``weaknet fit-template --mesh``, or with other ``--subdivisions``). ``max_modes``: keep at
    most this many modes (default: all, at most meshes − 1). ``tune``: choose the prior's normal_pull by
    :func:`tune_normal_pull` (from 4 meshes; ≈ 1 s a mesh at 2,562 vertices), else keep the default.
    """
    names = names or [f"mesh {i + 1}" for i in range(len(meshes))]
    if len(meshes) < MIN_MESHES:
        raise InputError(f"a shape prior needs at least {MIN_MESHES} fitted meshes of the structure, got "
                         f"{len(meshes)}")
    v0, f0 = meshes[0]
    if _subdivisions(len(v0)) == "?" or not np.array_equal(f0, mesh.icosphere(int(_subdivisions(len(v0))))[1]):
        raise InputError(f"{names[0]}: not a template fitted by WeakNet ({len(v0)} vertices, {len(f0)} faces: "
                         "another topology than the icosphere); write meshes with weaknet fit-template --mesh")
    for name, (v, f) in zip(names[1:], meshes[1:]):
        if f.shape != f0.shape or not np.array_equal(f, f0):
            raise InputError(f"{name}: another mesh topology ({len(v)} vertices, {len(f)} faces) than "
                             f"{names[0]} ({len(v0)}, {len(f0)}); fit every mesh with the same --subdivisions")
    for name, (v, _) in zip(names, meshes):
        if not np.all(np.isfinite(v)) or mesh.volume(v, f0) <= 0:
            raise InputError(f"{name}: not a closed, outward mesh with finite vertices")
    sizes = [float(np.sqrt(((v - v.mean(0)) ** 2).sum(1).mean())) for v, _ in meshes]
    shapes = [_normalise(v0)] + [_normalise(correspond(v0, v, f0)) for v, _ in meshes[1:]]
    mean, modes, var = _statistics(shapes, max_modes)
    prior = ShapePrior(mean, modes, var, f0.copy(), structure, float(np.mean(sizes)), len(meshes))
    if tune and len(meshes) > MIN_MESHES:
        prior.normal_pull, prior.tuning = tune_normal_pull(shapes, [v for v, _ in meshes], f0, max_modes)
    return prior


def _statistics(shapes: list[np.ndarray], max_modes: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generalised Procrustes and PCA of corresponded, normalised shapes (K of (V, 3)): the mean (V, 3),
    the modes (M, V, 3) and their variances (M,)."""
    mean = shapes[0]
    for _ in range(10):  # generalised Procrustes: align every shape to the mean, re-estimate the mean
        aligned = []
        for x in shapes:
            _, rot, _ = similarity(x, mean)
            aligned.append(_normalise(x @ rot.T))
        new = _normalise(np.mean(aligned, axis=0))
        done = np.abs(new - mean).max() < 1e-6
        mean = new
        if done:
            break
    data = np.stack([(a - mean).ravel() for a in aligned])  # (K, 3V)
    _, sv, vt = np.linalg.svd(data, full_matrices=False)
    var = sv ** 2 / (len(shapes) - 1)
    keep = int(np.sum(var > 1e-8 * max(var.sum(), 1e-30)))
    keep = min(keep, len(shapes) - 1, max_modes if max_modes is not None else len(shapes))
    return mean, vt[:keep].reshape(keep, len(mean), 3), var[:keep]


def tune_normal_pull(shapes: list[np.ndarray], meshes: list[np.ndarray], faces: np.ndarray,
                     max_modes: int | None = None) -> tuple[float, dict[str | float, float]]:
    """The normal_pull of :data:`PULLS` whose prior fits are closest to earlier fits they did not see.

    shapes: the fits corresponded and normalised (K of (V, 3)), meshes: the same fits as given (K of (V, 3),
    LPS mm), faces (F, 3). For each fit k, a prior of the others is fitted (ActiveSurface with it as rest
    shape) through the farthest-point samples of :data:`TUNE_CLICKS` of fit k's vertices (at most
    :data:`TUNE_FOLDS` fits k, spread over the list); error = mean
    symmetric distance between the two surfaces in units of fit k's RMS radius. Returns (the candidate of
    the lowest mean error, {candidate: mean error, "plain": the template without a prior}).
    """
    from .asm import ActiveSurface
    from .sampling import farthest_point_sampling

    level = int(_subdivisions(len(faces) // 2 + 2))
    errors: dict[str | float, list[float]] = {c: [] for c in (*PULLS, "plain")}
    for k in np.unique(np.linspace(0, len(meshes) - 1, min(len(meshes), TUNE_FOLDS)).round().astype(int)):
        truth = meshes[k]
        rest = _statistics([s for j, s in enumerate(shapes) if j != k], max_modes)
        others = ShapePrior(*rest, faces, "", 1.0, len(shapes) - 1)
        size = float(np.sqrt(((truth - truth.mean(0)) ** 2).sum(1).mean()))
        order = farthest_point_sampling(truth, max(TUNE_CLICKS))
        for n in TUNE_CLICKS:
            clicks = truth[order[:n]]
            for c in errors:
                options = {"normal_pull": c, "rest_shape": PriorRestShape(others)} if c != "plain" else {}
                fit = ActiveSurface(subdivisions=level, **options).fit(clicks).vertices
                d = (mesh.point_distances(fit, truth, faces).mean() + mesh.point_distances(truth, fit, faces).mean())
                errors[c].append(float(d) / (2 * size))
    mean = {c: float(np.mean(e)) for c, e in errors.items()}
    return min(PULLS, key=lambda c: mean[c]), mean


def prior_from_point_sets(point_sets: list[np.ndarray], structure: str, names: list[str] | None = None,
                          **fit_options) -> ShapePrior:
    """:func:`build_prior` from earlier objects' clicks (each (N, 3) LPS mm, ≥ 4 points): each fitted from
    scratch by :class:`~weaknet.asm.ActiveSurface` (``fit_options``, e.g. subdivisions), as a template is once
    its clicks pause. ``names`` label the sets in error messages."""
    from .asm import ActiveSurface

    names = names or [f"points {i + 1}" for i in range(len(point_sets))]
    if len(point_sets) < MIN_MESHES:
        raise InputError(f"a shape prior of {structure!r} needs at least {MIN_MESHES} earlier objects, got "
                         f"{len(point_sets)}")
    meshes = []
    for name, points in zip(names, point_sets):
        try:
            surface = ActiveSurface(**fit_options).fit(points)
        except InputError as exc:
            raise InputError(f"{name}: {exc}") from None
        meshes.append((surface.vertices, surface.faces))
    return build_prior(meshes, structure, names=names)


def prior_from_files(paths: list[str | Path], structure: str | None = None, max_modes: int | None = None
                     ) -> ShapePrior:
    """:func:`build_prior` from mesh files (.vtp, .vtk, .stl, .obj, .ply); ``structure`` defaults to the
    file names' common stem (trailing digits, '_' and '-' removed), or 'structure'."""
    paths = [Path(p) for p in paths]
    meshes = [mesh.read_mesh(p) for p in paths]
    if structure is None:
        stems = [p.name.split(".")[0] for p in paths]
        common = stems[0]
        for s in stems[1:]:
            while not s.startswith(common):
                common = common[:-1]
        structure = common.rstrip("0123456789_- ") or "structure"
    return build_prior(meshes, structure, max_modes, [str(p) for p in paths])
