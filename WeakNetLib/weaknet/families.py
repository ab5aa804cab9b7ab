"""Dataset families for checking that default training holds on data of several sizes, modalities and
spacings: phantom recipes (some smaller than 64 voxels along an axis, oblique, anisotropic, with strong-edged
distractors and a *look-alike* neighbour that touches the target with the target's own intensity; ``clean``
without either, for the reconstruction term's sweep) and the napari nuclei (real confocal data).

Every family is written as a labelled dataset folder (``DATASET.json`` + images + labels) by
:func:`write_family`; the benchmark ``weaknet bench families`` runs :mod:`weaknet.experiment` on each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from .errors import InputError
from .phantoms import make_phantom
from .realdata import LabelledCase, nuclei_cases, stardist_cases, write_labelled_dataset
from .volume import Volume


@dataclass(frozen=True)
class Family:
    """A phantom recipe: ``count`` cases of ``kinds`` at ``size`` (x, y, z voxels) and ``spacing`` (mm)."""

    name: str
    modality: str
    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    kinds: tuple[str, ...]
    count: int = 18
    oblique: bool = True
    lookalike: bool = True
    distractors: bool = True


FAMILIES = {
    "ct": Family("ct", "CT", (72, 72, 40), (1.2, 1.2, 2.5), ("bean", "ellipsoid", "banana")),
    "mri": Family("mri", "MRI", (64, 64, 48), (0.9, 0.9, 1.8), ("ellipsoid", "bean", "banana")),
    "em": Family("em", "EM", (48, 48, 48), (1.0, 1.0, 1.0), ("ellipsoid", "c_shape", "bean"), oblique=False),
    # clean edges: no distractor and no look-alike, so template errors are boundary errors near clean edges
    "clean": Family("clean", "CT", (56, 56, 32), (1.2, 1.2, 2.0), ("bean", "banana", "c_shape"), lookalike=False,
                    distractors=False),
}
REAL = {"nuclei": (nuclei_cases, "napari"), "stardist": (stardist_cases, "stardist")}
"""Families of data from registry packages: name → (loader, its folder under ``--data-dir``)."""


def add_lookalike(image: Volume, label: Volume, seed: int) -> Volume:
    """``image`` with a blob of the target's own intensity touching the target (a 0.5–1.5 mm gap at its
    nearest point, radius 0.35–0.6 of the target's equivalent radius), blurred like the phantom's
    partial-volume boundary. The label is unchanged: the blob is background that looks like the object."""
    rng = np.random.default_rng([seed, 31])
    sp = np.asarray(image.geometry.spacing[::-1], float)  # (D, H, W) mm
    inside = label.array > 0
    sd = ndimage.distance_transform_edt(~inside, sampling=sp)
    r_eq = (3 * inside.sum() * sp.prod() / (4 * np.pi)) ** (1 / 3)
    surf = np.argwhere(inside & ~ndimage.binary_erosion(inside))
    centroid = np.argwhere(inside).mean(0)
    p = surf[int(rng.integers(len(surf)))]
    n = (p - centroid) * sp
    n /= np.linalg.norm(n) + 1e-9
    r = rng.uniform(0.35, 0.6) * r_eq
    c = p * sp + n * (rng.uniform(0.5, 1.5) + r)
    zyx = np.indices(inside.shape, dtype=np.float32) * sp.reshape(3, 1, 1, 1).astype(np.float32)
    blob = (((zyx - c.reshape(3, 1, 1, 1)) ** 2).sum(0) < r ** 2) & (sd > 0.5)
    occ = ndimage.gaussian_filter(blob.astype(np.float32), 0.6)
    core = ndimage.binary_erosion(inside, iterations=1)
    level = float(np.median(image.array[core if core.any() else inside]))
    bg = float(np.median(image.array[~inside & (sd < 6)]))
    return image.like((image.array + occ * (level - bg)).astype(np.float32))


def family_cases(name: str, data_dir: Path | None = None, seed: int = 0) -> tuple[list[LabelledCase], str]:
    """(cases, modality) of family ``name`` (a key of :data:`FAMILIES`, or one of :data:`REAL` with ``data_dir``
    holding ``napari/`` (nuclei) or ``stardist/``)."""
    if name in REAL:
        if data_dir is None:
            raise InputError(f"the {name} family needs --data-dir (the folder holding napari/ and stardist/)")
        load, sub = REAL[name]
        return load(Path(data_dir) / sub), "EM"
    if name not in FAMILIES:
        raise InputError(f"unknown family {name!r}; choose from {', '.join(list(FAMILIES) + list(REAL))}")
    f = FAMILIES[name]
    cases = []
    for i in range(f.count):
        s = seed * 1000 + i
        ph = make_phantom(f.kinds[i % len(f.kinds)], f.modality, f.size, f.spacing, s, f.distractors, f.oblique)
        image = add_lookalike(ph.image, ph.label, s) if f.lookalike else ph.image
        cases.append(LabelledCase(f"{name}_{i:03d}", image, ph.label))
    return cases, f.modality


def write_family(name: str, folder: str | Path, data_dir: Path | None = None, seed: int = 0) -> Path:
    """Write family ``name`` as a labelled dataset folder; returns its DATASET.json."""
    cases, modality = family_cases(name, data_dir, seed)
    return write_labelled_dataset(folder, cases, f"family-{name}", modality)
