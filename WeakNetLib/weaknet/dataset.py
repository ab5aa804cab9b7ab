"""DATASET.json: the training/validation/test lists, in Medical Segmentation Decathlon ``dataset.json`` style.

Paths are relative to the JSON file. Example::

    {"name": "Liver", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "liver"},
     "training": [
        {"image": "imagesTr/a.nii.gz", "points": "points/a.mrk.json"},   # weak: fitted to a template
        {"image": "imagesTr/b.nii.gz", "template": "templates/b.nii.gz"}, # weak: a ready template mask
        {"image": "imagesTr/c.nii.gz", "label": "labelsTr/c.nii.gz"},     # full supervision
        {"image": "imagesTr/d.nii.gz", "label": "labelsTr/d.nii.gz",
         "slices": [["axial", 12], ["coronal", 40]]}],                    # slice baseline
     "validation": [{"image": "imagesVa/e.nii.gz", "label": "labelsVa/e.nii.gz"}],
     "test": ["imagesTs/f.nii.gz"]}

``slices`` axis names refer to image index axes: axial = k (numpy axis 0), coronal = j (axis 1),
sagittal = i (axis 2); the index is a voxel index along that axis. Foreground is ``label > 0``.
An MSD task folder (``dataset.json`` + ``imagesTr/`` + ``labelsTr/``) is read as is; a folder with only
``imagesTr/`` and ``labelsTr/`` pairs files by name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .filenames import VOLUME_SUFFIXES

MODALITIES = ("CT", "MRI", "EM")
SLICE_AXES = {"axial": 0, "coronal": 1, "sagittal": 2}
_MODALITY_ALIASES = {"CT": "CT", "MR": "MRI", "MRI": "MRI", "T1": "MRI", "T2": "MRI", "FLAIR": "MRI",
                     "T1GD": "MRI", "T1W": "MRI", "T2W": "MRI", "ADC": "MRI", "DWI": "MRI", "EM": "EM",
                     "CRYO-ET": "EM", "MICROSCOPY": "EM", "CONFOCAL": "EM"}


@dataclass
class Case:
    """One entry: an image plus at most one of points / template / label (and slices with a label)."""

    image: Path
    points: Path | None = None
    template: Path | None = None
    label: Path | None = None
    slices: list[tuple[str, int]] | None = None

    @property
    def name(self) -> str:
        n = self.image.name
        for s in VOLUME_SUFFIXES:
            if n.lower().endswith(s):
                return n[: -len(s)]
        return n

    def to_json(self, root: Path) -> dict:
        out: dict = {}
        for key in ("image", "points", "template", "label"):
            p = getattr(self, key)
            if p is not None:
                out[key] = _rel(p, root)
        if self.slices:
            out["slices"] = [[a, int(i)] for a, i in self.slices]
        return out


@dataclass
class Dataset:
    """A parsed DATASET.json; all paths absolute."""

    name: str
    modality: str
    training: list[Case]
    validation: list[Case] = field(default_factory=list)
    test: list[Path] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=lambda: {"0": "background", "1": "foreground"})
    source: Path | None = None


def normalize_modality(name: str) -> str:
    """Map a modality name (CT, MR, MRI, T1, T2, EM, ...) to one of :data:`MODALITIES`."""
    m = _MODALITY_ALIASES.get(str(name).strip().upper())
    if m is None:
        raise InputError(f"unknown modality {name!r}; use one of {', '.join(MODALITIES)}")
    return m


def read_dataset(path: str | Path) -> Dataset:
    """Read a DATASET.json, an MSD task folder, or a folder holding ``imagesTr/`` and ``labelsTr/``.

    Every referenced file must exist: a missing one raises :class:`InputError` naming the entry.
    """
    p = Path(path)
    if p.is_dir():
        if (p / "dataset.json").is_file():
            p = p / "dataset.json"
        elif (p / "imagesTr").is_dir():
            return _scan_msd_folder(p)
        else:
            raise InputError(f"{p}: folder has neither dataset.json nor imagesTr/ (an MSD task folder)")
    if not p.is_file():
        raise InputError(f"{p}: no such dataset file")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("training"), list) or not doc["training"]:
        raise InputError(f"{p}: needs a non-empty 'training' list of {{'image': ..., 'points'|'template'|"
                         f"'label': ...}} entries")
    root = p.parent
    mod = doc.get("modality", {"0": "CT"})
    if isinstance(mod, dict):
        if len(mod) != 1:
            raise InputError(f"{p}: 'modality' lists {len(mod)} channels; WeakNet trains on one channel")
        mod = next(iter(mod.values()))
    training = [_parse_case(e, root, p, "training", i) for i, e in enumerate(doc["training"])]
    validation = [_parse_case(e, root, p, "validation", i) for i, e in enumerate(doc.get("validation", []))]
    test = []
    for i, e in enumerate(doc.get("test", [])):
        img = e.get("image") if isinstance(e, dict) else e
        test.append(_existing(root, img, p, f"test[{i}]"))
    labels = {str(k): str(v) for k, v in doc.get("labels", {"0": "background", "1": "foreground"}).items()}
    return Dataset(name=str(doc.get("name", root.name)), modality=normalize_modality(mod), training=training,
                   validation=validation, test=test, labels=labels, source=p)


def write_dataset(path: str | Path, dataset: Dataset | None = None, *, name: str = "weaknet",
                  modality: str = "CT", training: list[Case] | None = None,
                  validation: list[Case] | None = None, test: list[Path] | None = None) -> Path:
    """Write a DATASET.json (paths relative to it) from a :class:`Dataset` or from the keyword lists."""
    p = Path(path)
    if dataset is not None:
        name, modality = dataset.name, dataset.modality
        training, validation, test = dataset.training, dataset.validation, dataset.test
    root = p.parent.resolve()
    doc = {"name": name, "modality": {"0": normalize_modality(modality)},
           "labels": {"0": "background", "1": "foreground"},
           "training": [c.to_json(root) for c in training or []],
           "validation": [c.to_json(root) for c in validation or []],
           "test": [_rel(Path(t), root) for t in test or []]}
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return p


def _rel(p: Path, root: Path) -> str:
    p = Path(p).resolve()
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)


def _existing(root: Path, value, src: Path, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise InputError(f"{src}: {where} must be a file path string")
    f = (root / value).resolve()
    if not f.exists():
        raise InputError(f"{src}: {where} points to {value}, which does not exist ({f})")
    return f


def _parse_case(e, root: Path, src: Path, section: str, i: int) -> Case:
    where = f"{section}[{i}]"
    if not isinstance(e, dict) or "image" not in e:
        raise InputError(f"{src}: {where} must be an object with an 'image'")
    kinds = [k for k in ("points", "template", "label") if k in e]
    if section == "training" and "slices" not in e and len(kinds) != 1:
        raise InputError(f"{src}: {where} needs exactly one of 'points', 'template' or 'label' "
                         f"(has {', '.join(kinds) or 'none'})")
    if section == "validation" and "label" not in e:
        raise InputError(f"{src}: {where} needs a 'label' (validation measures IoU against it)")
    case = Case(image=_existing(root, e["image"], src, f"{where}.image"))
    for k in kinds:
        setattr(case, k, _existing(root, e[k], src, f"{where}.{k}"))
    if "slices" in e:
        if case.label is None:
            raise InputError(f"{src}: {where} gives 'slices' without the 'label' they come from")
        sl = e["slices"]
        if not isinstance(sl, list) or not sl:
            raise InputError(f"{src}: {where}.slices must be a non-empty list of [axis, index]")
        parsed = []
        for s in sl:
            if not (isinstance(s, (list, tuple)) and len(s) == 2 and str(s[0]).lower() in SLICE_AXES
                    and isinstance(s[1], int)):
                raise InputError(f"{src}: {where}.slices entry {s!r} must be [axial|coronal|sagittal, index]")
            parsed.append((str(s[0]).lower(), int(s[1])))
        case.slices = parsed
    return case


def _scan_msd_folder(folder: Path) -> Dataset:
    images = sorted(f for f in (folder / "imagesTr").iterdir() if f.name.lower().endswith(VOLUME_SUFFIXES)
                    and not f.name.startswith("."))
    if not images:
        raise InputError(f"{folder}/imagesTr: holds no volumes")
    training = []
    for img in images:
        lab = folder / "labelsTr" / img.name.replace("_0000", "")
        if not lab.exists():
            raise InputError(f"{img}: no label of the same name in {folder / 'labelsTr'}")
        training.append(Case(image=img.resolve(), label=lab.resolve()))
    return Dataset(name=folder.name, modality="CT", training=training, source=folder)
