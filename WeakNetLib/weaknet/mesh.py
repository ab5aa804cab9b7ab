"""Closed triangle meshes: the icosphere template, normals, the graph Laplacian, VTK conversion and file
output, and sanity checks (watertight, consistently oriented, outward, free of self-intersections).

Vertices are (V, 3) float arrays (LPS mm once fitted), faces (F, 3) int arrays ordered counter-clockwise
seen from outside, so that face normals point outwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from .errors import InputError

if TYPE_CHECKING:
    from scipy.spatial import cKDTree


def icosphere(subdivisions: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Unit sphere mesh by repeated 4-to-1 subdivision of an icosahedron.

    Returns vertices (10·4^s + 2, 3) on the unit sphere and faces (20·4^s, 3) int64, outward oriented.
    ``subdivisions=4`` gives 2,562 vertices and 5,120 faces.
    """
    if subdivisions < 0:
        raise InputError(f"subdivisions must be >= 0, got {subdivisions}")
    t = (1.0 + 5 ** 0.5) / 2.0
    v = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
                  [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], float)
    f = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
                  [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
                  [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]], np.int64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for _ in range(subdivisions):
        edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
        uniq, inv = np.unique(edges, axis=0, return_inverse=True)
        mid = v[uniq[:, 0]] + v[uniq[:, 1]]
        mid /= np.linalg.norm(mid, axis=1, keepdims=True)
        m = inv.reshape(3, -1) + len(v)  # midpoint index of edges (01, 12, 20) per face
        a, b, c = f.T
        f = np.concatenate([np.stack([a, m[0], m[2]], 1), np.stack([b, m[1], m[0]], 1),
                            np.stack([c, m[2], m[1]], 1), np.stack([m[0], m[1], m[2]], 1)])
        v = np.concatenate([v, mid])
    return v, f


def face_normals(vertices: np.ndarray, faces: np.ndarray, normalize: bool = True) -> np.ndarray:
    """(F, 3) face normals (unit, or area-weighted ×2 when ``normalize`` is False)."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    n = np.cross(b - a, c - a)
    if normalize:
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)
    return n


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) unit vertex normals, the area-weighted mean of the adjacent face normals."""
    fn = face_normals(vertices, faces, normalize=False)
    n = np.zeros_like(vertices)
    for i in range(3):
        np.add.at(n, faces[:, i], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)


def adjacency(faces: np.ndarray, n_vertices: int) -> sp.csr_matrix:
    """(V, V) symmetric 0/1 vertex adjacency of the mesh edges."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    a = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n_vertices, n_vertices)).tocsr()
    a = ((a + a.T) > 0).astype(float)
    return a.tocsr()


def laplacian(faces: np.ndarray, n_vertices: int) -> sp.csr_matrix:
    """(V, V) uniform ("umbrella") Laplacian L = I − D⁻¹A; L·X is each vertex minus its neighbours' mean."""
    a = adjacency(faces, n_vertices)
    deg = np.asarray(a.sum(axis=1)).ravel()
    return (sp.identity(n_vertices, format="csr") - sp.diags(1.0 / deg) @ a).tocsr()


def point_distances(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, candidates: int = 16,
                    centres: cKDTree | None = None) -> np.ndarray:
    """(N,) exact Euclidean distance from points (N, 3) to a triangle mesh (V, 3), (F, 3), same units.

    Each point is tested against the ``candidates`` triangles with the nearest centres (enough for meshes
    of small, even triangles such as fitted templates and marching-cubes surfaces; :func:`face_distances`).
    ``centres``: a ``scipy.spatial.cKDTree`` of the faces' centres, when the caller keeps one for this mesh
    (building it is most of the cost for a few points: ≈ 3 ms at 5,120 faces).
    """
    from scipy.spatial import cKDTree

    p = np.asarray(points, dtype=float)
    k = min(candidates, len(faces))
    if centres is None:
        centres = cKDTree(vertices[faces].mean(axis=1))
    return face_distances(p, vertices, faces, centres.query(p, k=k)[1].reshape(len(p), k))


