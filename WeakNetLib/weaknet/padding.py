"""The one cropping/padding policy shared by training, validation and prediction.

A volume smaller than the patch along an axis is padded *centred* to the patch side; images are padded by
replicating their edge voxels (numpy ``edge``), labels with a constant (IGNORE for targets, 0 for weights).
Training additionally pads ``margin`` voxels on every side so that rotated/scaled patches can be resampled
from a region larger than the patch; the patch itself then still lies where a prediction window can lie.
Prediction pads exactly as training does with ``margin = 0``, runs the windows, and crops the pad away.
"""

from __future__ import annotations

import numpy as np


def pads_for(shape, patch, margin=0) -> list[tuple[int, int]]:
    """(before, after) voxels per axis that bring ``shape`` to at least ``patch`` (centred) plus ``margin``."""
    margin = (margin,) * 3 if np.isscalar(margin) else tuple(margin)
    out = []
    for s, p, m in zip(shape, patch, margin):
        extra = max(0, int(p) - int(s))
        out.append((int(m) + extra // 2, int(m) + extra - extra // 2))
    return out


def pad(array: np.ndarray, pads: list[tuple[int, int]], value: float | None = None) -> np.ndarray:
    """``array`` (D, H, W) padded by ``pads``: edge replication when ``value`` is None, else constant."""
    if not any(a or b for a, b in pads):
        return array
    if value is None:
        return np.pad(array, pads, mode="edge")
    return np.pad(array, pads, mode="constant", constant_values=value)


def crop(array: np.ndarray, pads: list[tuple[int, int]]) -> np.ndarray:
    """Undo :func:`pad` on the last three axes of ``array``."""
    sl = tuple(slice(a, array.shape[-3 + i] - b) for i, (a, b) in enumerate(pads))
    return array[(Ellipsis,) + sl]
