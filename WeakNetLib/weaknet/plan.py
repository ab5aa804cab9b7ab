"""A self-configured training plan, in the spirit of nnU-Net: a dataset fingerprint → every setting the user
did not give (patch, depth, width, batch, epochs × steps from a time budget), printed at the start of
training and stored in model.json.

Rules (``fp`` = :class:`Fingerprint`, all shapes (D, H, W) voxels at the training spacing):

* patch: start from the median image shape; when it holds more voxels than the device's patch budget
  (CPU 32·48·48, GPU 128³), scale every side by the same factor down to the budget. Depth: as many levels
  as keep the smallest side ≥ 4 voxels at the bottom (2 … 5). Each side is then rounded to the nearest
  multiple of 2^(depth−1), never above the median image (there: rounded down), so a median-sized image
  needs no padding; a side shorter than that multiple is padded (the one policy of :mod:`weaknet.padding`).
  On a CPU the budget is time, not memory: a patch of 32·48·48 gives ~2.7× the optimiser steps of
  48·64·64 in the same minutes, and measured on the MRI family (median image 48×64×64) full supervision (lr 3e-3)
  reached test IoU 0.75 against 0.63 with the whole image as the patch (docs/training.md).
* width: 16 base filters on CPU/MPS, 32 on CUDA; batch 2 (nnU-Net's).
* budget: 10 minutes on CPU and MPS, 30 on CUDA, converted to optimiser steps with a fixed throughput
  estimate per device for the core net (so the reconstruction net of λ > 0, which roughly doubles the wall
  time, does not take steps away). Steps are a pure function of the plan, never of a measured speed, so a
  rerun trains the same model.
* full supervision (dense, exact masks) trains :data:`FULL_STEPS` × the budget's steps: its test IoU keeps rising
  with steps (MRI family 0.750 / 0.815 / 0.841 / 0.853 at 5 / 10 / 15 / 20 budget-minutes) where weak labels
  level off or are memorised (CT Weak-Net 0.803 / 0.800 / 0.771 at 5 / 10 / 15; docs/training.md). Weak and
  slice annotations (sparse or noisy) keep the budget's steps.
* epochs: 20 (validation and checkpoint after each; fewer when the budget allows under 200 steps).
* post-processing: keep the largest connected component when every training target is one connected object
  (slice targets count their labelled voxels only).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from .config import TrainConfig
from .postprocess import components

PATCH_VOXELS = {"cpu": 32 * 48 * 48, "mps": 64 * 96 * 96, "cuda": 128 ** 3}
BUDGET_MINUTES = {"cpu": 10.0, "mps": 10.0, "cuda": 30.0}
"""Minutes of training per model. CPU 10: at 5 the MRI family's Weak-Net was still learning (level with its
templates, full supervision 0.750); at 10 it is +0.021 over them and full 0.815 (docs/training.md)."""
BASE_CHANNELS = {"cpu": 16, "mps": 16, "cuda": 32}
# voxels per second through forward + backward of the core net at 16 base filters (measured on 2 CPU cores:
# 1.3–1.6 M; a conservative figure keeps a loaded machine near its budget)
CORE_RATE = {"cpu": 1.0e6, "mps": 4.0e6, "cuda": 60.0e6}
EPOCHS = 20
FULL_STEPS = 2
"""Full supervision's steps per budget step (see the module docstring)."""


@dataclass(frozen=True)
class Fingerprint:
    """What the plan is made from. Shapes (D, H, W) voxels at the training spacing; spacing (x, y, z) mm."""

    cases: int
    modality: str
    median_shape: tuple[int, int, int]
    min_shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    anisotropy: float
    foreground_fraction: float
    median_object: tuple[int, int, int]
    max_components: int
    normalization: dict

    def to_dict(self) -> dict:
        return asdict(self)


def fingerprint(prepared, modality: str) -> Fingerprint:
    """The fingerprint of prepared training cases (:class:`weaknet.prepare.Prepared`)."""
    cases = prepared.training + prepared.holdout
    shapes = np.array([c.image.shape for c in cases])
    spacing = np.median([c.geometry.spacing for c in cases], axis=0)
    fg, extents, parts = [], [], []
    for c in cases:
        m = c.target == 1
        fg.append(float(m.mean()))
        parts.append(components(m))
        idx = np.argwhere(m)
        extents.append(idx.max(0) - idx.min(0) + 1 if idx.size else np.zeros(3, int))
    return Fingerprint(cases=len(cases), modality=modality,
                       median_shape=tuple(int(v) for v in np.median(shapes, axis=0)),
                       min_shape=tuple(int(v) for v in shapes.min(axis=0)),
                       spacing=tuple(round(float(v), 6) for v in spacing),
                       anisotropy=round(float(spacing.max() / spacing.min()), 3),
                       foreground_fraction=round(float(np.median(fg)), 5),
                       median_object=tuple(int(v) for v in np.median(extents, axis=0)),
                       max_components=int(max(parts)),
                       normalization=prepared.normalization.to_dict())


