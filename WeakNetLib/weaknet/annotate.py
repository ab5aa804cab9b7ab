"""Simulated annotation (the paper's protocol) and annotation effort.

- Points: N points spread evenly on the true surface (farthest-point sampling, :mod:`weaknet.sampling`),
  optional jitter; on a label of instances (values 1..K: every nucleus of a volume), N points on each
  instance of at least :data:`MIN_INSTANCE_VOXELS` voxels, one template each.
- Slices (the baseline): slices chosen at random among those of the three index planes that cut the
  object, each fully labelled.
- Effort, in voxels of drawn boundary: a clicked point counts 1; a labelled slice counts its contour
  length (pixels of the object's 2-D perimeter, 4-neighbourhood estimate of scikit-image); full annotation
  counts the contours of every slice that cuts the object, averaged over the three planes (a volume is
  annotated slice by slice along one of them). Efforts are reported as % of full annotation, as in the
  paper's Table 1.

Planes name fixed index axes: 'axial' = fixed k (array axis 0), 'coronal' = fixed j (axis 1),
'sagittal' = fixed i (axis 2).
"""

from __future__ import annotations

import numpy as np

from .dataset import SLICE_AXES as PLANES
from .errors import InputError
from .volume import Volume


def simulate_points(label: Volume, n: int, seed: int = 0, jitter_mm: float = 0.0) -> np.ndarray:
    """(n, 3) LPS mm: ``n`` points spread evenly over the surface of ``label`` (uint8 (D, H, W) mask)."""
    from .sampling import sample_surface_points

    if not np.any(label.array):
        raise InputError("cannot place points on an empty mask")
    return sample_surface_points(label.array, label.geometry, n, seed=seed, jitter_mm=jitter_mm)


MIN_INSTANCE_VOXELS = 20
"""Instances smaller than this (a nucleus cut by the volume's edge) get no points: too small to click."""


def simulate_instance_points(label: Volume, n: int, seed: int = 0, jitter_mm: float = 0.0) -> list[np.ndarray]:
    """N points (n, 3) LPS mm on each object of ``label`` (uint (D, H, W): 0 background, each other value one
    object; a binary mask is one object and gets exactly :func:`simulate_points`' points), objects of fewer
    than :data:`MIN_INSTANCE_VOXELS` voxels left out; in the order of their values."""
    values, counts = np.unique(label.array[label.array > 0], return_counts=True)
    if not len(values):
        raise InputError("cannot place points on an empty mask")
    sets = []
    for j, v in enumerate(values):
        if counts[j] >= MIN_INSTANCE_VOXELS or len(values) == 1:
            one = label.like((label.array == v).astype(np.uint8))
            sets.append(simulate_points(one, n, seed=seed + 7 * j, jitter_mm=jitter_mm))
    if not sets:
        raise InputError(f"no object of the label has {MIN_INSTANCE_VOXELS} voxels or more to place points on "
                         f"({len(values)} smaller ones)")
    return sets


def _plane_slice(plane: str, index: int) -> tuple:
    if plane not in PLANES:
        raise InputError(f"unknown slice plane {plane!r}; use one of {', '.join(PLANES)}")
    sl = [slice(None)] * 3
    sl[PLANES[plane]] = int(index)
    return tuple(sl)


def choose_slices(mask: np.ndarray, count: int, seed: int = 0) -> list[tuple[str, int]]:
    """``count`` distinct (plane, index) slices cutting the object, drawn at random from the three planes.

    Planes are drawn in turn from a random permutation (so 3 slices give one per plane), indices uniformly
    among those whose slice holds part of the (D, H, W) ``mask``.
    """
    mask = np.asarray(mask, bool)
    rng = np.random.default_rng(seed)
    candidates = {p: list(np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax))))
                  for p, ax in PLANES.items()}
    if not any(candidates.values()):
        raise InputError("cannot choose slices of an empty mask")
    order = [list(PLANES)[i] for i in rng.permutation(3)]
    chosen: list[tuple[str, int]] = []
    turn = 0
    while len(chosen) < count and any(candidates.values()):
        plane = order[turn % 3]
        turn += 1
        if candidates[plane]:
            chosen.append((plane, int(candidates[plane].pop(int(rng.integers(len(candidates[plane])))))))
    return chosen


def slices_mask(shape, slices: list[tuple[str, int]]) -> np.ndarray:
    """bool (D, H, W): True on every voxel of the labelled slices (where the label is known)."""
    known = np.zeros(shape, bool)
    for plane, index in slices:
        known[_plane_slice(plane, index)] = True
    return known


def contour_length(mask2d: np.ndarray) -> float:
    """Perimeter of a 2-D mask in pixels (scikit-image, 4-neighbourhood)."""
    from skimage.measure import perimeter

    m = np.asarray(mask2d, bool)
    return float(perimeter(np.pad(m, 1), neighborhood=4)) if m.any() else 0.0


def slices_effort(mask: np.ndarray, slices: list[tuple[str, int]]) -> float:
    """Summed contour length (pixels) of the object in the given slices of the (D, H, W) ``mask``."""
    return sum(contour_length(np.asarray(mask)[_plane_slice(p, i)]) for p, i in slices)


def full_effort(mask: np.ndarray) -> float:
    """Contour length (pixels) of labelling every slice, averaged over the three planes."""
    mask = np.asarray(mask, bool)
    per_plane = [sum(contour_length(np.take(mask, i, axis=ax)) for i in range(mask.shape[ax]))
                 for ax in PLANES.values()]
    return float(np.mean(per_plane))


def points_effort(n: int) -> float:
    """Effort of clicking ``n`` surface points: one unit (voxel of boundary) each."""
    return float(n)


def effort_percent(effort: float, full: float) -> float:
    """Effort as % of full annotation."""
    return 100.0 * effort / full if full > 0 else float("nan")
