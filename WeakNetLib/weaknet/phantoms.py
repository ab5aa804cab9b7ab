"""Synthetic benchmark volumes: organ-like genus-0 targets in CT-, MRI- or EM-like images, with nearby
distracting structures whose strong edges are *not* the target boundary.

A target is an implicit shape in object coordinates (mm) — an ellipsoid, or an ellipsoid bent around an
arc (bean, banana, C) — mapped through a random rotation and a smooth, small random displacement field
(a diffeomorphism, so the shape stays genus 0). Appearance: textured background and foreground, optional
bright/dark distractors (a shell parallel to the target surface, a blob, a tube passing by), partial-volume
blur proportional to the (anisotropic) spacing, a bias field (MRI) and modality-specific noise.

Everything is seeded: the same arguments give bit-identical arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from .errors import InputError
from .volume import Geometry, Volume

KINDS = ("ellipsoid", "bean", "banana", "c_shape")
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

    image: float32 (D, H, W) intensities; label: uint8 (D, H, W) target mask (1 inside);
    distractors: uint8 (D, H, W), 0 = none, 1..K = distracting structure k (never overlapping the label).
    """

    image: Volume
    label: Volume
    distractors: Volume
    kind: str
    modality: str
    seed: int


def make_phantom(kind: str = "bean", modality: str = "CT", size=(64, 64, 48), spacing=(1.0, 1.0, 2.0),
                 seed: int = 0, distractors: bool = True, oblique: bool = False) -> Phantom:
    """Generate one phantom.

    kind: 'ellipsoid' | 'bean' | 'banana' | 'c_shape' | 'random' (one of the four, chosen by ``seed``);
    modality: 'CT' | 'MRI' | 'EM'; size: voxels (i, j, k) = (x, y, z); spacing: mm (x, y, z);
    distractors: add 3 nearby strong-edged structures; oblique: a rotated direction matrix (≤ 25°).
    The volume is centred at LPS (0, 0, 0). A few hundred ms at 64³, about 1–2 s at 96³.
    """
    if kind not in KINDS + ("random",):
        raise InputError(f"unknown phantom kind {kind!r}; choose one of {', '.join(KINDS + ('random',))}")
    if modality not in MODALITIES:
        raise InputError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    size = tuple(int(s) for s in size)
    spacing = tuple(float(s) for s in spacing)
    if len(size) != 3 or min(size) < 16:
        raise InputError(f"phantom size must be 3 values ≥ 16 voxels, got {size}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise InputError(f"phantom spacing must be 3 positive values in mm, got {spacing}")
    rng = np.random.default_rng(seed)
    if kind == "random":
        kind = KINDS[int(rng.integers(len(KINDS)))]

    geometry = _geometry(size, spacing, _random_rotation(rng, 25.0) if oblique else np.eye(3))
    # voxel centres in LPS mm (the volume centre is the origin of the object frame)
    ijk = np.indices(geometry.shape, dtype=np.float32)[::-1].reshape(3, -1).T  # (N, 3) as (i, j, k)
    xyz = geometry.to_lps(ijk).astype(np.float32)
    half = 0.5 * np.asarray(size) * np.asarray(spacing)

    label = None
    scale = 1.0
    shape_seed = int(rng.integers(2**31))
    for _ in range(6):  # shrink until the target clears the border by ≥ 2 voxels
        label = _target(kind, xyz, geometry.shape, half, np.random.default_rng(shape_seed), scale)
        if _clear_of_border(label, 2):
            break
        scale *= 0.85
    sd = _signed_distance(label, spacing)

    app = _APPEARANCE[modality]
    occ_target = _soft(sd, spacing)
    dist_labels = _distractors(sd, rng, spacing) if distractors else np.zeros(label.shape, np.uint8)

    image = app["bg"] + app["texture"] * _smooth_field(rng, label.shape, 10)
    fg = float(rng.uniform(*app["fg"]))
    image += occ_target * (fg - app["bg"] + 0.6 * app["texture"] * _smooth_field(rng, label.shape, 14))
    for k in range(1, int(dist_labels.max()) + 1):
        occ = _soft(_signed_distance(dist_labels == k, spacing), spacing)
        level = app["distract"][(k + 1) % 2]  # shell and tube: the first level, blob: the second
        image += occ * (level - image)
    if modality == "EM":  # membranes: a dark line along every object boundary
        for region in [label.astype(bool)] + [dist_labels == k for k in range(1, int(dist_labels.max()) + 1)]:
            image += _membrane(_signed_distance(region, spacing), spacing) * (0.15 - image)

    sigma_vox = [0.45] * 3  # partial-volume blur: ~0.45 voxel per axis (larger in mm along thick slices)
    image = ndimage.gaussian_filter(image, sigma_vox)
    if modality == "MRI":
        image *= np.exp(0.2 * _smooth_field(rng, label.shape, 3))  # bias field
        n1, n2 = rng.standard_normal((2,) + label.shape) * app["noise"]
        image = np.sqrt((image + n1) ** 2 + n2**2)  # Rician magnitude noise
    else:
        image += rng.standard_normal(label.shape) * app["noise"]

    return Phantom(Volume(image.astype(np.float32), geometry), Volume(label.astype(np.uint8), geometry),
                   Volume(dist_labels, geometry), kind, modality, seed)


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


def _target(kind: str, xyz: np.ndarray, shape, half: np.ndarray, rng: np.random.Generator,
            scale: float) -> np.ndarray:
    """uint8 (D, H, W) mask of the target: f(object coords) < 0, one component, no cavities."""
    s = 0.7 * float(half.min()) * scale  # object radius budget, mm
    deform = 0.12 * s  # displacement amplitude, mm (gradient ≪ 1: a diffeomorphism)
    u = np.stack([_smooth_field(rng, shape, 4).ravel() for _ in range(3)], axis=1) * deform
    rot = _random_rotation(rng)
    centre = rng.uniform(-0.08, 0.08, 3) * half
    q = ((xyz + u - centre) @ rot).astype(np.float32)  # object frame: rot.T @ p
    if kind == "ellipsoid":
        axes = s * np.array([rng.uniform(0.75, 0.9), rng.uniform(0.5, 0.7), rng.uniform(0.4, 0.6)])
        f = np.sqrt(((q / axes) ** 2).sum(1)) - 1.0
    else:
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
        qx, qy = q[:, 0], q[:, 1] + radius * (1 - np.cos(theta)) / 2
        dy = radius - qy
        rho = np.sqrt(qx**2 + dy**2)
        x_s, y_s = radius * np.arctan2(qx, dy), radius - rho  # unbent (straight) coordinates
        rad = (y_s / b) ** 2 + (q[:, 2] / c) ** 2
        f = (np.abs(x_s / a) ** (2 * power) + rad**power) ** (1.0 / (2 * power)) - 1.0
    mask = (f < 0).reshape(shape)
    lab, n = ndimage.label(mask)
    if n > 1:
        mask = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    return ndimage.binary_fill_holes(mask).astype(np.uint8)


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


def _signed_distance(mask: np.ndarray, spacing) -> np.ndarray:
    """float32 (D, H, W) signed distance to the mask boundary in mm (negative inside); spacing (x, y, z)."""
    mask = mask.astype(bool)
    sampling = tuple(spacing[::-1])
    if not mask.any():
        return np.full(mask.shape, 1e3, np.float32)
    outside = ndimage.distance_transform_edt(~mask, sampling=sampling)
    inside = ndimage.distance_transform_edt(mask, sampling=sampling)
    return (outside - inside).astype(np.float32)


def _soft(sd: np.ndarray, spacing) -> np.ndarray:
    """Soft occupancy in [0, 1] from a signed distance (mm): a sub-voxel ramp at the boundary."""
    width = 0.35 * min(spacing)
    return (1.0 / (1.0 + np.exp(np.clip((sd + 0.5 * min(spacing)) / width, -30, 30)))).astype(np.float32)


def _membrane(sd: np.ndarray, spacing) -> np.ndarray:
    """EM membrane profile: a Gaussian line of ~1 voxel width centred on the boundary."""
    w = 0.6 * min(spacing)
    return np.exp(-((sd + 0.5 * min(spacing)) / w) ** 2).astype(np.float32)


def _clear_of_border(mask: np.ndarray, margin: int) -> bool:
    inner = np.zeros_like(mask, dtype=bool)
    inner[margin:-margin, margin:-margin, margin:-margin] = True
    return bool(mask.any()) and not mask[~inner].any()
