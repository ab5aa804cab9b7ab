"""Synthetic benchmark volumes: organ-like genus-0 targets in CT-, MRI- or EM-like images, with nearby
distracting structures whose strong edges are *not* the target boundary.

A target is an implicit shape in object coordinates (mm) — an ellipsoid, or an ellipsoid bent around an
arc (bean, banana, C) — mapped through a random rotation and a smooth, small random displacement field
(a diffeomorphism, so the shape stays genus 0). Appearance: textured background and foreground, optional
bright/dark distractors (a shell parallel to the target surface, a blob, a tube passing by), partial-volume
blur proportional to the (anisotropic) spacing, a bias field (MRI) and modality-specific noise.

Thin, curved anatomy (:data:`THIN_KINDS`, absolute sizes in mm, where one voxel of surface error costs
tens of % IoU): 'hippocampus' — a curved, tapered tube ≈ 43 mm long with a bulbous head (≈ 18 × 12 mm
across) and a thin tail (≈ 5 mm), ≈ 3,500–4,500 mm³; 'caudate' — a longer C (≈ 190°, ≈ 65 mm) with a large head
and a tail ≈ 4 mm thick; 'sheet' — a 4 mm thick plate folded like a wave (≈ 45 × 32 mm). Their images use
the exact partial volume of each boundary voxel (the inside fraction of 4³ sub-samples) instead of a ramp.

Everything is seeded: the same arguments give bit-identical arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from .errors import InputError
from .rasterize import signed_distance
from .volume import Geometry, Volume

KINDS = ("ellipsoid", "bean", "banana", "c_shape")  # the compact kinds; 'random' picks one of them
THIN_KINDS = ("hippocampus", "caudate", "sheet")  # thin, curved anatomy at absolute (mm) sizes
MODALITIES = ("CT", "MRI", "EM")

# Per-modality tissue intensities: background, target, and the two distractor intensities (strong edges),
# texture amplitude and noise sigma, in the modality's own units (HU for CT, arbitrary units otherwise).
_APPEARANCE = {
    "CT": dict(bg=40.0, fg=(95.0, 125.0), distract=(700.0, -400.0), texture=10.0, noise=14.0),
    "MRI": dict(bg=300.0, fg=(470.0, 540.0), distract=(1100.0, 20.0), texture=25.0, noise=22.0),
    "EM": dict(bg=0.55, fg=(0.64, 0.70), distract=(0.12, 0.95), texture=0.05, noise=0.06),
}


@dataclass
class Phantom:
    """One synthetic case.

    image: float32 (D, H, W) intensities; label: uint8 (D, H, W) target mask (1 where the voxel centre is
    inside); distractors: uint8 (D, H, W), 0 = none, 1..K = distracting structure k (never overlapping the
    label); occupancy: float32 (D, H, W) in [0, 1], the target's share of each voxel as rendered in the
    image (exact partial volume for :data:`THIN_KINDS`, a sub-voxel ramp of the signed distance otherwise).
    """

    image: Volume
    label: Volume
    distractors: Volume
    kind: str
    modality: str
    seed: int
    occupancy: Volume | None = None


def make_phantom(kind: str = "bean", modality: str = "CT", size=(64, 64, 48), spacing=(1.0, 1.0, 2.0),
                 seed: int = 0, distractors: bool = True, oblique: bool = False) -> Phantom:
    """Generate one phantom.

    kind: 'ellipsoid' | 'bean' | 'banana' | 'c_shape' | 'random' (one of those four, chosen by ``seed``) |
    'hippocampus' | 'caudate' | 'sheet' (:data:`THIN_KINDS`); modality: 'CT' | 'MRI' | 'EM'; size: voxels
    (i, j, k) = (x, y, z); spacing: mm (x, y, z); distractors: add 3 nearby strong-edged structures;
    oblique: a rotated direction matrix (≤ 25°). The volume is centred at LPS (0, 0, 0). A few hundred ms
    at 64³, about 1–2 s at 96³.
    """
    if modality not in MODALITIES:
        raise InputError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    rng = np.random.default_rng(seed)
    label, occ_target, kind = _label(kind, size, spacing, oblique, rng)
    geometry, spacing = label.geometry, label.geometry.spacing
    label = label.array
    sd = signed_distance(label, geometry)

    app = _APPEARANCE[modality]
    if occ_target is None:
        occ_target = _soft(sd, spacing)
    dist_labels = _distractors(sd, rng, spacing) if distractors else np.zeros(label.shape, np.uint8)

    image = app["bg"] + app["texture"] * _smooth_field(rng, label.shape, 10)
    fg = float(rng.uniform(*app["fg"]))
    image += occ_target * (fg - app["bg"] + 0.6 * app["texture"] * _smooth_field(rng, label.shape, 14))
    for k in range(1, int(dist_labels.max()) + 1):
        occ = _soft(signed_distance(dist_labels == k, geometry), spacing)
        level = app["distract"][(k + 1) % 2]  # shell and tube: the first level, blob: the second
        image += occ * (level - image)
    if modality == "EM":  # membranes: a dark line along every object boundary
        for region in [label.astype(bool)] + [dist_labels == k for k in range(1, int(dist_labels.max()) + 1)]:
            image += _membrane(signed_distance(region, geometry), spacing) * (0.15 - image)

    sigma_vox = [0.45] * 3  # partial-volume blur: ~0.45 voxel per axis (larger in mm along thick slices)
    image = ndimage.gaussian_filter(image, sigma_vox)
    if modality == "MRI":
        image *= np.exp(0.2 * _smooth_field(rng, label.shape, 3))  # bias field
        n1, n2 = rng.standard_normal((2,) + label.shape) * app["noise"]
        image = np.sqrt((image + n1) ** 2 + n2**2)  # Rician magnitude noise
    else:
        image += rng.standard_normal(label.shape) * app["noise"]

    return Phantom(Volume(image.astype(np.float32), geometry), Volume(label.astype(np.uint8), geometry),
                   Volume(dist_labels, geometry), kind, modality, seed, Volume(occ_target, geometry))


def make_label(kind: str = "hippocampus", size=(80, 80, 80), spacing=(1.0, 1.0, 1.0), seed: int = 0,
               oblique: bool = False) -> Volume:
    """The target mask alone (uint8 (D, H, W), 1 where a voxel centre lies inside the shape), without
    rendering an image: identical to ``make_phantom(kind, ..., seed=seed, oblique=oblique).label``."""
    return _label(kind, size, spacing, oblique, np.random.default_rng(seed))[0]


def _label(kind: str, size, spacing, oblique: bool, rng: np.random.Generator
           ) -> tuple[Volume, np.ndarray | None, str]:
    """(label Volume, float32 (D, H, W) partial-volume occupancy of the target or None for the compact
    kinds, resolved kind); validates the arguments and draws from ``rng`` in a fixed order."""
    if kind not in KINDS + THIN_KINDS + ("random",):
        choices = ", ".join(KINDS + THIN_KINDS + ("random",))
        raise InputError(f"unknown phantom kind {kind!r}; choose one of {choices}")
    size = tuple(int(s) for s in size)
    spacing = tuple(float(s) for s in spacing)
    if len(size) != 3 or min(size) < 16:
        raise InputError(f"phantom size must be 3 values ≥ 16 voxels, got {size}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise InputError(f"phantom spacing must be 3 positive values in mm, got {spacing}")
    if kind == "random":
        kind = KINDS[int(rng.integers(len(KINDS)))]

    geometry = _geometry(size, spacing, _random_rotation(rng, 25.0) if oblique else np.eye(3))
    half = 0.5 * np.asarray(size) * np.asarray(spacing)
    label = occupancy = None
    scale = 1.0
    shape_seed = int(rng.integers(2**31))
    for _ in range(6):  # shrink until the target clears the border by ≥ 2 voxels
        label, occupancy = _target(kind, geometry, half, np.random.default_rng(shape_seed), scale)
        if _clear_of_border(label, 2):
            break
        scale *= 0.85
    return Volume(label, geometry), occupancy, kind


def write_phantom_set(folder: str | Path, count: int, kind: str | Sequence[str] = "random", modality: str = "CT",
                      size=(64, 64, 48), spacing=(1.0, 1.0, 2.0), seed: int = 0, distractors: bool = True,
                      oblique: bool = False) -> list[tuple[Path, Path]]:
    """Write ``count`` phantoms as a dataset folder: ``folder/images/phantom_NNN.nii.gz``,
    ``folder/labels/phantom_NNN.nii.gz`` and ``folder/DATASET.json`` (every case with its full label).

    Case ``n`` uses seed ``seed * 1000 + n`` and ``kind`` (or ``kind[n % len(kind)]`` for a sequence).
    Returns the (image, label) paths in order.
    """
    from .realdata import LabelledCase, write_labelled_dataset

    folder = Path(folder)
    cases = []
    for n in range(count):
        k = kind if isinstance(kind, str) else kind[n % len(kind)]
        ph = make_phantom(k, modality, size, spacing, seed * 1000 + n, distractors, oblique)
        cases.append(LabelledCase(f"phantom_{n:03d}", ph.image, ph.label))
    write_labelled_dataset(folder, cases, f"phantoms-{modality}", modality)
    return [(folder / "images" / f"{c.name}.nii.gz", folder / "labels" / f"{c.name}.nii.gz") for c in cases]


# ---------------------------------------------------------------------------------------------- shapes

def _geometry(size, spacing, direction: np.ndarray) -> Geometry:
    centre_offset = direction @ (np.asarray(spacing) * (np.asarray(size) - 1) / 2)
    return Geometry.create(size, spacing, -centre_offset, direction)


def _random_rotation(rng: np.random.Generator, max_deg: float | None = None) -> np.ndarray:
    """(3, 3) rotation: uniformly random, or about a random axis by at most ``max_deg`` degrees."""
    from scipy.spatial.transform import Rotation

    if max_deg is None:
        q = rng.standard_normal(4)
        return Rotation.from_quat(q / np.linalg.norm(q)).as_matrix()
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    return Rotation.from_rotvec(axis * np.deg2rad(rng.uniform(5.0, max_deg))).as_matrix()


def _target(kind: str, geometry: Geometry, half: np.ndarray, rng: np.random.Generator, scale: float
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 (D, H, W) mask of the target — voxel centres where f(object coords) < 0, one component, no
    cavities — and, for :data:`THIN_KINDS`, the float32 (D, H, W) partial volume (inside fraction of 4³
    sub-samples per boundary voxel; None for the compact kinds)."""
    shape = geometry.shape
    ijk = np.indices(shape, dtype=np.float32)[::-1].reshape(3, -1).T  # (N, 3) voxel centres as (i, j, k)
    xyz = geometry.to_lps(ijk).astype(np.float32)  # the volume centre is the object frame's origin
    s = 0.7 * float(half.min()) * scale  # object radius budget, mm (compact kinds)
    deform = (0.12 * s) if kind in KINDS else 1.5 * scale  # displacement amplitude, mm (gradient ≪ 1)
    fields = np.stack([_smooth_field(rng, shape, 4) for _ in range(3)]) * deform  # (3, D, H, W) mm
    rot = _random_rotation(rng)
    centre = rng.uniform(-0.08, 0.08, 3) * half
    implicit = _compact_shape(kind, rng, s) if kind in KINDS else _THIN[kind](rng, scale)

    def f(points: np.ndarray, kji: np.ndarray | None = None) -> np.ndarray:
        """(M,) implicit function at points (M, 3) LPS mm: the displacement at voxel centres, or
        trilinearly interpolated at fractional (k, j, i) indices ``kji`` (3, M)."""
        u = fields.reshape(3, -1).T if kji is None else np.stack(
            [ndimage.map_coordinates(c, kji, order=1, mode="nearest") for c in fields], axis=1)
        return implicit(((points + u - centre) @ rot).astype(np.float32))  # object frame: rot.T @ p

    mask = (f(xyz) < 0).reshape(shape)
    lab, n = ndimage.label(mask)
    if n > 1:
        mask = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    mask = ndimage.binary_fill_holes(mask)
    if kind in KINDS:
        return mask.astype(np.uint8), None
    # exact partial volume near the boundary: the inside fraction of 4 × 4 × 4 sub-samples per voxel
    band = ndimage.binary_dilation(mask, iterations=2) & ~ndimage.binary_erosion(mask, iterations=2)
    kji = np.argwhere(band).astype(np.float32)  # (B, 3)
    offsets = (np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) / 4 - 0.5
    sub = (kji[:, None, :] + offsets[None].astype(np.float32)).reshape(-1, 3)  # (B·64, 3)
    inside = f(geometry.to_lps(sub[:, ::-1]).astype(np.float32), sub.T) < 0
    occupancy = mask.astype(np.float32)
    occupancy[band] = inside.reshape(len(kji), -1).mean(axis=1)
    occupancy[band & ~ndimage.binary_dilation(mask)] = 0.0  # specks of other components
    return mask.astype(np.uint8), occupancy


