"""Template masks from clicked points: fit an :class:`~weaknet.asm.ActiveSurface` and rasterize it into an
image's grid. This is the weak label Y that Weak-Net trains on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .asm import ActiveSurface
from .points import validate_points
from .rasterize import rasterize_mesh, signed_distance
from .volume import Geometry, Volume


@dataclass
class Template:
    """A fitted template: mask uint8 (D, H, W) in ``geometry``, mesh vertices (V, 3) LPS mm, faces (F, 3)."""

    mask: np.ndarray
    vertices: np.ndarray
    faces: np.ndarray
    geometry: Geometry

    def signed_distance(self, band_mm: float | None = None) -> np.ndarray:
        """float32 (D, H, W) mm to the template boundary, negative inside
        (see :func:`weaknet.rasterize.signed_distance`)."""
        return signed_distance(self.mask, self.geometry, band_mm=band_mm)

    def click_distances(self, points_lps: np.ndarray) -> np.ndarray:
        """(N,) mm from each point (N, 3) LPS mm to the surface of the rasterized template (the mask's
        boundary, :func:`weaknet.sampling.surface_distances`): how closely the mask passes through the
        clicks."""
        from .sampling import surface_distances

        return surface_distances(points_lps, self.mask, self.geometry)

    def volume(self) -> Volume:
        """The mask as a :class:`Volume` with the image's geometry."""
        return Volume(self.mask, self.geometry)


def fit_template(points_lps: np.ndarray, geometry: Geometry, **options) -> Template:
    """Fit a template through points (N, 3) LPS mm and rasterize it into ``geometry``.

    ``options`` go to :class:`ActiveSurface` (e.g. ``subdivisions``, ``iterations``). Raises
    :class:`~weaknet.errors.InputError` for too few, duplicate, degenerate or outside-the-image points.
    """
    pts = validate_points(points_lps, geometry)
    surface = ActiveSurface(**options).fit(pts)
    mask = rasterize_mesh(surface.vertices, surface.faces, geometry)
    return Template(mask, surface.vertices, surface.faces, geometry)


def fit_templates(point_sets: list[np.ndarray], geometry: Geometry, **options) -> np.ndarray:
    """The union (uint8 (D, H, W) mask) of the templates fitted through each point set (N, 3) LPS mm: one
    template per object of a volume (:func:`fit_template`, ``options`` as there)."""
    mask = np.zeros(geometry.shape, np.uint8)
    for pts in point_sets:
        mask |= fit_template(pts, geometry, **options).mask
    return mask
