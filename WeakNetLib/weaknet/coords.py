"""The one place that converts between Slicer's RAS and the LPS of files (DICOM, NIfTI via ITK, .mrk.json).

RAS = (Right, Anterior, Superior) and LPS = (Left, Posterior, Superior) differ by flipping the first two
axes, so the conversion is its own inverse. Everything in WeakNetLib works in LPS millimetres.
"""

from __future__ import annotations

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
"""(3, 3) matrix that maps LPS to RAS directions (and back: it is its own inverse)."""


def lps_to_ras(points: np.ndarray) -> np.ndarray:
    """Convert points (..., 3) in LPS mm to RAS mm."""
    pts = np.asarray(points, dtype=float)
    return pts * np.array([-1.0, -1.0, 1.0])


def ras_to_lps(points: np.ndarray) -> np.ndarray:
    """Convert points (..., 3) in RAS mm to LPS mm."""
    return lps_to_ras(points)


def lps_matrix_to_ras(matrix: np.ndarray) -> np.ndarray:
    """Convert a (4, 4) IJK→LPS affine into the IJK→RAS affine Slicer uses (and back)."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    return flip @ np.asarray(matrix, dtype=float)


ras_matrix_to_lps = lps_matrix_to_ras
