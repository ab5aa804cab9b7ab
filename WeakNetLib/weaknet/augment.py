"""Training augmentation of the kind nnU-Net users expect, built from MONAI's transforms (not hand-written).

Per patch, each with its own probability: rotation and scaling (in-plane only when the spacing is
anisotropic, max/min > 3), elastic deformation, Gaussian noise, Gaussian blur, brightness (multiplicative),
gamma, low-resolution simulation, and mirroring of every axis. Spatial transforms resample a region that is
``margin`` voxels larger than the patch on every side (see :mod:`weaknet.padding`) down to the patch, so
rotations bring in real context instead of fill values; the target keeps IGNORE through nearest
interpolation.

Deterministic: every transform's random state is seeded from the sampler's generator, which is seeded by
(seed, epoch), so a resumed epoch draws the same patches bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

_P_SPATIAL, _P_ELASTIC = 0.25, 0.1


def margin_for(patch) -> tuple[int, int, int]:
    """Extra voxels per side that a rotated/scaled patch may sample from: 1/8 of each side, at least 2."""
    return tuple(max(2, int(p) // 8) for p in patch)


class Augmenter:
    """Callable ``(image, target, weight or None, rng) → (image, target, weight)`` on regions of shape
    ``patch + 2·margin`` (float32 / uint8 / float32 (D, H, W)), returning arrays of shape ``patch``."""

    def __init__(self, patch, anisotropic: bool = False, enabled: bool = True):
        from monai.data import set_track_meta
        from monai.transforms import (RandAdjustContrast, RandAffined, Rand3DElasticd, RandFlipd, RandGaussianNoise,
                                      RandGaussianSmooth, RandScaleIntensity, RandSimulateLowResolution)

        set_track_meta(False)
        self.patch = tuple(int(p) for p in patch)
        self.margin = margin_for(self.patch)
        self.enabled = enabled
        rot = (math.pi, 0.0, 0.0) if anisotropic else (math.pi / 6,) * 3
        keys, modes = ("image", "target", "weight"), ("bilinear", "nearest", "nearest")
        self._spatial = [
            RandAffined(keys=keys, prob=1.0, rotate_range=rot, scale_range=(0.15,) * 3, spatial_size=self.patch,
                        mode=modes, padding_mode="border", allow_missing_keys=True),
            Rand3DElasticd(keys=keys, prob=1.0, sigma_range=(5.0, 7.0), magnitude_range=(30.0, 90.0),
                           spatial_size=self.patch, mode=modes, padding_mode="border", allow_missing_keys=True)]
        self._intensity = [
            (0.15, RandGaussianNoise(prob=1.0, std=0.1)),
            (0.2, RandGaussianSmooth(prob=1.0, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0))),
            (0.15, RandScaleIntensity(prob=1.0, factors=0.25)),
            (0.3, RandAdjustContrast(prob=1.0, gamma=(0.7, 1.5))),
            (0.25, RandSimulateLowResolution(prob=1.0, zoom_range=(0.5, 1.0))),
        ]
        self._flip = [RandFlipd(keys=keys, prob=1.0, spatial_axis=a, allow_missing_keys=True) for a in range(3)]

    def __call__(self, image: np.ndarray, target: np.ndarray, weight: np.ndarray | None,
                 rng: np.random.Generator):
        draws = rng.random(3 + len(self._intensity) + 3)
        seeds = rng.integers(0, 2 ** 31 - 1, size=2 + len(self._intensity))
        if not self.enabled:
            return self._centre(image), self._centre(target), None if weight is None else self._centre(weight)
        data = {"image": image[None], "target": target[None].astype(np.float32)}
        if weight is not None:
            data["weight"] = weight[None]
        if draws[0] < _P_SPATIAL or draws[1] < _P_ELASTIC:
            t = self._spatial[1] if draws[1] < _P_ELASTIC else self._spatial[0]
            t.set_random_state(seed=int(seeds[0]))
            data = t(data)
        else:
            data = {k: self._centre(v) for k, v in data.items()}
        img = data["image"]
        for j, (p, t) in enumerate(self._intensity):
            if draws[3 + j] < p:
                t.set_random_state(seed=int(seeds[2 + j]))
                img = t(img)
        data["image"] = img
        for a in range(3):
            if draws[3 + len(self._intensity) + a] < 0.5:
                data = self._flip[a](data)
        out = [np.ascontiguousarray(np.asarray(data["image"], np.float32)[0]),
               np.ascontiguousarray(np.asarray(data["target"])[0].round().astype(np.uint8)),
               None if weight is None else np.ascontiguousarray(np.asarray(data["weight"], np.float32)[0])]
        return tuple(out)

    def _centre(self, a):
        sl = tuple(slice(m, m + p) for m, p in zip(self.margin, self.patch))
        return a[(Ellipsis,) + sl]
