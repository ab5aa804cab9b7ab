"""The Weak-Net loss  L = CE(Y, Ŷ) + λ · Σ W · (X − X̂)²  and its boundary weight map W.

Reductions (exactly):
* CE: mean over the voxels whose target is not ``IGNORE`` (255), over the whole batch.
* Weighted reconstruction term: **sum** over the voxels of each patch, then mean over the batch, i.e.
  ``wmse = (1/B) Σ_b Σ_v W_bv (X_bv − X̂_bv)²``. The default λ = 1e-4 is therefore tied to the patch
  size: for a 64³ patch (262 144 voxels) it equals a mean-reduced weight of λ·64³ ≈ 26.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IGNORE = 255


def boundary_weight(signed_distance: np.ndarray, distance_mm: float, near: float = 1.0,
                    far: float = 0.1) -> np.ndarray:
    """W (D, H, W) float32: ``near`` where |signed distance| ≤ ``distance_mm`` (mm), ``far`` elsewhere."""
    return np.where(np.abs(signed_distance) <= distance_mm, near, far).astype(np.float32)


def weaknet_loss(logits: torch.Tensor, target: torch.Tensor, image: torch.Tensor,
                 recon: torch.Tensor | None, weight: torch.Tensor | None, lambda_: float):
    """Return (total, ce, wmse) scalar tensors.

    logits (B, 2, D, H, W); target (B, D, H, W) int64 in {0, 1, IGNORE}; image, recon, weight
    (B, 1, D, H, W). ``wmse`` is zero when ``recon`` is None. A batch without labelled voxels gives CE 0.
    """
    logits = logits.float()
    if bool((target != IGNORE).any()):
        ce = F.cross_entropy(logits, target, ignore_index=IGNORE)
    else:
        ce = logits.sum() * 0.0
    if recon is None or lambda_ == 0:
        wmse = ce.new_zeros(())
    else:
        wmse = (weight * (image.float() - recon.float()) ** 2).sum() / image.shape[0]
    return ce + lambda_ * wmse, ce, wmse
