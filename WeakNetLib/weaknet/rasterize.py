"""Closed mesh → voxel mask in any grid (oblique, anisotropic), and the signed distance to a mask's boundary.

Rasterization works in continuous index space on the mesh's bounding box only: vertices are mapped to
(i, j, k) with the grid's inverse affine, rays along i through every voxel centre (j, k) are crossed with
the triangles, and the crossings toggle inside/outside along each ray (parity). Cost grows with the
mesh's surface and bounding box, not with the grid.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .volume import Geometry

# Rays are nudged off the integer (j, k) lattice by tiny irrational amounts so that no ray passes exactly
# through a mesh vertex or edge (which would count a crossing twice or never).
_RAY_NUDGE = np.array([3.1415926e-7, 2.7182818e-7])


def rasterize_mesh(vertices: np.ndarray, faces: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Voxels whose centres lie inside the closed mesh.

    vertices: (V, 3) LPS mm; faces: (F, 3) int. Returns uint8 (D, H, W) with ``geometry.shape``, 1 inside.
    """
    out = np.zeros(geometry.shape, np.uint8)
    box, block = rasterize_box(vertices, faces, geometry)
    if block is not None:
        out[box] = block
    return out


class MaskRasterizer:
    """Keeps one mask (D, H, W) of ``geometry`` up to date as a mesh changes (interactive fitting).

    :meth:`update` rasterizes only the mesh's bounding box: ``box`` (slices into (D, H, W)) and ``block``
    (uint8 0/1, a new array each update, or None when the mesh misses the grid). The whole-grid ``mask`` is
    made when first read and then kept in step lazily: a read after updates clears the box written last
    and writes the newest one, so clicking costs the box, never the grid, whether or not it is read.
    """

    def __init__(self, geometry: Geometry) -> None:
        self.geometry = geometry
        self._mask: np.ndarray | None = None
        self._written: tuple[slice, slice, slice] = (slice(0, 0),) * 3
        self.box: tuple[slice, slice, slice] = (slice(0, 0),) * 3
        self.block: np.ndarray | None = None

    def update(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        """Rasterize the mesh (vertices (V, 3) LPS mm, faces (F, 3)) into :attr:`box` and :attr:`block`."""
        self.box, self.block = rasterize_box(vertices, faces, self.geometry)

    @property
    def mask(self) -> np.ndarray:
        """The current template on the whole grid, uint8 (D, H, W) (the same array every time; updated in
        place when read after :meth:`update`)."""
        if self._mask is None:
            self._mask = np.zeros(self.geometry.shape, np.uint8)
            self._written = (slice(0, 0),) * 3
        if self._written is not self.box:
            self._mask[self._written] = 0
            if self.block is not None:
                self._mask[self.box] = self.block
            self._written = self.box
        return self._mask


def rasterize_box(vertices: np.ndarray, faces: np.ndarray, geometry: Geometry
                  ) -> tuple[tuple[slice, slice, slice], np.ndarray | None]:
    """The mask restricted to the mesh's bounding box: (slices into (D, H, W), uint8 block or None)."""
    ijk = geometry.to_index(vertices)
    size = np.asarray(geometry.size)
    lo = np.maximum(np.ceil(ijk.min(axis=0)).astype(np.int64), 0)
    hi = np.minimum(np.floor(ijk.max(axis=0)).astype(np.int64), size - 1)
    empty = (slice(0, 0),) * 3
    if np.any(hi < lo):
        return empty, None
    ni, nj, nk = hi - lo + 1
    # corner coordinates per triangle: i (F, 3) and ray-plane j, k (F, 3), nudged off the lattice
    ti_c = ijk[:, 0][faces]
    tj = (ijk[:, 1] - _RAY_NUDGE[0])[faces]
    tk = (ijk[:, 2] - _RAY_NUDGE[1])[faces]
    # per triangle, the lattice rays (j, k) inside its projected bounding box
    jlo = np.maximum(np.ceil(np.minimum(np.minimum(tj[:, 0], tj[:, 1]), tj[:, 2])).astype(np.int64), lo[1])
    jhi = np.minimum(np.floor(np.maximum(np.maximum(tj[:, 0], tj[:, 1]), tj[:, 2])).astype(np.int64), hi[1])
    klo = np.maximum(np.ceil(np.minimum(np.minimum(tk[:, 0], tk[:, 1]), tk[:, 2])).astype(np.int64), lo[2])
    khi = np.minimum(np.floor(np.maximum(np.maximum(tk[:, 0], tk[:, 1]), tk[:, 2])).astype(np.int64), hi[2])
    # per triangle, 2-D barycentric coordinates as linear functions of the ray offset from its first corner:
    # u = qj·d2k/det − qk·d2j/det, w = qk·d1j/det − qj·d1k/det (edge-on triangles, det = 0, are never hit)
    d1j, d1k = tj[:, 1] - tj[:, 0], tk[:, 1] - tk[:, 0]
    d2j, d2k = tj[:, 2] - tj[:, 0], tk[:, 2] - tk[:, 0]
    det = d1j * d2k - d1k * d2j
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = np.stack([tj[:, 0], tk[:, 0], d2k / det, d2j / det, d1j / det, d1k / det], axis=1)
    jlo[det == 0] = hi[1] + 1  # an edge-on triangle covers no ray
    rays = _Rays(ti_c, coef, jlo, jhi, klo, khi, lo, ni, nj)
    block = np.empty((nk, nj, ni), np.uint8)
    slabs = _slabs(lo[2], hi[2], block.size)
    if len(slabs) == 1:
        tried = rays.fill(*slabs[0], block)
    else:
        tried = sum(_pool().map(lambda slab: rays.fill(*slab, block), slabs))
    if not tried:
        return empty, None
    box = (slice(lo[2], hi[2] + 1), slice(lo[1], hi[1] + 1), slice(lo[0], hi[0] + 1))
    return box, block


PARALLEL_VOXELS = 400_000
"""Bounding boxes of at least this many voxels are rasterized in slabs along k on :data:`THREADS` threads
(numpy releases the GIL in its array loops: 4.6 → 3.4 ms on two idle cores for a liver-sized box of
1.1 M voxels)."""
THREADS = min(2, os.cpu_count() or 1)
_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(THREADS, thread_name_prefix="weaknet-rasterize")
    return _executor


def _slabs(k0: int, k1: int, voxels: int) -> list[tuple[int, int]]:
    """Inclusive ray-plane k ranges that split [k0, k1] for the threads (one range for a small box)."""
    parts = THREADS if voxels >= PARALLEL_VOXELS and k1 > k0 else 1
    edges = np.linspace(k0, k1 + 1, parts + 1).round().astype(int)
    return [(int(a), int(b) - 1) for a, b in zip(edges[:-1], edges[1:]) if b > a]


class _Rays:
    """The triangles of one mesh in a box's index space, ready to be crossed with the lattice rays along i.

    ti_c (F, 3): corner i; coef (F, 6): first corner (j, k) and the barycentric coefficients; jlo, jhi, klo, khi
    (F,): each triangle's inclusive ray range (clipped to the box); lo (3,): the box's first voxel; ni, nj: its
    size along i and j.
    """

    def __init__(self, ti_c, coef, jlo, jhi, klo, khi, lo, ni, nj) -> None:
        self.ti_c, self.coef, self.jlo, self.jhi, self.klo, self.khi = ti_c, coef, jlo, jhi, klo, khi
        self.lo, self.ni, self.nj = lo, ni, nj

    def fill(self, k0: int, k1: int, block: np.ndarray) -> int:
        """Write the inside/outside of the rays with k in [k0, k1] into their rows of ``block`` (nk, nj, ni)
        uint8; returns the number of (ray, triangle) pairs tried (0: the mesh covers none of these rays)."""
        lo, ni, nj = self.lo, self.ni, self.nj
        klo, khi = np.maximum(self.klo, k0), np.minimum(self.khi, k1)
        nj_t = np.maximum(self.jhi - self.jlo + 1, 0)
        count = nj_t * np.maximum(khi - klo + 1, 0)
        rows = block[k0 - lo[2]:k1 - lo[2] + 1]
        t = np.repeat(np.arange(len(count)), count)
        if not len(t):
            rows[...] = 0
            return 0
        candidates = len(t)
        local = np.arange(candidates) - np.repeat(np.cumsum(count) - count, count)
        rj = self.jlo[t] + local % nj_t[t]
        rk = klo[t] + local // nj_t[t]
        c = self.coef[t]  # (T, 6)
        qj, qk = rj - c[:, 0], rk - c[:, 1]
        u = qj * c[:, 2] - qk * c[:, 3]
        w = qk * c[:, 4] - qj * c[:, 5]
        hit = (u >= 0) & (w >= 0) & (u + w <= 1)
        t, u, w, rj, rk = t[hit], u[hit], w[hit], rj[hit], rk[hit]
        i0 = self.ti_c[t, 0]
        crossing = i0 + u * (self.ti_c[t, 1] - i0) + w * (self.ti_c[t, 2] - i0)
        # voxel centres i >= the crossing are toggled; parity along each ray gives inside
        start = np.clip(np.ceil(crossing).astype(np.int64) - lo[0], 0, ni)
        width = -(-(ni + 1) // 8) * 8  # row length of the toggles: room for a crossing past the box, whole words
        flat = ((rk - k0) * nj + (rj - lo[1])) * width + start
        # parity of the crossings at or before each voxel: a few thousand toggles, then one pass over the rows
        toggles = np.zeros((k1 - k0 + 1, nj, width), np.uint8)
        flat.sort()  # a voxel toggled an even number of times (a thin part within one voxel) stays 0
        ends = np.flatnonzero(np.r_[flat[1:] != flat[:-1], True])
        toggles.reshape(-1)[flat[ends[np.diff(ends, prepend=-1) % 2 == 1]]] = 1
        rows[...] = _prefix_parity(toggles)[:, :, :ni]
        return candidates


def _prefix_parity(toggles: np.ndarray) -> np.ndarray:
    """Running XOR of 0/1 bytes along the last axis of ``toggles`` (…, W), W a multiple of 8, in place
    (returned).

    Eight bytes at a time: each little-endian 64-bit word gets its own prefix by three shifted XORs, then
    the parity of all words before it on the row (a short running XOR over W / 8 words) is spread over its
    bytes. ≈ 3× faster than ``np.bitwise_xor.accumulate`` along the bytes (0.9 vs 2.7 ms on 1.2 M voxels).
    """
    words = toggles.view(np.dtype("<u8"))  # (…, W / 8)
    shifted = np.empty_like(words)
    for bits in (8, 16, 32):
        np.left_shift(words, bits, out=shifted)
        words ^= shifted
    carry = (words >> np.uint64(56)).astype(np.uint8)  # parity of each word's 8 bytes
    before = np.bitwise_xor.accumulate(carry, axis=-1)
    before ^= carry  # parity of the words before each one
    np.multiply(before, np.uint64(0x0101010101010101), out=shifted, dtype=words.dtype, casting="unsafe")
    words ^= shifted
    return toggles


def signed_distance(mask: np.ndarray, geometry: Geometry, band_mm: float | None = None) -> np.ndarray:
    """Signed distance (mm) to the mask's boundary: float32 (D, H, W), negative inside, positive outside.

    The one convention of WeakNet (templates, phantoms, loss weights): the boundary lies half-way between
    an inside and an outside voxel centre. A voxel at distance d from its nearest voxel centre on the
    other side, reached by index steps Δ, gets ±d·(1 − ½ / max|Δ|): exactly ±(d − ½ spacing) when the
    boundary is normal to an index axis, whatever that axis's spacing (so ±½ spacing next to it), and
    ±d/2 between diagonal neighbours. Exact Euclidean distance transforms with the grid's anisotropic
    spacing. ``band_mm`` limits the computation to the mask's bounding box grown by that margin; voxels
    beyond it get ±``band_mm``. An empty mask gives +``band_mm`` (or +inf) everywhere.
    """
    from scipy.ndimage import distance_transform_edt

    m = np.asarray(mask) > 0
    sampling = np.asarray(geometry.spacing, float)[::-1]  # (D, H, W) axes = (k, j, i)
    cap = np.inf if band_mm is None else float(band_mm)
    out = np.full(m.shape, cap, np.float32)
    if not m.any():
        return out
    if m.all():
        out[...] = -cap
        return out
    if band_mm is None:
        box = (slice(None),) * 3
    else:
        idx = [np.nonzero(m.any(axis=tuple(a for a in range(3) if a != axis)))[0] for axis in range(3)]
        pad = np.ceil(cap / sampling).astype(int) + 1
        box = tuple(slice(max(ix[0] - p, 0), min(ix[-1] + p + 1, n)) for ix, p, n in zip(idx, pad, m.shape))
    sub = m[box]
    sd = np.zeros(sub.shape, np.float32)
    grid = np.indices(sub.shape, dtype=np.int32)
    for side, sign in ((~sub, 1.0), (sub, -1.0)):  # voxels on this side, distance to the other side
        dist, nearest = distance_transform_edt(side, sampling=sampling, return_indices=True)
        steps = np.abs(nearest - grid).max(axis=0)
        sd[side] = sign * dist[side] * (1.0 - 0.5 / steps[side])
    out[box] = np.clip(sd, -cap, cap)
    return out
