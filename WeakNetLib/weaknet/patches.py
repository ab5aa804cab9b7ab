"""Patch sampling for training, deterministic from (seed, epoch).

Each epoch draws ``steps × batch × world_size`` patches from ``numpy.random.default_rng([seed, epoch])``,
so an interrupted epoch is replayed identically on resume and every DDP rank takes its own share of the
same global draw. A patch is centred on a foreground voxel of the target with probability
``foreground_fraction`` and on any labelled voxel otherwise, so batches see both object and background.
Cases are padded once by the shared policy of :mod:`weaknet.padding` (the same centred edge padding that
prediction uses, plus the augmentation margin); :mod:`weaknet.augment` turns each region into a patch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .augment import Augmenter
from .loss import IGNORE
from .padding import pad, pads_for
from .prepare import TrainingCase

_MAX_CENTRES = 200_000


@dataclass
class Batch:
    """image (B, 1, *patch) float32, target (B, *patch) int64, weight (B, 1, *patch) float32 or None."""

    image: np.ndarray
    target: np.ndarray
    weight: np.ndarray | None


class _Padded:
    """A case padded by the shared policy (image: edge, target: IGNORE, weight: 0) to at least the patch size
    plus ``margin`` voxels on every side."""

    def __init__(self, case: TrainingCase, patch: tuple[int, int, int], margin: tuple[int, int, int]):
        pads = pads_for(case.image.shape, patch, margin)
        self.image = pad(case.image, pads)
        self.target = pad(case.target, pads, IGNORE)
        self.weight = None if case.weight is None else pad(case.weight, pads, 0.0)
        rng = np.random.default_rng(0)
        fg = np.flatnonzero(self.target == 1)
        labelled = np.flatnonzero(self.target != IGNORE) if (self.target == IGNORE).any() else None
        self.fg = fg if fg.size <= _MAX_CENTRES else np.sort(rng.choice(fg, _MAX_CENTRES, replace=False))
        if labelled is not None and labelled.size > _MAX_CENTRES:
            labelled = np.sort(rng.choice(labelled, _MAX_CENTRES, replace=False))
        self.labelled = labelled

    def centre(self, rng: np.random.Generator, fg_fraction: float) -> np.ndarray:
        pool = self.fg if (self.fg.size and rng.random() < fg_fraction) else self.labelled
        if pool is None or pool.size == 0:
            return np.array([rng.integers(0, s) for s in self.image.shape])
        return np.array(np.unravel_index(pool[rng.integers(0, pool.size)], self.image.shape))


class PatchSampler:
    """Draws augmented training batches from prepared cases (padded once)."""

    def __init__(self, cases: list[TrainingCase], patch: tuple[int, int, int], batch_size: int,
                 foreground_fraction: float = 0.5, augment: bool = True, anisotropic: bool = False):
        self.patch = tuple(int(p) for p in patch)
        self.augmenter = Augmenter(self.patch, anisotropic=anisotropic, enabled=augment)
        self.region = tuple(p + 2 * m for p, m in zip(self.patch, self.augmenter.margin))
        self.cases = [_Padded(c, self.patch, self.augmenter.margin) for c in cases]
        self.batch_size = batch_size
        self.fg_fraction = foreground_fraction

    def epoch(self, seed: int, epoch: int, steps: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        """The ``steps`` batches of ``epoch`` for ``rank`` (identical on every call with the same arguments)."""
        rng = np.random.default_rng([seed, epoch])
        for _ in range(steps):
            items = [self._draw(rng) for _ in range(self.batch_size * world_size)]
            mine = items[rank * self.batch_size:(rank + 1) * self.batch_size]
            has_w = mine[0][2] is not None
            yield Batch(np.stack([m[0] for m in mine])[:, None],
                        np.stack([m[1] for m in mine]).astype(np.int64),
                        np.stack([m[2] for m in mine])[:, None] if has_w else None)

    def _draw(self, rng: np.random.Generator):
        case = self.cases[rng.integers(0, len(self.cases))]
        c = case.centre(rng, self.fg_fraction)
        r = np.asarray(self.region)
        start = np.clip(c - r // 2, 0, np.asarray(case.image.shape) - r)
        sl = tuple(slice(int(s), int(s + n)) for s, n in zip(start, r))
        w = None if case.weight is None else case.weight[sl]
        return self.augmenter(case.image[sl], case.target[sl], w, rng)
