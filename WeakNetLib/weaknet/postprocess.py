"""Post-processing of predicted masks, chosen by the plan: ``largest`` keeps the largest face-connected
(6-neighbour) component (for structures that are one connected object in every training target), ``none`` keeps all."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

POSTPROCESS = ("largest", "none")


def largest_component(mask: np.ndarray) -> np.ndarray:
    """uint8 (D, H, W): the largest face-connected component of ``mask`` (all zeros when it is empty)."""
    parts, n = ndimage.label(np.asarray(mask) > 0)
    if n <= 1:
        return (parts > 0).astype(np.uint8)
    sizes = np.bincount(parts.ravel())[1:]
    return (parts == int(np.argmax(sizes)) + 1).astype(np.uint8)


def components(mask: np.ndarray) -> int:
    """Number of face-connected components of ``mask``."""
    return int(ndimage.label(np.asarray(mask) > 0)[1])


def apply(mask: np.ndarray, kind: str) -> np.ndarray:
    """``mask`` post-processed by ``kind`` (one of :data:`POSTPROCESS`)."""
    return largest_component(mask) if kind == "largest" else np.asarray(mask, np.uint8)
