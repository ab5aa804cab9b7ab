"""Turn a :class:`~weaknet.dataset.Dataset` into training arrays for one supervision mode.

For every training case this loads the image and builds, on the image's grid (resampled to the common
spacing when the images' spacings differ):

* ``target`` uint8 (D, H, W): 0/1 per voxel, :data:`~weaknet.loss.IGNORE` (255) where the loss ignores it
  - weak: the template (fitted from ``points`` on the fly, cached, or read from ``template``);
  - full: ``label > 0``;
  - slices: ``label > 0`` on the annotated slices, IGNORE elsewhere;
* ``weight`` float32 (D, H, W) (weak only): W from the template's signed distance (mm);
* ``image`` float32 (D, H, W): normalised intensities.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dataset import SLICE_AXES, Case, Dataset
from .errors import InputError
from .loss import IGNORE, boundary_weight
from .normalize import Normalization, fit_normalization
from .resample import common_spacing, resample, spacing_geometry
from .volume import Geometry, Volume, read_volume, write_volume


@dataclass
class TrainingCase:
    """Arrays of one case, all (D, H, W) on the same (resampled) grid."""

    name: str
    image: np.ndarray
    target: np.ndarray
    weight: np.ndarray | None
    geometry: Geometry


@dataclass
class Prepared:
    """training: the cases trained on; holdout: annotated cases held out for model selection, their target
    the same kind of label as training (templates for weak); validation: the dataset's validation cases
    (true labels)."""

    training: list[TrainingCase]
    validation: list[TrainingCase]
    normalization: Normalization
    spacing: tuple[float, float, float] | None
    holdout: list[TrainingCase]


def template_for(case: Case, image: Volume, cache_dir: Path | None) -> Volume:
    """The weak mask (uint8 0/1, image grid) of a case: its ``template`` file, or its ``points`` fitted with
    :func:`weaknet.template.fit_template` and cached under ``cache_dir`` (key: points file bytes + geometry).
    """
    if case.template is not None:
        tpl = read_volume(case.template)
        image.geometry.require_match(tpl.geometry, what=f"template {case.template.name}",
                                     ref=f"image {case.image.name}")
        mask = (tpl.array > 0).astype(np.uint8)
    else:
        g = image.geometry
        key = hashlib.sha256(case.points.read_bytes() + repr((g.size, g.spacing, g.origin, g.direction))
                             .encode()).hexdigest()[:24]
        cached = cache_dir / f"{key}.nrrd" if cache_dir is not None else None
        if cached is not None and cached.is_file():
            mask = read_volume(cached).array.astype(np.uint8)
        else:
            from .points import read_points
            from .template import fit_template

            try:
                mask = np.asarray(fit_template(read_points(case.points), g).mask, dtype=np.uint8)
            except InputError as exc:
                raise InputError(f"{case.points.name}: {exc}") from None
            if cached is not None:
                write_volume(Volume(mask, g), cached)
    if not mask.any():
        src = case.template or case.points
        raise InputError(f"{src.name}: the template of {case.image.name} is empty (no foreground voxel); "
                         f"check the points/template lie on the object")
    return Volume(mask, image.geometry)


def _target(case: Case, image: Volume, supervision: str, cache_dir: Path | None) -> Volume:
    if supervision == "weak":
        if case.points is None and case.template is None:
            raise InputError(f"{case.image.name}: weak supervision needs 'points' or 'template' for every "
                             f"training case (or use --supervision full|slices)")
        return template_for(case, image, cache_dir)
    if case.label is None:
        raise InputError(f"{case.image.name}: {supervision} supervision needs a 'label' for every training case")
    lab = read_volume(case.label)
    image.geometry.require_match(lab.geometry, what=f"label {case.label.name}", ref=f"image {case.image.name}")
    fg = (lab.array > 0).astype(np.uint8)
    if supervision == "full":
        return Volume(fg, image.geometry)
    if not case.slices:
        raise InputError(f"{case.image.name}: slice supervision needs 'slices' (annotated [axis, index] pairs)")
    out = np.full(fg.shape, IGNORE, np.uint8)
    for axis_name, index in case.slices:
        ax = SLICE_AXES[axis_name]
        if not 0 <= index < fg.shape[ax]:
            raise InputError(f"{case.image.name}: {axis_name} slice {index} is outside 0..{fg.shape[ax] - 1}")
        sl = [slice(None)] * 3
        sl[ax] = index
        out[tuple(sl)] = fg[tuple(sl)]
    return Volume(out, image.geometry)


def holdout_split(cases: list[Case], fraction: float, seed: int) -> tuple[list[Case], list[Case]]:
    """(trained, held out): ``round(fraction·n)`` cases (at least 1 when fraction > 0 and n ≥ 4, none for
    fewer cases) drawn with ``seed``; the order of the trained cases is kept."""
    n = len(cases)
    k = 0 if fraction <= 0 or n < 4 else max(1, min(n - 3, int(round(fraction * n))))
    held = set(np.random.default_rng([seed, 7]).permutation(n)[:k].tolist())
    return [c for i, c in enumerate(cases) if i not in held], [c for i, c in enumerate(cases) if i in held]


def prepare(dataset: Dataset, supervision: str, boundary_distance: float, weight_near: float = 1.0,
            weight_far: float = 0.1, cache_dir: Path | None = None, spacing=None,
            normalization: Normalization | None = None, holdout: list[Case] | None = None) -> Prepared:
    """Load, resample and normalise every training, held-out and validation case of ``dataset``.

    ``holdout``: training cases of ``dataset`` kept out of training (targets built as for training).
    ``spacing``/``normalization`` given (e.g. on resume) are used as they are; otherwise fitted here.
    """
    from .rasterize import signed_distance

    if supervision not in ("weak", "slices", "full"):
        raise InputError(f"unknown supervision {supervision!r}; use weak, slices or full")
    held = list(holdout or [])
    trained = [c for c in dataset.training if all(c is not h for h in held)]
    images = [read_volume(c.image) for c in trained]
    targets = [_target(c, im, supervision, cache_dir) for c, im in zip(trained, images)]
    held_images = [read_volume(c.image) for c in held]
    held_targets = [_target(c, im, supervision, cache_dir) for c, im in zip(held, held_images)]
    val_images = [read_volume(c.image) for c in dataset.validation]
    val_labels = []
    for c, im in zip(dataset.validation, val_images):
        lab = read_volume(c.label)
        im.geometry.require_match(lab.geometry, what=f"label {c.label.name}", ref=f"image {c.image.name}")
        val_labels.append(Volume((lab.array > 0).astype(np.uint8), im.geometry))
    all_images, all_masks = images + held_images + val_images, targets + held_targets + val_labels
    if spacing is None:
        spacing = common_spacing([im.geometry for im in all_images])
    if spacing is not None:
        spacing = tuple(float(v) for v in spacing)
        grids = [spacing_geometry(im.geometry, spacing) for im in all_images]
        images_r = [resample(im, g) for im, g in zip(all_images, grids)]
        masks_r = [resample(t, g, "nearest", IGNORE if supervision == "slices" else 0)
                   for t, g in zip(all_masks, grids)]
    else:
        images_r, masks_r = all_images, all_masks
    if normalization is None:
        normalization = fit_normalization([im.array for im in images_r[: len(images)]], dataset.modality)
    cases = []
    for i, (c, im, t) in enumerate(zip(trained + held + dataset.validation, images_r, masks_r)):
        weight = None
        if supervision == "weak" and i < len(images):
            sd = signed_distance(t.array, t.geometry, band_mm=boundary_distance + max(t.geometry.spacing))
            weight = boundary_weight(sd, boundary_distance, weight_near, weight_far)
        cases.append(TrainingCase(c.name, normalization.apply(im.array), np.ascontiguousarray(t.array, np.uint8),
                                  weight, im.geometry))
    n, h = len(images), len(held)
    return Prepared(cases[:n], cases[n + h:], normalization, spacing, cases[n:n + h])