def face_distances(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, candidates: np.ndarray
                   ) -> np.ndarray:
    """(N,) exact Euclidean distance from each point (N, 3) to the nearest of its ``candidates`` (N, k)
    triangles (indices into ``faces`` (F, 3) of the mesh with ``vertices`` (V, 3)), same units; the
    closest point on each triangle by Voronoi regions (Ericson, Real-Time Collision Detection, §5.1.5)."""
    p = np.asarray(points, dtype=float)
    idx = np.asarray(candidates).reshape(len(p), -1)
    k = idx.shape[1]
    q = np.repeat(p, k, axis=0)
    a, b, c = (vertices[faces[idx.ravel(), i]] for i in range(3))
    ab, ac = b - a, c - a
    dot = lambda u, v: np.einsum("ij,ij->i", u, v)  # noqa: E731
    d1, d2 = dot(ab, q - a), dot(ac, q - a)
    d3, d4 = dot(ab, q - b), dot(ac, q - b)
    d5, d6 = dot(ab, q - c), dot(ac, q - c)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = va + vb + vc
        closest = a + ab * (vb / denom)[:, None] + ac * (vc / denom)[:, None]  # inside the face
        # Voronoi regions of the edges and corners, in reverse order of precedence
        t = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        closest = np.where(((va <= 0) & (d4 >= d3) & (d5 >= d6))[:, None], b + t[:, None] * (c - b), closest)
        t = d2 / (d2 - d6)
        closest = np.where(((vb <= 0) & (d2 >= 0) & (d6 <= 0))[:, None], a + t[:, None] * ac, closest)
        closest = np.where(((d6 >= 0) & (d5 <= d6))[:, None], c, closest)
        t = d1 / (d1 - d3)
        closest = np.where(((vc <= 0) & (d1 >= 0) & (d3 <= 0))[:, None], a + t[:, None] * ab, closest)
        closest = np.where(((d3 >= 0) & (d4 <= d3))[:, None], b, closest)
        closest = np.where(((d1 <= 0) & (d2 <= 0))[:, None], a, closest)
    dist = np.linalg.norm(q - closest, axis=1).reshape(len(p), k)
    return np.nan_to_num(dist, nan=np.inf).min(axis=1)


def volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed enclosed volume (mm³ for mm vertices); positive for an outward-oriented closed mesh."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def to_polydata(vertices: np.ndarray, faces: np.ndarray):
    """A ``vtkPolyData`` with the given points (V, 3) and triangles (F, 3)."""
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray

    pts = vtk.vtkPoints()
    pts.SetData(numpy_to_vtk(np.ascontiguousarray(vertices, dtype=np.float64), deep=True))
    f = np.asarray(faces, dtype=np.int64)
    offsets = np.arange(0, 3 * len(f) + 1, 3, dtype=np.int64)
    cells = vtk.vtkCellArray()
    cells.SetData(numpy_to_vtkIdTypeArray(offsets, deep=True),
                  numpy_to_vtkIdTypeArray(np.ascontiguousarray(f.ravel()), deep=True))
    poly = vtk.vtkPolyData()
    poly.SetPoints(pts)
    poly.SetPolys(cells)
    return poly


def from_polydata(poly) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) and triangles (F, 3) of a triangulated ``vtkPolyData``."""
    from vtk.util.numpy_support import vtk_to_numpy

    v = vtk_to_numpy(poly.GetPoints().GetData()).astype(float)
    conn = vtk_to_numpy(poly.GetPolys().GetConnectivityArray())
    return v, conn.reshape(-1, 3).astype(np.int64)


_WRITERS = {".vtp": "vtkXMLPolyDataWriter", ".vtk": "vtkPolyDataWriter", ".stl": "vtkSTLWriter",
            ".obj": "vtkOBJWriter", ".ply": "vtkPLYWriter"}


def check_mesh_path(path: str | Path) -> str:
    """The VTK writer class name for a mesh file name; :class:`InputError` for an unknown extension."""
    p = Path(path)
    writer_name = _WRITERS.get(p.suffix.lower())
    if writer_name is None:
        raise InputError(f"{p}: unknown mesh format; use one of {', '.join(_WRITERS)}")
    return writer_name


def write_mesh(vertices: np.ndarray, faces: np.ndarray, path: str | Path) -> Path:
    """Write a mesh (coordinates as given, LPS mm in WeakNet) to .vtp, .vtk, .stl, .obj or .ply."""
    import vtk

    p = Path(path)
    writer_name = check_mesh_path(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    writer = getattr(vtk, writer_name)()
    writer.SetFileName(str(p))
    writer.SetInputData(to_polydata(vertices, faces))
    if not writer.Write():
        raise InputError(f"{p}: could not write the mesh")
    return p


def read_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a triangle mesh written by :func:`write_mesh` (.vtp, .vtk, .stl, .obj, .ply)."""
    import vtk

    p = Path(path)
    readers = {".vtp": vtk.vtkXMLPolyDataReader, ".vtk": vtk.vtkPolyDataReader, ".stl": vtk.vtkSTLReader,
               ".obj": vtk.vtkOBJReader, ".ply": vtk.vtkPLYReader}
    if p.suffix.lower() not in readers or not p.is_file():
        raise InputError(f"{p}: not a readable mesh file ({', '.join(readers)})")
    reader = readers[p.suffix.lower()]()
    reader.SetFileName(str(p))
    reader.Update()
    return from_polydata(reader.GetOutput())


