"""The model proposes: a template from a trained model's prediction, corrected by the annotator's clicks.

The predicted object (its largest component) is sampled on its surface (farthest-point ``anchors``) and an
Active Surface is fitted through them: the proposal, an ordinary editable template on the icosphere. Clicks
then correct it locally: the proposal is deformed through the clicks, each held exactly on the surface,
and every anchor farther than a radius from each click (the radius grows with how far the click lies off
the proposal, so a large correction carries its neighbourhood along), with the proposal as the rest shape
(:meth:`weaknet.asm.ActiveSurface.correct`: two steps at the coarsest and two at the finest stiffness
level, ≈ 5–10 ms; the fit from scratch through the same points it replaces took 0.5–2 s). Everything
that depends on the proposal only (k-d trees, correspondences of anchors and vertices) is made once.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .asm import ActiveSurface
from .errors import InputError
from .mesh import point_distances
from .postprocess import largest_component
from .volume import Volume


class Proposal:
    """A template proposed from a predicted mask (uint8 (D, H, W) :class:`Volume`, 1 = object).

    anchors: surface samples of the prediction (LPS mm) kept where no click overrides them; radius_mm:
    the smallest neighbourhood a click frees of anchors (default 1.5 × the anchors' typical spacing);
    reach: the radius grows to ``reach`` × the click's distance from the proposal. ``options`` go to
    :class:`~weaknet.asm.ActiveSurface`. ``surface`` holds the current fit (the proposal before any click).
    """

    def __init__(self, predicted: Volume, anchors: int = 300, radius_mm: float | None = None,
                 reach: float = 2.0, **options) -> None:
        from .sampling import sample_surface_points

        mask = largest_component(predicted.array)
        if mask.sum() < 8:
            raise InputError("the model found no object in this volume (empty prediction); start from clicks")
        self.anchors = sample_surface_points(mask, predicted.geometry, min(anchors, int(mask.sum())))
        self.reach = reach
        self._options = options
        self.base = ActiveSurface(**options).fit(self.anchors)
        self._prepare(self.base.vertices)
        self.radius_mm = 1.5 * self._spacing if radius_mm is None else float(radius_mm)

    def arrays(self) -> dict[str, np.ndarray]:
        """What :meth:`restore` needs, as plain arrays (e.g. for ``np.savez``): ``anchors`` (M, 3) and
        ``vertices`` (V, 3) LPS mm, ``radius_mm`` and ``reach`` (0-d)."""
        return {"anchors": self.anchors, "vertices": self.vertices, "radius_mm": np.asarray(self.radius_mm),
                "reach": np.asarray(self.reach)}

    @classmethod
    def restore(cls, anchors: np.ndarray, vertices: np.ndarray, radius_mm: float, reach: float = 2.0,
                **options) -> "Proposal":
        """The proposal saved by :meth:`arrays` (no prediction needed): the same anchors, proposal mesh and
        radii, so the same clicks give the same template. ``options`` as for the constructor; InputError when
        ``vertices`` (V, 3) do not fit the icosphere these options make."""
        self = cls.__new__(cls)
        self.anchors = np.asarray(anchors, float).reshape(-1, 3)
        self.radius_mm, self.reach, self._options = float(radius_mm), float(reach), options
        self.base = ActiveSurface(**options)
        vertices = np.asarray(vertices, float)
        if vertices.shape != self.base.unit.shape:
            raise InputError(f"a saved proposal has {len(vertices)} vertices, these fit options make "
                             f"{len(self.base.unit)}: start the object from the model again")
        self.base.vertices, self.base.points = vertices.copy(), self.anchors
        self._prepare(vertices)
        return self

    def _prepare(self, vertices: np.ndarray) -> None:
        """Take ``vertices`` (V, 3) LPS mm as the proposal mesh and make what every correction re-uses: k-d
        trees of its vertices and face centres, each anchor's nearest vertex (M,) and each vertex's nearest
        anchor (V,), the anchors' typical spacing (mm) and the surface that corrections deform from it."""
        self.vertices, self.faces, self.surface = vertices.copy(), self.base.faces, self.base
        self._centres = cKDTree(self.vertices[self.faces].mean(axis=1))
        self._vertex_tree = cKDTree(self.vertices)
        self._anchor_vertex = self._vertex_tree.query(self.anchors)[1]
        anchor_tree = cKDTree(self.anchors)
        self._vertex_anchor = anchor_tree.query(self.vertices)[1]
        self._spacing = float(np.median(anchor_tree.query(self.anchors, k=2)[0][:, 1]))
        corrector = ActiveSurface(rest_shape=lambda _: self.vertices, **self._options)
        corrector.template, corrector.rest, corrector.vertices = (self.vertices.copy() for _ in range(3))
        corrector.points = self.anchors
        self._corrector = corrector

    def kept(self, clicks: np.ndarray) -> np.ndarray:
        """(M,) bool: the anchors outside every click's radius, for clicks (N, 3) LPS mm."""
        clicks = np.asarray(clicks, float).reshape(-1, 3)
        if not len(clicks):
            return np.ones(len(self.anchors), bool)
        off = point_distances(clicks, self.vertices, self.faces, centres=self._centres)
        radius = np.maximum(self.radius_mm, self.reach * off)
        d = np.linalg.norm(self.anchors[:, None, :] - clicks[None], axis=2)
        return np.all(d > radius[None], axis=1)

    def points_for(self, clicks: np.ndarray) -> np.ndarray:
        """(M, 3) LPS mm the template is fitted through: the clicks (N, 3), then every anchor outside each
        click's radius."""
        clicks = np.asarray(clicks, float).reshape(-1, 3)
        return np.concatenate([clicks, self.anchors[self.kept(clicks)]])

    def update(self, clicks: np.ndarray) -> ActiveSurface:
        """The template for the current clicks (N, 3) LPS mm: the proposal deformed through the clicks, held
        exactly, and the anchors kept (:meth:`ActiveSurface.correct`; the same clicks always give the same
        template, whatever came before). Without clicks: the proposal itself (:attr:`base`)."""
        clicks = np.asarray(clicks, float).reshape(-1, 3)
        if not len(clicks):
            return self.base
        keep = self.kept(clicks)
        n = len(clicks)
        renumber = np.full(len(self.anchors), -1)  # anchor index → index among the points (-1: freed)
        renumber[keep] = n + np.arange(int(keep.sum()))
        vertex = np.concatenate([self._vertex_tree.query(clicks)[1], self._anchor_vertex[keep]])
        self.surface = self._corrector.correct(np.concatenate([clicks, self.anchors[keep]]), n,
                                               nearest=renumber[self._vertex_anchor], vertex=vertex,
                                               spacing=self._spacing)
        return self.surface