def _compact_shape(kind: str, rng: np.random.Generator, s: float):
    """Implicit function q (M, 3) object mm → (M,) of an ellipsoid or bent ellipsoid with radius budget s."""
    if kind == "ellipsoid":
        axes = s * np.array([rng.uniform(0.75, 0.9), rng.uniform(0.5, 0.7), rng.uniform(0.4, 0.6)])
        return lambda q: np.sqrt(((q / axes) ** 2).sum(1)) - 1.0
    # (half-angle of the arc, long semi-axis a, thickness b (bend plane), c) in units of s
    theta, a, b, c, power = {
        "bean": (rng.uniform(0.55, 0.75), 0.95, rng.uniform(0.45, 0.55), rng.uniform(0.4, 0.5), 2),
        "banana": (rng.uniform(1.0, 1.25), 1.3, rng.uniform(0.3, 0.38), rng.uniform(0.3, 0.38), 2),
        "c_shape": (rng.uniform(2.2, 2.45), 1.6, rng.uniform(0.2, 0.26), rng.uniform(0.2, 0.26), 4),
    }[kind]
    radius = a / theta  # bend radius, units of s
    # bounding half-extents of the arc's centre line, to centre and fit it
    arc = np.linspace(-theta, theta, 64)
    cx, cy = radius * np.sin(arc), radius * (1 - np.cos(arc))
    fit = min(1.0, 1.0 / (max(np.ptp(cx), np.ptp(cy)) / 2 + max(b, c)))
    a, b, c, radius = a * s * fit, b * s * fit, c * s * fit, radius * s * fit

    def f(q: np.ndarray) -> np.ndarray:
        qx, qy = q[:, 0], q[:, 1] + radius * (1 - np.cos(theta)) / 2
        dy = radius - qy
        rho = np.sqrt(qx**2 + dy**2)
        x_s, y_s = radius * np.arctan2(qx, dy), radius - rho  # unbent (straight) coordinates
        rad = (y_s / b) ** 2 + (q[:, 2] / c) ** 2
        return (np.abs(x_s / a) ** (2 * power) + rad**power) ** (1.0 / (2 * power)) - 1.0

    return f