@dataclass(frozen=True)
class MeshCheck:
    """Result of :func:`check_mesh`."""

    watertight: bool  # every edge shared by exactly two faces
    consistent: bool  # each shared edge traversed in opposite directions by its two faces
    outward: bool  # positive enclosed volume
    self_intersections: int  # number of intersecting pairs of non-adjacent faces

    @property
    def ok(self) -> bool:
        return self.watertight and self.consistent and self.outward and self.self_intersections == 0


def check_mesh(vertices: np.ndarray, faces: np.ndarray) -> MeshCheck:
    """Sanity checks of a closed triangle mesh (V, 3), (F, 3)."""
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    undirected, counts = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
    watertight = bool(np.all(counts == 2))
    consistent = len(np.unique(directed, axis=0)) == len(directed)
    return MeshCheck(watertight, watertight and consistent, volume(vertices, faces) > 0,
                     len(self_intersections(vertices, faces)))


PAIR_CHUNK = 1 << 16
"""Candidate face pairs tested at once by :func:`self_intersections`."""


def self_intersections(vertices: np.ndarray, faces: np.ndarray, tol: float = 1e-9, first: bool = False
                       ) -> np.ndarray:
    """(K, 2) pairs of face indices (i < j, sorted) that intersect, among pairs sharing no vertex.

    Candidates are the pairs whose bounding boxes overlap, found through a uniform grid of cells (each face
    registered in the cells its box covers; cells about the size of a typical face, doubled while faces
    would cover more than 8 cells each on average, so one long face cannot make the search quadratic), in
    chunks of :data:`PAIR_CHUNK`; each candidate pair is decided exactly by the separating-axis test (2 face
    normals + 9 edge-edge cross products). ``first``: stop after the first chunk that holds an intersecting
    pair (enough to know whether the mesh intersects itself: a badly folded mesh is found in milliseconds).
    """
    tri = np.asarray(vertices, float)[faces]  # (F, 3, 3)
    if _star_shaped(tri, faces):
        return np.zeros((0, 2), np.int64)
    lo, hi = tri.min(axis=1) - tol, tri.max(axis=1) + tol
    scale = 1e-12 * (np.abs(tri).max() + 1.0) ** 2
    found = []
    for i, j in _box_pairs(lo, hi):
        shared = (faces[i][:, :, None] == faces[j][:, None, :]).any(axis=(1, 2))
        i, j = i[~shared], j[~shared]
        # the two face normals first (they separate most candidates), then the nine edge-edge axes
        for axes in (_face_axes, _edge_axes):
            a, b = tri[i], tri[j]
            separated = np.zeros(len(i), bool)
            for ax in axes(a, b):
                norm = np.linalg.norm(ax, axis=1)
                pa = np.einsum("kvc,kc->kv", a, ax)
                pb = np.einsum("kvc,kc->kv", b, ax)
                gap = tol * np.maximum(norm, 1e-30)
                separated |= (norm > scale) & ((pa.max(1) < pb.min(1) - gap) | (pb.max(1) < pa.min(1) - gap))
            i, j = i[~separated], j[~separated]
        if len(i):
            found.append(i * len(faces) + j)
            if first:
                break
    if not found:
        return np.zeros((0, 2), np.int64)
    pair = np.sort(np.concatenate(found))
    return np.stack([pair // len(faces), pair % len(faces)], axis=1)


def _star_shaped(tri: np.ndarray, faces: np.ndarray) -> bool:
    """Whether a closed mesh (triangles (F, 3 corners, 3), ``faces`` (F, 3)) is star-shaped from its corners'
    centroid: every triangle seen from there turns outwards (positive signed volume) and their solid angles
    add up to one sphere (4π). Then each ray from the centroid meets exactly one triangle, so no two of them
    can meet (a sufficient test, ≈ 50× cheaper than the pair search; compact templates pass it)."""
    edges = np.stack([faces, np.roll(faces, -1, axis=1)], axis=2).reshape(-1, 2)
    n = int(faces.max()) + 1
    forward, backward = np.sort(edges[:, 0] * n + edges[:, 1]), np.sort(edges[:, 1] * n + edges[:, 0])
    if not np.array_equal(forward, backward) or np.any(forward[1:] == forward[:-1]):
        return False  # not closed, or not consistently oriented
    centred = tri - tri.reshape(-1, 3).mean(axis=0)
    a, b, c = centred[:, 0], centred[:, 1], centred[:, 2]
    det = np.einsum("ij,ij->i", a, np.cross(b, c))
    la, lb, lc = (np.linalg.norm(x, axis=1) for x in (a, b, c))
    if np.any(det <= 1e-9 * la * lb * lc):
        return False
    dot = lambda u, v: np.einsum("ij,ij->i", u, v)  # noqa: E731
    # solid angle of each triangle (Van Oosterom & Strackee 1983)
    omega = 2.0 * np.arctan2(det, la * lb * lc + dot(a, b) * lc + dot(a, c) * lb + dot(b, c) * la)
    return abs(float(omega.sum()) - 4.0 * np.pi) < 1e-6


def _face_axes(a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    """The normals (K, 3) of triangles a and b (K, 3 corners, 3)."""
    return [np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]) for t in (a, b)]


def _edge_axes(a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    """The nine cross products (K, 3) of an edge of triangle a with an edge of triangle b."""
    ea = np.roll(a, -1, axis=1) - a
    eb = np.roll(b, -1, axis=1) - b
    return [np.cross(ea[:, p], eb[:, q]) for p in range(3) for q in range(3)]


def _box_pairs(lo: np.ndarray, hi: np.ndarray):
    """Index pairs (i (K,), j (K,), i < j) of the axis-aligned boxes (F, 3) lo–hi that overlap, each once, in
    chunks of about :data:`PAIR_CHUNK` pairs sharing a grid cell."""
    n = len(lo)
    extent = hi - lo
    cell = max(float(np.median(extent.max(axis=1))), 1e-12)
    origin = lo.min(axis=0)
    while True:
        c0 = np.floor((lo - origin) / cell).astype(np.int64)
        c1 = np.floor((hi - origin) / cell).astype(np.int64)
        span = c1 - c0 + 1
        count = span.prod(axis=1)
        if count.sum() <= 8 * n:
            break
        cell *= 2
    # one entry per (face, cell it covers)
    face = np.repeat(np.arange(n), count)
    local = np.arange(len(face)) - np.repeat(np.cumsum(count) - count, count)
    sx, sy = span[face, 0], span[face, 1]
    cx = c0[face, 0] + local % sx
    cy = c0[face, 1] + (local // sx) % sy
    cz = c0[face, 2] + local // (sx * sy)
    dims = c1.max(axis=0) + 1
    key = (cz * dims[1] + cy) * dims[0] + cx
    order = np.argsort(key, kind="stable")
    key, face = key[order], face[order]
    # every pair of entries within one cell: entry p pairs with the after[p] entries that follow it there
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    sizes = np.diff(np.r_[starts, len(key)])
    pos = np.arange(len(key))
    after = np.repeat(sizes, sizes) - 1 - (pos - np.repeat(starts, sizes))
    total = np.cumsum(after)
    ends = np.searchsorted(total, np.arange(PAIR_CHUNK, total[-1] + PAIR_CHUNK, PAIR_CHUNK), side="right")
    begin = 0
    for end in np.append(ends, len(pos)):
        end = min(int(end) + 1, len(pos))
        if end <= begin:
            continue
        part = after[begin:end]
        first = np.repeat(pos[begin:end], part)
        second = first + 1 + (np.arange(len(first)) - np.repeat(np.cumsum(part) - part, part))
        begin = end
        i, j = face[first], face[second]
        # boxes that overlap share the cell of their overlap's lowest corner: the pair counts there only
        corner = np.maximum(lo[i], lo[j])
        keep = np.all(corner <= np.minimum(hi[i], hi[j]), axis=1)
        c = np.floor((corner - origin) / cell).astype(np.int64)
        keep &= (c[:, 2] * dims[1] + c[:, 1]) * dims[0] + c[:, 0] == key[first]
        i, j = i[keep], j[keep]
        yield np.minimum(i, j), np.maximum(i, j)
