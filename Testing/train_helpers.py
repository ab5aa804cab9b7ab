"""Tiny phantom datasets and net settings shared by the training tests (CPU, seconds per run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from weaknet.dataset import Case, write_dataset
from weaknet.phantoms import make_phantom
from weaknet.train import TrainConfig
from weaknet.volume import write_volume


def tiny_config(**kw) -> TrainConfig:
    """A two-level U-Net with 4 base filters, 16³ patches: ~10 ms per step on one core."""
    base = dict(epochs=1, steps_per_epoch=4, batch_size=2, patch=(16, 16, 16), base_channels=4, depth=2,
                res_units=0, device="cpu", seed=0)
    base.update(kw)
    return TrainConfig(**base)


def phantom_dataset(root: Path, n: int = 2, kind: str = "weak", size=(24, 24, 20), spacing=(1.0, 1.0, 1.5),
                    oblique: bool = False, dilate: int = 0, modality: str = "CT",
                    spacings: list | None = None, validation: bool = False) -> Path:
    """Write ``n`` phantoms with 'template' (the truth dilated by ``dilate`` voxels), 'label' or 'slices'
    entries and a DATASET.json; return its path."""
    root.mkdir(parents=True, exist_ok=True)
    cases = []
    for s in range(n + int(validation)):
        sp = spacings[s] if spacings else spacing
        ph = make_phantom("ellipsoid", modality, size=size, spacing=sp, seed=s, distractors=False, oblique=oblique)
        img, lab = root / f"img{s}.nii.gz", root / f"lab{s}.nii.gz"
        write_volume(ph.image, img)
        write_volume(ph.label, lab)
        if s == n:
            cases.append(Case(image=img, label=lab))
            continue
        if kind == "weak":
            tpl = ndimage.binary_dilation(ph.label.array > 0, iterations=dilate) if dilate else ph.label.array
            write_volume(ph.label.like(np.asarray(tpl, np.uint8)), root / f"tpl{s}.nii.gz")
            cases.append(Case(image=img, template=root / f"tpl{s}.nii.gz"))
        elif kind == "slices":
            k = int(np.argmax((ph.label.array > 0).sum(axis=(1, 2))))
            cases.append(Case(image=img, label=lab, slices=[("axial", k), ("coronal", size[1] // 2)]))
        else:
            cases.append(Case(image=img, label=lab))
    train, val = (cases[:-1], cases[-1:]) if validation else (cases, [])
    return write_dataset(root / "dataset.json", name="phantoms", modality=modality, training=train,
                         validation=val)


@pytest.fixture
def one_thread():
    """Tiny 3-D convolutions run several times faster on one thread than on two busy, shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
