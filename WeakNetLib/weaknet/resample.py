"""Resampling volumes to a common voxel spacing and back onto an exact input geometry (SimpleITK).

Resampled grids keep the input's origin and direction; only spacing and size change, so the physical
extent is preserved (size' = round(size · spacing / spacing')).
"""

from __future__ import annotations

import numpy as np

from .volume import Geometry, Volume, from_sitk, to_sitk


def common_spacing(geometries: list[Geometry], tol: float = 1e-3) -> tuple[float, float, float] | None:
    """Median spacing (x, y, z) mm when the geometries' spacings differ, ``None`` when they all agree."""
    sp = np.array([g.spacing for g in geometries], dtype=float)
    if np.allclose(sp, sp[0], rtol=tol, atol=0):
        return None
    return tuple(float(v) for v in np.median(sp, axis=0))


def spacing_geometry(geometry: Geometry, spacing) -> Geometry:
    """The grid covering ``geometry``'s extent with voxel ``spacing`` (x, y, z) mm, same origin/direction."""
    size = np.maximum(1, np.round(np.asarray(geometry.size) * np.asarray(geometry.spacing)
                                  / np.asarray(spacing))).astype(int)
    return Geometry.create(size, spacing, geometry.origin, geometry.direction_matrix)


def resample(volume: Volume, geometry: Geometry, interpolation: str = "linear", default: float = 0.0) -> Volume:
    """Resample ``volume`` onto ``geometry``; ``interpolation`` is 'linear' or 'nearest'.

    Returns ``volume`` itself when the geometries already match.
    """
    import SimpleITK as sitk

    if volume.geometry.matches(geometry):
        return volume
    ref = sitk.Image([int(s) for s in geometry.size], sitk.sitkUInt8)
    ref.SetSpacing(geometry.spacing)
    ref.SetOrigin(geometry.origin)
    ref.SetDirection(geometry.direction)
    interp = sitk.sitkLinear if interpolation == "linear" else sitk.sitkNearestNeighbor
    src = volume
    if interpolation == "linear" and not np.issubdtype(volume.array.dtype, np.floating):
        src = volume.like(volume.array.astype(np.float32))
    out = sitk.Resample(to_sitk(src), ref, sitk.Transform(), interp, float(default))
    return from_sitk(out)