def plan_training(config: TrainConfig, fp: Fingerprint, device_type: str) -> tuple[TrainConfig, list[str]]:
    """``config`` with every planned field that is None filled in, and one line per decision (for printing)."""
    dev = device_type if device_type in PATCH_VOXELS else "cpu"
    notes = []
    c = config
    if c.patch is None:
        shape = _shrink(fp.median_shape, PATCH_VOXELS[dev])
        depth = c.depth if c.depth is not None else _depth(min(shape))
        m = 2 ** (depth - 1)
        patch = tuple(_round_side(s, med, m) for s, med in zip(shape, fp.median_shape))
        c = replace(c, patch=patch, depth=depth)
        notes.append(f"patch {'x'.join(map(str, patch))} voxels (median image {'x'.join(map(str, fp.median_shape))}"
                     f", device budget {PATCH_VOXELS[dev]} voxels), depth {depth}")
    elif c.depth is None:
        c = replace(c, depth=_depth_fitting(c.patch))
        notes.append(f"depth {c.depth} (fits patch {c.patch})")
    if c.base_channels is None:
        c = replace(c, base_channels=BASE_CHANNELS[dev])
        notes.append(f"{c.base_channels} base filters ({dev})")
    if c.batch_size is None:
        c = replace(c, batch_size=2)
    if c.epochs is None or c.steps_per_epoch is None:
        minutes = c.budget_minutes if c.budget_minutes is not None else BUDGET_MINUTES[dev]
        rate = CORE_RATE[dev] * (16 / c.base_channels) ** 0.7
        voxels = c.batch_size * int(np.prod(c.patch))
        total = max(20, int(minutes * 60 * rate / voxels)) * (FULL_STEPS if c.supervision == "full" else 1)
        if c.epochs is None and c.steps_per_epoch is None:
            epochs = EPOCHS if total >= 10 * EPOCHS else max(2, total // 10)
            c = replace(c, epochs=epochs, steps_per_epoch=math.ceil(total / epochs))
        elif c.epochs is None:
            c = replace(c, epochs=max(1, math.ceil(total / c.steps_per_epoch)))
        else:
            c = replace(c, steps_per_epoch=max(1, math.ceil(total / c.epochs)))
        c = replace(c, budget_minutes=minutes)
        full = f" (full supervision: {FULL_STEPS}× the steps)" if c.supervision == "full" else ""
        notes.append(f"budget {minutes:g} min on {dev}{full} → {c.epochs} epochs × {c.steps_per_epoch} steps of "
                     f"{c.batch_size}×{'x'.join(map(str, c.patch))}")
    if c.spacing is None:
        c = replace(c, spacing=tuple(float(v) for v in fp.spacing))
    if c.postprocess is None:
        c = replace(c, postprocess="largest" if fp.max_components == 1 else "none")
        notes.append(f"post-processing: {c.postprocess} (training targets have at most {fp.max_components} "
                     f"connected component{'s' if fp.max_components > 1 else ''})")
    return c, notes


def _shrink(shape, budget: int) -> tuple[int, int, int]:
    """(D, H, W) ``shape`` scaled by one factor (sides ≥ 4) so that it holds ≤ ``budget`` voxels."""
    f = min(1.0, (budget / float(np.prod(shape))) ** (1 / 3))
    return tuple(max(4, int(round(v * f))) for v in shape)


def _round_side(side: int, median: int, m: int) -> int:
    """``side`` rounded to the nearest multiple of ``m`` (≥ m), rounded down instead where that would pass
    the ``median`` image side."""
    near = max(m, int(round(side / m)) * m)
    return near if near <= median else max(m, (side // m) * m)


def _depth(min_side: int) -> int:
    return int(min(5, max(2, 1 + math.floor(math.log2(max(min_side, 4) / 4)))))


def _depth_fitting(patch) -> int:
    """The deepest net (≤ 5) whose down-sampling divides every side of a user-given ``patch``."""
    d = _depth(min(patch))
    while d > 2 and any(p % 2 ** (d - 1) for p in patch):
        d -= 1
    return d
