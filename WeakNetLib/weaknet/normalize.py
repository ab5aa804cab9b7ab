"""Per-modality intensity normalisation, fitted on the training images and stored in model.json.

* CT: clip to a window (the 0.5th–99.5th percentiles of all training voxels unless given), then
  z-score with the mean/std of the clipped training voxels (one transform for the whole dataset).
* MRI and EM: z-score each image by its own mean and standard deviation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class Normalization:
    """kind 'ct' (clip to [low, high], then (x − mean)/std) or 'zscore' (per image)."""

    kind: str
    low: float | None = None
    high: float | None = None
    mean: float | None = None
    std: float | None = None

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Normalise one image (any shape) → float32."""
        a = np.asarray(array, dtype=np.float32)
        if self.kind == "ct":
            return ((np.clip(a, self.low, self.high) - self.mean) / self.std).astype(np.float32)
        if self.kind == "zscore":
            mu, sd = float(a.mean()), float(a.std())
            return ((a - mu) / (sd if sd > 1e-8 else 1.0)).astype(np.float32)
        raise InputError(f"unknown normalisation {self.kind!r} in model.json")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "Normalization":
        return Normalization(**d)


def fit_normalization(arrays: list[np.ndarray], modality: str, window: tuple[float, float] | None = None,
                      max_samples: int = 2_000_000, seed: int = 0) -> Normalization:
    """Fit the normalisation of ``modality`` ('CT', 'MRI', 'EM') on the training image arrays."""
    if modality != "CT":
        return Normalization("zscore")
    rng = np.random.default_rng(seed)
    per = max(1, max_samples // max(1, len(arrays)))
    sample = np.concatenate([a.ravel() if a.size <= per else a.ravel()[rng.integers(0, a.size, per)]
                             for a in arrays]).astype(np.float64)
    lo, hi = window if window is not None else np.percentile(sample, [0.5, 99.5])
    clipped = np.clip(sample, lo, hi)
    sd = float(clipped.std())
    return Normalization("ct", float(lo), float(hi), float(clipped.mean()), sd if sd > 1e-8 else 1.0)
