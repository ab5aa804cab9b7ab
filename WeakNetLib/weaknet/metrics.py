"""Segmentation metrics between a predicted and a true binary mask: IoU (the primary metric), Dice, and the
spacing-aware surface distances HD95 and mean (average symmetric) surface distance in mm.

Surface distances follow MONAI's convention (``compute_hausdorff_distance(percentile=95)``,
``compute_average_surface_distance(symmetric=True)``): surface voxels are the mask's voxels with a
6-connected background neighbour; distances run between voxel centres, in mm along each axis's spacing.
Computed with scipy's exact Euclidean distance transform, so no torch/MONAI import is needed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .volume import Geometry, Volume


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """|P ∩ T| / |P ∪ T| for two (D, H, W) masks; 1.0 when both are empty."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    union = np.logical_or(p, t).sum()
    return 1.0 if union == 0 else float(np.logical_and(p, t).sum() / union)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """2|P ∩ T| / (|P| + |T|) for two (D, H, W) masks; 1.0 when both are empty."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    total = p.sum() + t.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(p, t).sum() / total)


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def surface_distances(pred: np.ndarray, truth: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm: (pred surface → truth surface, truth surface → pred surface).

    spacing: (3,) mm in (x, y, z) order (ITK's), i.e. reversed against the (D, H, W) arrays.
    """
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    sp, st = _surface(p), _surface(t)
    sampling = tuple(float(s) for s in spacing)[::-1]
    to_t = ndimage.distance_transform_edt(~st, sampling=sampling)
    to_p = ndimage.distance_transform_edt(~sp, sampling=sampling)
    return to_t[sp], to_p[st]


def _surface_metrics(pred: np.ndarray, truth: np.ndarray, spacing) -> tuple[float, float]:
    """(HD95, mean symmetric surface distance) in mm; NaN for both if either mask is empty."""
    if not np.any(pred) or not np.any(truth):
        return float("nan"), float("nan")
    a, b = surface_distances(pred, truth, spacing)
    return float(max(np.percentile(a, 95), np.percentile(b, 95))), float((a.sum() + b.sum()) / (a.size + b.size))


def hd95(pred: np.ndarray, truth: np.ndarray, spacing) -> float:
    """95th-percentile symmetric Hausdorff distance in mm; NaN if either mask is empty."""
    return _surface_metrics(pred, truth, spacing)[0]


def mean_surface_distance(pred: np.ndarray, truth: np.ndarray, spacing) -> float:
    """Average symmetric surface distance in mm (mean of both directed sets); NaN if either mask is empty."""
    return _surface_metrics(pred, truth, spacing)[1]


def evaluate(pred: Volume | np.ndarray, truth: Volume | np.ndarray, geometry: Geometry | None = None) -> dict:
    """All metrics at once: {'iou', 'dice', 'hd95_mm', 'msd_mm'}.

    Pass Volumes (their geometries must match) or arrays plus the ``geometry`` giving the spacing
    (unit spacing if omitted).
    """
    if isinstance(truth, Volume):
        if isinstance(pred, Volume):
            truth.geometry.require_match(pred.geometry, "the prediction", "the true mask")
        geometry, truth = truth.geometry, truth.array
    pred = np.asarray(pred.array if isinstance(pred, Volume) else pred, bool)
    truth = np.asarray(truth, bool)
    hd, msd = _surface_metrics(pred, truth, geometry.spacing if geometry is not None else (1.0, 1.0, 1.0))
    return {"iou": iou(pred, truth), "dice": dice(pred, truth), "hd95_mm": hd, "msd_mm": msd}
