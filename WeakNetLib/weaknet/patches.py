"""Patch sampling and augmentation for training, deterministic from (seed, epoch).

Each epoch draws ``steps × batch × world_size`` patches from ``numpy.random.default_rng([seed, epoch])``,
so an interrupted epoch is replayed identically on resume and every DDP rank takes its own share of the
same global draw. A patch is centred on a foreground voxel of the target with probability
``foreground_fraction`` and on any labelled voxel otherwise, so batches see both object and background.
Augmentation: a flip of each axis with probability 0.5, then intensity ``x·s + b`` with s ∈ U(0.9, 1.1),
b ∈ U(−0.1, 0.1) (normalised units).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .loss import IGNORE
from .prepare import TrainingCase

_MAX_CENTRES = 200_000


@dataclass
class Batch:
    """image (B, 1, *patch) float32, target (B, *patch) int64, weight (B, 1, *patch) float32 or None."""

    image: np.ndarray
    target: np.ndarray
    weight: np.ndarray | None


class _Padded:
    """A case padded (image: its minimum, target: IGNORE, weight: 0) to at least the patch size."""

    def __init__(self, case: TrainingCase, patch: tuple[int, int, int]):
        short = [max(0, p - s) for p, s in zip(patch, case.image.shape)]
        pad = [(b // 2, b - b // 2) for b in short]
        self.image = np.pad(case.image, pad, constant_values=float(case.image.min()))
        self.target = np.pad(case.target, pad, constant_values=IGNORE)
        self.weight = None if case.weight is None else np.pad(case.weight, pad, constant_values=0.0)
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
    """Draws augmented training batches from prepared cases (padded once to the patch size)."""

    def __init__(self, cases: list[TrainingCase], patch: tuple[int, int, int], batch_size: int,
                 foreground_fraction: float = 0.5, augment: bool = True):
        self.patch = tuple(int(p) for p in patch)
        self.cases = [_Padded(c, self.patch) for c in cases]
        self.batch_size = batch_size
        self.fg_fraction = foreground_fraction
        self.augment = augment

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
        p = np.asarray(self.patch)
        start = np.clip(c - p // 2, 0, np.asarray(case.image.shape) - p)
        sl = tuple(slice(int(s), int(s + n)) for s, n in zip(start, p))
        img, tgt = case.image[sl], case.target[sl]
        w = None if case.weight is None else case.weight[sl]
        flips = rng.random(3) < 0.5
        scale, shift = rng.uniform(0.9, 1.1), rng.uniform(-0.1, 0.1)
        if self.augment:
            axes = tuple(int(a) for a in np.flatnonzero(flips))
            if axes:
                img, tgt = np.flip(img, axes), np.flip(tgt, axes)
                w = None if w is None else np.flip(w, axes)
            img = img * np.float32(scale) + np.float32(shift)
        return (np.ascontiguousarray(img, np.float32), np.ascontiguousarray(tgt),
                None if w is None else np.ascontiguousarray(w, np.float32))