def _tube(length: float, bend: float, lift: float, head: tuple[float, float], body: tuple[float, float],
          tail: tuple[float, float], head_at: float = 0.12, head_width: float = 0.14):
    """Implicit function of a curved, tapered tube with elliptic cross-sections (object mm → (M,)).

    Centre line: an arc of ``length`` mm turning by ``bend`` radians in the (x, y) plane, rising by
    ``lift`` mm along z (quadratically), centred on its bounding box. Semi-axes (in-plane, out-of-plane)
    blend from a bulge of ``head`` at fraction ``head_at`` through ``body`` to ``tail`` at the far end,
    which closes with an ellipsoidal cap, as does the head end. f < 0 inside: √((u/a)² + (v/b)² + (w/c)²) − 1
    in the frame of the nearest centre-line sample (w: beyond an end only, c = min(a, b) there).
    """
    from scipy.spatial import cKDTree

    t = np.linspace(0.0, 1.0, 800)
    phi = bend * (t - 0.5)
    radius = length / bend
    line = np.stack([radius * np.sin(phi), radius * (1 - np.cos(phi)), lift * t**2], axis=1)
    line -= (line.min(axis=0) + line.max(axis=0)) / 2
    tangent = np.gradient(line, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    n2 = np.array([0.0, 0.0, 1.0]) - tangent[:, 2:] * tangent
    n2 /= np.linalg.norm(n2, axis=1, keepdims=True)
    n1 = np.cross(n2, tangent)
    bulge = np.exp(-((t - head_at) / head_width) ** 2)
    taper = np.clip((t - 0.4) / 0.6, 0, 1)
    taper = taper * taper * (3 - 2 * taper)  # smoothstep from the body to the tail
    axes = [(hd - bd) * bulge + bd + (tl - bd) * taper for hd, bd, tl in zip(head, body, tail)]
    tree = cKDTree(line)

    def f(q: np.ndarray) -> np.ndarray:
        _, k = tree.query(q)
        d = q - line[k]
        u, v, w = (d * n1[k]).sum(1), (d * n2[k]).sum(1), (d * tangent[k]).sum(1)
        w = np.where(((k == 0) & (w < 0)) | ((k == len(t) - 1) & (w > 0)), w, 0.0)
        a, b = axes[0][k], axes[1][k]
        return np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / np.minimum(a, b)) ** 2) - 1.0

    return f


