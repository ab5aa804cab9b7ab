"""The model proposes: a template from a trained model's prediction, corrected by the annotator's clicks.

The predicted object (its largest component) is sampled on its surface (farthest-point ``anchors``) and an
Active Surface is fitted through them: the proposal, an ordinary editable template on the icosphere. Clicks
then correct it locally: the template is re-fitted through the clicks plus every anchor farther than a
radius from each click (the radius grows with how far the click lies off the proposal, so a large
correction carries its neighbourhood along), with the proposal as the rest shape.
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
        spacing = float(np.median(cKDTree(self.anchors).query(self.anchors, k=2)[0][:, 1]))
        self.radius_mm = 1.5 * spacing if radius_mm is None else float(radius_mm)
        self.reach = reach
        self._options = options
        self.base = ActiveSurface(**options).fit(self.anchors)
        self.vertices = self.base.vertices.copy()  # the proposal mesh (V, 3): the rest shape of corrections
        self.faces = self.base.faces
        self.surface = self.base

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
        self.vertices, self.faces, self.surface = vertices.copy(), self.base.faces, self.base
        return self

    def points_for(self, clicks: np.ndarray) -> np.ndarray:
        """(M, 3) LPS mm the template is fitted through: the clicks (N, 3), then every anchor outside each
        click's radius."""
        clicks = np.asarray(clicks, float).reshape(-1, 3)
        if not len(clicks):
            return self.anchors
        off = point_distances(clicks, self.vertices, self.faces)
        radius = np.maximum(self.radius_mm, self.reach * off)
        d = np.linalg.norm(self.anchors[:, None, :] - clicks[None], axis=2)
        keep = np.all(d > radius[None], axis=1)
        return np.concatenate([clicks, self.anchors[keep]])

    def update(self, clicks: np.ndarray) -> ActiveSurface:
        """Re-fit the template for the current clicks (N, 3) LPS mm: a fit with the proposal as rest shape
        (two passes, so the template reaches the clicks however far they lie off the proposal). Without
        clicks: the proposal itself (:attr:`base`)."""
        if not len(np.asarray(clicks).reshape(-1, 3)):
            return self.base
        if self.surface is self.base:
            self.surface = ActiveSurface(rest_shape=lambda _: self.vertices, **self._options)
        return self.surface.fit(self.points_for(clicks))
