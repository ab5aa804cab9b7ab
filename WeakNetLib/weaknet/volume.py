"""Volumes: a voxel array plus its full geometry (size, spacing, origin, oblique direction), read and
written with SimpleITK (NIfTI, NRRD, MHA, DICOM series folders).

Array order is numpy's (D, H, W) = (k, j, i) = (z, y, x); geometry follows ITK: ``spacing`` (3,) mm in
(x, y, z), ``origin`` (3,) LPS mm, ``direction`` (3, 3) whose columns are the i, j, k axes in LPS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import GeometryError, InputError


@dataclass(frozen=True)
class Geometry:
    """Where a voxel grid lies in LPS space.

    size: (3,) voxels along (i, j, k) = (x, y, z); spacing: (3,) mm; origin: (3,) LPS mm of voxel (0,0,0);
    direction: (3, 3), column c = unit LPS vector of index axis c.
    """

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # 9 values, row-major

    @staticmethod
    def create(size, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None) -> "Geometry":
        """Build a geometry from array-likes; ``direction`` (3, 3) defaults to identity."""
        d = np.eye(3) if direction is None else np.asarray(direction, dtype=float).reshape(3, 3)
        return Geometry(tuple(int(s) for s in size), tuple(float(s) for s in spacing),
                        tuple(float(o) for o in origin), tuple(float(v) for v in d.ravel()))

    @property
    def shape(self) -> tuple[int, int, int]:
        """numpy shape (D, H, W) = (size_z, size_y, size_x)."""
        return (self.size[2], self.size[1], self.size[0])

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def index_to_lps(self) -> np.ndarray:
        """(4, 4) affine mapping homogeneous (i, j, k, 1) to LPS mm."""
        m = np.eye(4)
        m[:3, :3] = self.direction_matrix @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    @property
    def lps_to_index(self) -> np.ndarray:
        """(4, 4) inverse of :attr:`index_to_lps`."""
        return np.linalg.inv(self.index_to_lps)

    def to_lps(self, ijk: np.ndarray) -> np.ndarray:
        """Continuous indices (N, 3) in (i, j, k) order → LPS mm (N, 3)."""
        ijk = np.asarray(ijk, dtype=float).reshape(-1, 3)
        return ijk @ self.index_to_lps[:3, :3].T + self.index_to_lps[:3, 3]

    def to_index(self, lps: np.ndarray) -> np.ndarray:
        """LPS mm (N, 3) → continuous indices (N, 3) in (i, j, k) order."""
        lps = np.asarray(lps, dtype=float).reshape(-1, 3)
        inv = self.lps_to_index
        return lps @ inv[:3, :3].T + inv[:3, 3]

    def contains(self, lps: np.ndarray, margin_voxels: float = 0.5) -> np.ndarray:
        """(N,) bool: which LPS points lie inside the voxel grid (voxel centres ± ``margin_voxels``)."""
        ijk = self.to_index(lps)
        hi = np.asarray(self.size, dtype=float) - 1 + margin_voxels
        return np.all((ijk >= -margin_voxels) & (ijk <= hi), axis=1)

    def matches(self, other: "Geometry", tol: float = 1e-4) -> bool:
        """Same size, and spacing/origin/direction equal within ``tol`` (relative to spacing for origin)."""
        return (self.size == other.size
                and np.allclose(self.spacing, other.spacing, rtol=tol, atol=tol)
                and np.allclose(self.origin, other.origin, atol=tol * max(self.spacing))
                and np.allclose(self.direction, other.direction, atol=tol))

    def require_match(self, other: "Geometry", what: str = "the mask", ref: str = "the image") -> None:
        """Raise :class:`GeometryError` naming the first differing property."""
        if self.matches(other):
            return
        for name in ("size", "spacing", "origin", "direction"):
            a, b = getattr(other, name), getattr(self, name)
            if not np.allclose(a, b, atol=1e-4 * max(self.spacing)):
                raise GeometryError(f"{what} does not match {ref}: {name} {_fmt(a)} vs {_fmt(b)}; "
                                    f"resample it onto {ref}'s grid first")
        raise GeometryError(f"{what} does not match {ref}'s geometry")


def _fmt(v) -> str:
    return "(" + ", ".join(f"{x:g}" for x in v) + ")"


@dataclass
class Volume:
    """A voxel array (D, H, W) with its :class:`Geometry`."""

    array: np.ndarray
    geometry: Geometry

    def __post_init__(self) -> None:
        if tuple(self.array.shape) != self.geometry.shape:
            raise GeometryError(f"array shape {self.array.shape} does not match geometry {self.geometry.shape}")

    def like(self, array: np.ndarray) -> "Volume":
        """A new volume with this geometry and another array of the same (D, H, W) shape."""
        return Volume(np.asarray(array), self.geometry)


def geometry_of(image) -> Geometry:
    """Geometry of a ``SimpleITK.Image``."""
    return Geometry.create(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())


def to_sitk(volume: Volume):
    """Convert to a ``SimpleITK.Image`` with the same geometry."""
    import SimpleITK as sitk

    arr = volume.array
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    g = volume.geometry
    img.SetSpacing(g.spacing)
    img.SetOrigin(g.origin)
    img.SetDirection(g.direction)
    return img


def from_sitk(image) -> Volume:
    """Convert a 3-D ``SimpleITK.Image`` to a :class:`Volume`."""
    if image.GetDimension() != 3:
        raise InputError(f"expected a 3-D volume, got {image.GetDimension()}-D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"expected a scalar volume, got {image.GetNumberOfComponentsPerPixel()} components per voxel")
    import SimpleITK as sitk

    return Volume(sitk.GetArrayFromImage(image), geometry_of(image))


def read_volume(path: str | Path) -> Volume:
    """Read a 3-D scalar volume (NIfTI, NRRD, MHA, any SimpleITK format, or a DICOM series folder).

    Raises :class:`InputError` with the file name for a missing, empty, corrupt or non-3-D file.
    """
    import SimpleITK as sitk

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    try:
        if p.is_dir():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(p))
            if not series:
                raise InputError(f"{p}: folder holds no DICOM series")
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(p), series[0]))
            image = reader.Execute()
        else:
            if p.stat().st_size == 0:
                raise InputError(f"{p}: file is empty")
            image = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), "unreadable")
        raise InputError(f"{p}: cannot read as a volume ({first.strip()[:160]})") from None
    if image.GetDimension() == 2:
        raise InputError(f"{p}: is a 2-D image; WeakNet needs a 3-D volume")
    try:
        return from_sitk(image)
    except InputError as exc:
        raise InputError(f"{p}: {exc}") from None


def read_geometry(path: str | Path) -> Geometry:
    """The :class:`Geometry` of a volume file from its header alone (no voxels read); InputError when the
    file is not a readable 3-D image."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(f"{Path(path).name}: cannot read its header as a volume") from None
    if reader.GetDimension() != 3:
        raise InputError(f"{Path(path).name}: is not a 3-D volume")
    return Geometry.create(reader.GetSize(), reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection())


def write_volume(volume: Volume, path: str | Path, compress: bool = True) -> Path:
    """Write a volume (format from the extension: .nii.gz, .nrrd, .seg.nrrd, .mha); creates parent folders."""
    import SimpleITK as sitk

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(to_sitk(volume), str(p), compress)
    return p