def _hippocampus(rng: np.random.Generator, scale: float):
    """≈ 43 mm long, turning ≈ 100°, head ≈ 18 × 12 mm across, body ≈ 11 × 9 mm, tail ≈ 5 × 4.3 mm."""
    return _tube(scale * rng.uniform(41, 46), rng.uniform(1.5, 2.0), scale * rng.uniform(-6, 6),
                 head=(scale * rng.uniform(8.5, 9.5), scale * rng.uniform(5.5, 6.5)),
                 body=(scale * rng.uniform(5.2, 5.8), scale * rng.uniform(4.2, 4.8)),
                 tail=(scale * rng.uniform(2.3, 2.7), scale * rng.uniform(2.0, 2.3)))


def _caudate(rng: np.random.Generator, scale: float):
    """≈ 65 mm long C turning ≈ 190°, head ≈ 18 × 13 mm across, body ≈ 9 × 7 mm, tail ≈ 4 × 3.6 mm."""
    return _tube(scale * rng.uniform(60, 70), rng.uniform(3.2, 3.6), scale * rng.uniform(-5, 5),
                 head=(scale * rng.uniform(8.5, 9.5), scale * rng.uniform(6.0, 7.0)),
                 body=(scale * rng.uniform(4.2, 4.8), scale * rng.uniform(3.3, 3.8)),
                 tail=(scale * rng.uniform(1.9, 2.2), scale * rng.uniform(1.7, 1.9)),
                 head_at=0.1, head_width=0.16)


