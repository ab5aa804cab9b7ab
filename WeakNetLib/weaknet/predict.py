"""Predict with a trained Weak-Net: sliding-window inference of the core net with Gaussian overlap blending,
thresholded at γ, post-processed as planned (largest component or none), returned on the input's exact grid.

Steps: resample the input to the model's training spacing (if it has one) → normalise as in training →
sliding windows of the training patch size (MONAI ``sliding_window_inference``, foreground probability
only), averaged over the 8 mirrorings of the volume when the model's ``tta`` is on (nnU-Net's test-time
augmentation, 8× the inference time) → resample the probability back to the input geometry (linear) →
mask = probability ≥ γ.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_weights, read_model_json
from .config import NetConfig
from .device import autocast, resolve_device
from .errors import InputError
from .filenames import VOLUME_SUFFIXES
from .nets import build_unet
from . import postprocess
from .normalize import Normalization
from .padding import crop, pad, pads_for
from .resample import resample, spacing_geometry
from .volume import Volume, read_volume, write_volume


@dataclass
class LoadedModel:
    """A core net ready for inference plus what model.json says about preprocessing."""

    core: torch.nn.Module
    info: dict
    normalization: Normalization
    spacing: tuple[float, float, float] | None
    patch: tuple[int, int, int]
    gamma: float
    overlap: float
    device: torch.device
    postprocess: str = "none"
    tta: bool = True


def load_model(model_dir: str | Path, device: str = "auto") -> LoadedModel:
    """Read ``model.json`` + ``model.safetensors`` of a model directory (clear error if missing/corrupt)."""
    from .checkpoint import ModelError

    info = read_model_json(Path(model_dir))
    cfg = info["config"]
    net_cfg = NetConfig(**info["net"])
    dev = resolve_device(device)
    core = build_unet(net_cfg, 1, 2)
    try:
        core.load_state_dict(load_weights(Path(model_dir), "core"))
    except RuntimeError as exc:
        raise ModelError(f"{model_dir}: weights do not fit the net in model.json "
                         f"({str(exc).splitlines()[0][:120]})") from None
    core.to(dev).eval()
    sp = info.get("spacing")
    return LoadedModel(core, info, Normalization.from_dict(info["normalization"]),
                       tuple(sp) if sp else None, tuple(cfg["patch"]), float(cfg["gamma"]),
                       float(cfg.get("overlap", 0.25)), dev, cfg.get("postprocess") or "none",
                       bool(cfg.get("tta", True)))


MIRRORS = tuple(axes for r in range(4) for axes in itertools.combinations(range(3), r))  # all 8 flips of (D, H, W)


def foreground_probability(core: torch.nn.Module, image: np.ndarray, patch, overlap: float,
                           device: torch.device, sw_batch_size: int = 2, amp: bool = True,
                           mirror: bool = False) -> np.ndarray:
    """Sliding-window foreground probability (D, H, W) float32 of a normalised image (D, H, W).

    An image smaller than the patch is padded by the training policy (:mod:`weaknet.padding`) first, so the
    net sees what it saw in training; windows then never need MONAI's own padding. ``mirror``: the mean of
    the probabilities of the 8 mirrored images (each flipped back), as training mirrors every axis.
    """
    if mirror:
        acc = np.zeros(np.shape(image), np.float32)
        for axes in MIRRORS:
            flipped = np.ascontiguousarray(np.flip(image, axes)) if axes else image
            prob = foreground_probability(core, flipped, patch, overlap, device, sw_batch_size, amp)
            acc += np.flip(prob, axes) if axes else prob
        return acc / len(MIRRORS)
    from monai.inferers import sliding_window_inference

    pads = pads_for(image.shape, patch)
    image = pad(np.asarray(image, np.float32), pads)

    def fg(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, amp):
            logits = core(x)
        return torch.softmax(logits.float(), dim=1)[:, 1:2]

    x = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None, None].to(device)
    with torch.inference_mode():
        prob = sliding_window_inference(x, tuple(patch), sw_batch_size, fg, overlap=overlap, mode="gaussian")
    return np.ascontiguousarray(crop(prob[0, 0].float().cpu().numpy(), pads))


def predict_volume(model: str | Path | LoadedModel, volume: Volume, gamma: float | None = None,
                   device: str = "auto", tta: bool | None = None) -> tuple[Volume, Volume]:
    """Segment ``volume``: (mask uint8 0/1, foreground probability float32), both on ``volume``'s grid.
    ``tta`` None = the model's setting (mirroring test-time augmentation)."""
    m = model if isinstance(model, LoadedModel) else load_model(model, device)
    g = m.gamma if gamma is None else float(gamma)
    if not 0.0 < g < 1.0:
        raise InputError(f"gamma must lie strictly between 0 and 1, got {g}")
    work = volume if m.spacing is None else resample(volume, spacing_geometry(volume.geometry, m.spacing))
    prob = foreground_probability(m.core, m.normalization.apply(work.array), m.patch, m.overlap, m.device,
                                  mirror=m.tta if tta is None else bool(tta))
    prob_vol = resample(Volume(prob, work.geometry), volume.geometry, "linear")
    p = np.clip(prob_vol.array.astype(np.float32), 0.0, 1.0)
    return volume.like(postprocess.apply(p >= g, m.postprocess)), volume.like(p)


def _outputs_for(image: Path, output: Path, probabilities: Path | None, folder: bool):
    if not folder:
        return [(image, output, probabilities)]
    files = sorted(f for f in image.iterdir() if f.name.lower().endswith(VOLUME_SUFFIXES))
    if not files:
        raise InputError(f"{image}: folder holds no volumes ({', '.join(VOLUME_SUFFIXES)})")
    return [(f, output / f.name, probabilities / f.name if probabilities else None) for f in files]


def predict_files(model_dir: str | Path, image: str | Path, output: str | Path,
                  probabilities: str | Path | None = None, gamma: float | None = None,
                  device: str = "auto", progress=None, tta: bool | None = None) -> list[Path]:
    """Predict one image file (or every volume in a folder) and write masks (and probabilities).

    A folder input writes into the ``output`` folder under the same file names. Returns the mask paths.
    progress: called with event dicts — {"event": "start", "images"}, after each image {"event": "step",
    "step", "steps", "image", "mask"}, then {"event": "done", "masks"} (paths as strings). ``tta``: see
    :func:`predict_volume`.
    """
    emit = progress or (lambda e: None)
    image, output = Path(image), Path(output)
    probabilities = Path(probabilities) if probabilities else None
    if not image.exists():
        raise InputError(f"{image}: no such image file or folder")
    jobs = _outputs_for(image, output, probabilities, image.is_dir() and not _is_dicom_folder(image))
    m = load_model(model_dir, device)
    emit({"event": "start", "images": len(jobs)})
    written = []
    for i, (src, dst, pdst) in enumerate(jobs):
        mask, prob = predict_volume(m, read_volume(src), gamma, tta=tta)
        written.append(write_volume(mask, dst))
        if pdst is not None:
            write_volume(prob, pdst)
        emit({"event": "step", "step": i + 1, "steps": len(jobs), "image": str(src), "mask": str(written[-1])})
    emit({"event": "done", "masks": [str(w) for w in written]})
    return written


def _is_dicom_folder(folder: Path) -> bool:
    return any(f.suffix.lower() == ".dcm" for f in folder.iterdir())
