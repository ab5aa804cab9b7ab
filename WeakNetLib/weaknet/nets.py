"""The two 3D U-Nets of Weak-Net (MONAI ``UNet``), configurable in width and depth.

* core net: normalised image X (B, 1, D, H, W) → logits (B, 2, D, H, W) (background, foreground);
  Ŷ = softmax(logits)[:, 1:2].
* reconstruction net: Ŷ (B, 1, D, H, W) → X̂ (B, 1, D, H, W), in normalised intensity units: a U-Net of the
  same shape (``recon="unet"``, the paper's) or a small local net (``recon="local"``: three 3×3×3
  convolutions, a 7-voxel receptive field), which can render only the local geometry of the mask — an edge
  profile — and not texture or structures placed by the mask's global shape.

Spatial patch sides must be multiples of ``2 ** (depth - 1)`` (see :func:`patch_multiple`).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import RECON_NETS, NetConfig, patch_multiple

__all__ = ["RECON_NETS", "NetConfig", "WeakNetPair", "build_local_net", "build_unet", "patch_multiple"]


def build_unet(cfg: NetConfig, in_channels: int, out_channels: int) -> nn.Module:
    """One MONAI 3D ``UNet`` with the widths/depth of ``cfg``."""
    from monai.networks.nets import UNet

    if cfg.depth < 2:
        raise ValueError("U-Net depth must be at least 2")
    return UNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, channels=cfg.channels,
                strides=(2,) * (cfg.depth - 1), num_res_units=cfg.res_units, norm=cfg.norm.upper())


def build_local_net(width: int = 16) -> nn.Module:
    """Ŷ (B, 1, D, H, W) → X̂ (B, 1, D, H, W) through three 3×3×3 convolutions (receptive field 7 voxels)."""
    return nn.Sequential(nn.Conv3d(1, width, 3, padding=1), nn.LeakyReLU(0.01),
                         nn.Conv3d(width, width, 3, padding=1), nn.LeakyReLU(0.01),
                         nn.Conv3d(width, 1, 3, padding=1))


class _GradientCap(torch.autograd.Function):
    """Identity forward; backward scales the incoming gradient down to norm ``cap[0]`` when it is larger."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, cap: list) -> torch.Tensor:
        ctx.cap = cap
        return logits.view_as(logits)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        limit = ctx.cap[0]
        if limit is not None:
            norm = float(grad.float().norm())
            if norm > limit:
                grad = grad * (limit / norm)
        return grad, None


class WeakNetPair(nn.Module):
    """Core net plus (when ``with_reconstruction``) reconstruction net, as one module (one DDP wrapper).

    ``straight_through`` = γ feeds the reconstruction net the thresholded mask (Ŷ ≥ γ) with the gradient of
    Ŷ (straight-through estimator); ``None`` feeds the soft probability Ŷ. ``recon``: one of :data:`RECON_NETS`.
    :attr:`cap` bounds the reconstruction branch's gradient into the core net's logits (TrainConfig.recon_cap).

    ``forward(x)`` returns (logits (B, 2, D, H, W), X̂ (B, 1, D, H, W) or ``None``).
    """

    def __init__(self, cfg: NetConfig, with_reconstruction: bool = True, straight_through: float | None = None,
                 recon: str = "unet"):
        super().__init__()
        self.core = build_unet(cfg, 1, 2)
        self.recon = None
        if with_reconstruction:
            self.recon = build_local_net(cfg.base_channels) if recon == "local" else build_unet(cfg, 1, 1)
        self.straight_through = straight_through
        self.cap: list[float | None] = [None]
        """The largest norm the reconstruction branch's gradient into the logits may have in the coming backward
        pass (set by the trainer after the forward pass; None: no cap)."""

    def forward(self, x: torch.Tensor):
        logits = self.core(x)
        if self.recon is None:
            return logits, None
        prob = torch.softmax(_GradientCap.apply(logits, self.cap).float(), dim=1)[:, 1:2]
        if self.straight_through is not None:  # forward: the mask Ŷ ≥ γ; backward: gradient of Ŷ
            prob = prob + ((prob >= self.straight_through).float() - prob).detach()
        return logits, self.recon(prob.to(x.dtype))