def _sheet(rng: np.random.Generator, scale: float):
    """A 4 mm thick plate, ≈ 45 × 32 mm, folded along x like a wave (amplitude ≈ 5 mm, wavelength ≈ 28 mm):
    f = ((d / t)⁴ + ρ⁴)^¼ − 1 with d the distance to the folded mid-surface (first order) and ρ the
    elliptic in-plane radius."""
    ax, ay = scale * rng.uniform(21, 24), scale * rng.uniform(15, 17)
    amp, wave, phase = scale * rng.uniform(4.5, 5.5), scale * rng.uniform(26, 30), rng.uniform(0, 2 * np.pi)
    half_thick = 2.0 * scale
    k = 2 * np.pi / wave

    def f(q: np.ndarray) -> np.ndarray:
        x, y, z = q[:, 0], q[:, 1], q[:, 2]
        mid, slope = amp * np.sin(k * x + phase), amp * k * np.cos(k * x + phase)
        d = (z - mid) / np.sqrt(1 + slope**2)
        rho2 = (x / ax) ** 2 + (y / ay) ** 2
        return ((d / half_thick) ** 4 + rho2**2) ** 0.25 - 1.0

    return f


_THIN = {"hippocampus": _hippocampus, "caudate": _caudate, "sheet": _sheet}


