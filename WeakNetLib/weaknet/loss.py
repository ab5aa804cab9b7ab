"""The Weak-Net loss  L = S(Y, Ŷ) + λ · R  and its boundary weight map W, reduced so that one λ means the
same on every dataset. S is the paper's cross-entropy, plus (``dice=True``) nnU-Net's soft Dice.

Reductions (exactly), per patch b of a batch of B:

* CE: mean over the voxels whose target is not ``IGNORE`` (255), over the whole batch.
* Dice (optional): 1 − (2 Σ p·y + 1) / (Σ p + Σ y + 1) of the foreground probability p, summed over the
  labelled voxels of the whole batch ("batch Dice", so a patch without foreground does not dominate). It
  lifts the net out of the all-background start that CE alone sits in for the first hundreds of steps when
  the object is a few percent of the patch.
* R, the reconstruction term: the W-weighted squared error of X̂, divided by the W-weighted variance of the
  image X in the same patch, then averaged over the batch::

      R = (1/B) Σ_b [ Σ_v W_bv (X_bv − X̂_bv)² ] / [ Σ_v W_bv (X_bv − X̄_b)² ],   X̄_b = Σ_v W_bv X_bv / Σ_v W_bv

  i.e. the share of the image's variance in the band that X̂ fails to explain (1 − weighted R²): 0 for a
  perfect reconstruction, 1 for predicting the band's mean. It does not depend on the patch size, the
  intensity scale or the modality, so λ transfers between datasets.
* ``robust="cauchy"`` replaces the normalised squared residual u² = (X − X̂)² / var_W(X) by log(1 + u²) (the
  Cauchy/Lorentzian loss at scale one band standard deviation): the same for small residuals, growing only
  logarithmically for residuals the mask cannot explain (texture, a bias field, a distractor's own edges)::

      R = (1/B) Σ_b [ Σ_v W_bv log(1 + (X_bv − X̂_bv)² / var_b) ] / Σ_v W_bv

The reconstruction term's gradient into the core net can be capped relative to the segmentation term's
(``TrainConfig.recon_cap``; :class:`weaknet.nets.WeakNetPair` applies it at the logits).

Relation to the paper's λ_p ≈ 1e-4, whose terms are both *sums* over the voxels of raw intensities:
λ_p·Σ W(X − X̂)² / Σ CE = λ · R / CE  ⇔  λ = λ_p · ΣW·var_W(X) / N_voxels, e.g. for intensities of variance
≈ 300 in the band (8-bit images) and W averaging 0.3 over a patch, λ_p = 1e-4 corresponds to λ ≈ 0.01.
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
                 recon: torch.Tensor | None, weight: torch.Tensor | None, lambda_: float, dice: bool = False,
                 robust: str = "squared"):
    """Return (total, seg, wmse) scalar tensors: seg = CE (+ Dice when ``dice``), total = seg + λ·wmse.

    logits (B, 2, D, H, W); target (B, D, H, W) int64 in {0, 1, IGNORE}; image, recon, weight
    (B, 1, D, H, W). ``wmse`` is R above (zero when ``recon`` is None); ``robust``: "squared" or "cauchy".
    A batch without labelled voxels gives
    seg 0.
    """
    logits = logits.float()
    labelled = target != IGNORE
    if bool(labelled.any()):
        seg = F.cross_entropy(logits, target, ignore_index=IGNORE)
        if dice:
            p = torch.softmax(logits, 1)[:, 1][labelled]
            y = (target[labelled] == 1).float()
            seg = seg + 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
    else:
        seg = logits.sum() * 0.0
    if recon is None or lambda_ == 0:
        wmse = seg.new_zeros(())
    else:
        x, w = image.float(), weight.float()
        dims = tuple(range(1, x.ndim))
        wsum = w.sum(dims).clamp_min(1e-8)
        mean = (w * x).sum(dims, keepdim=True) / wsum.view(-1, *([1] * (x.ndim - 1)))
        var = (w * (x - mean) ** 2).sum(dims).clamp_min(1e-6 * wsum)
        sq = (x - recon.float()) ** 2
        if robust == "cauchy":
            shape = (-1, *([1] * (x.ndim - 1)))
            wmse = ((w * torch.log1p(sq * (wsum / var).view(shape))).sum(dims) / wsum).mean()
        else:
            wmse = ((w * sq).sum(dims) / var).mean()
    return seg + lambda_ * wmse, seg, wmse