def _distractors(sd: np.ndarray, rng: np.random.Generator, spacing) -> np.ndarray:
    """uint8 (D, H, W): 1 = a shell parallel to part of the target surface, 2 = a blob, 3 = a tube.

    Each keeps a gap of 1.5–4 mm from the target (sd: signed distance of the target, mm, negative inside).
    """
    shape = sd.shape
    zyx = np.indices(shape, dtype=np.float32) * np.asarray(spacing[::-1], np.float32).reshape(3, 1, 1, 1)
    inside = sd < 0
    centroid = np.array([zyx[a][inside].mean() for a in range(3)])
    # outward normals from the distance gradient; surface points = boundary voxels of the target
    grad = np.stack(np.gradient(sd, *spacing[::-1]))
    surf = np.argwhere(inside & ~ndimage.binary_erosion(inside))
    out = np.zeros(shape, np.uint8)
    rel = zyx - centroid.reshape(3, 1, 1, 1)
    dist_c = np.sqrt((rel**2).sum(0)) + 1e-6

    def pick():
        p = surf[int(rng.integers(len(surf)))]
        n = grad[:, p[0], p[1], p[2]]
        return p * np.asarray(spacing[::-1]), n / (np.linalg.norm(n) + 1e-9)

    gap = rng.uniform(1.5, 4.0, 3)
    # shell: sd in [gap, gap + thickness] inside a cone around a random direction from the centroid
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    cos = (rel * direction.reshape(3, 1, 1, 1)).sum(0) / dist_c
    thick = rng.uniform(2.0, 3.5)
    out[(sd >= gap[0]) & (sd <= gap[0] + thick) & (cos > np.cos(np.deg2rad(50)))] = 1
    # blob: sphere of radius r just outside the surface
    p, n = pick()
    r = rng.uniform(3.0, 6.0)
    c = p + n * (gap[1] + r)
    blob = ((zyx - c.reshape(3, 1, 1, 1)) ** 2).sum(0) < r**2
    out[blob & (sd >= gap[1]) & (out == 0)] = 2
    # tube: a straight vessel passing the surface tangentially
    p, n = pick()
    r = rng.uniform(1.5, 3.0)
    c = p + n * (gap[2] + r)
    t = np.cross(n, rng.standard_normal(3))
    t /= np.linalg.norm(t)
    d = zyx - c.reshape(3, 1, 1, 1)
    along = (d * t.reshape(3, 1, 1, 1)).sum(0)
    perp2 = (d**2).sum(0) - along**2
    out[(perp2 < r**2) & (sd >= gap[2]) & (out == 0)] = 3
    return out


# ---------------------------------------------------------------------------------------------- helpers

def _smooth_field(rng: np.random.Generator, shape, cells: int) -> np.ndarray:
    """float32 (D, H, W) smooth random field, ~unit standard deviation, ``cells`` control points per axis."""
    coarse = rng.standard_normal((cells + 2,) * 3)
    field = ndimage.zoom(coarse, [s / (cells + 2) for s in shape], order=3, mode="nearest")
    field = field[: shape[0], : shape[1], : shape[2]]
    if field.shape != tuple(shape):
        field = np.pad(field, [(0, s - f) for s, f in zip(shape, field.shape)], mode="edge")
    return (field / (field.std() + 1e-9)).astype(np.float32)


def _soft(sd: np.ndarray, spacing) -> np.ndarray:
    """Soft occupancy in [0, 1] from a signed distance (mm, :func:`weaknet.rasterize.signed_distance`:
    0 half-way between the inside and outside voxel centres): a sub-voxel ramp at the boundary."""
    width = 0.35 * min(spacing)
    return (1.0 / (1.0 + np.exp(np.clip(sd / width, -30, 30)))).astype(np.float32)


def _membrane(sd: np.ndarray, spacing) -> np.ndarray:
    """EM membrane profile: a Gaussian line of ~1 voxel width centred on the boundary."""
    w = 0.6 * min(spacing)
    return np.exp(-(sd / w) ** 2).astype(np.float32)


def _clear_of_border(mask: np.ndarray, margin: int) -> bool:
    inner = np.zeros_like(mask, dtype=bool)
    inner[margin:-margin, margin:-margin, margin:-margin] = True
    return bool(mask.any()) and not mask[~inner].any()
