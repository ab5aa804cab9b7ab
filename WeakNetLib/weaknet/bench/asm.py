"""Active Surface fitting: per-click latency (re-fit + rasterize into 256³) and IoU against N points.

Latency: one point is added to 25, 50, 125, 250 points sampled on a shape; each update is a warm-start
re-fit plus rasterization into a 256³ 1 mm grid, single thread. The reference, measured in the same run,
is a from-scratch fit plus a rasterization of the whole grid's extent (every voxel tested).
Quality: IoU of the rasterized fit against the true mask for each shape and N.
"""

from __future__ import annotations

import os
import time

import numpy as np

from ..volume import Geometry

SHAPES = ("sphere", "ellipsoid", "bean", "banana", "c_shape")
CONCAVE = ("bean", "banana", "c_shape")


def _rotation(seed: int) -> np.ndarray:
    q = np.random.default_rng(seed).normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def shape_geometry(spacing=(0.8, 1.0, 1.6), oblique: bool = True, extent_mm: float = 64.0) -> Geometry:
    """A grid centred on LPS (0, 0, 0) covering ``extent_mm`` along each axis; when ``oblique``, a rotated
    and axis-permuted direction matrix (index axes not aligned with LPS)."""
    spacing = np.asarray(spacing, float)
    size = np.ceil(extent_mm / spacing).astype(int)
    direction = _rotation(7)[:, [2, 0, 1]] if oblique else np.eye(3)
    origin = -direction @ (spacing * (size - 1) / 2)
    return Geometry.create(size, spacing, origin, direction)


def shape_mask(kind: str, geometry: Geometry, seed: int = 3) -> np.ndarray:
    """uint8 (D, H, W) mask of a synthetic shape of about 5k–20k voxels (at ~1.3 mm³ voxels) centred at the
    LPS origin in a random orientation.

    sphere r 14 mm; ellipsoid 20×13×9 mm; bean, banana and c_shape are ellipsoids bent along a circular
    arc (bend of ≈100°, 180° and 270°; the C has blunt, tube-like ends, like a lateral ventricle).
    """
    ijk = np.indices(geometry.shape, dtype=np.float32)[::-1].reshape(3, -1).T
    x, y, z = (geometry.to_lps(ijk) @ _rotation(seed)).T  # object coordinates, mm
    if kind == "sphere":
        inside = x ** 2 + y ** 2 + z ** 2 <= 14.0 ** 2
    elif kind == "ellipsoid":
        inside = (x / 20) ** 2 + (y / 13) ** 2 + (z / 9) ** 2 <= 1
    else:
        arc_radius, half_length, a, b, power = {"bean": (25.0, 22.0, 11.0, 9.0, 2),
                                                "banana": (18.0, 28.0, 7.0, 7.0, 2),
                                                "c_shape": (15.0, 35.0, 7.0, 7.0, 4)}[kind]
        xc = x + arc_radius  # arc centre at (−R, 0, 0); the arc passes through the origin
        rho = np.hypot(xc, y)
        u = arc_radius * np.arctan2(y, xc) / half_length
        inside = ((rho - arc_radius) / a) ** 2 + (z / b) ** 2 + np.abs(u) ** power <= 1
    return inside.reshape(geometry.shape).astype(np.uint8)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks of the same shape."""
    a, b = a > 0, b > 0
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def quality_table(ns=(10, 25, 50, 125, 250), shapes=SHAPES, **asm_options) -> dict[str, dict[int, float]]:
    """IoU of fit + rasterization against the true mask, per shape and number of FPS points."""
    from ..asm import ActiveSurface
    from ..rasterize import rasterize_mesh
    from ..sampling import sample_surface_points

    geometry = shape_geometry()
    table = {}
    for kind in shapes:
        truth = shape_mask(kind, geometry)
        pts_all = sample_surface_points(truth, geometry, max(ns))
        table[kind] = {}
        for n in ns:
            surface = ActiveSurface(**asm_options).fit(pts_all[:n])
            table[kind][n] = iou(rasterize_mesh(surface.vertices, surface.faces, geometry), truth)
    return table


def add_arguments(parser) -> None:
    parser.add_argument("--repeats", type=int, default=30, help="clicks timed per N (default 30)")
    parser.add_argument("--shape", default="bean", choices=SHAPES, help="shape clicked on (default bean)")
    parser.add_argument("--no-quality", action="store_true", help="skip the IoU-vs-N table")


def run(args) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # single-threaded BLAS is then up to the environment variables
        threadpool_limits = None
    if threadpool_limits is not None:
        with threadpool_limits(1):
            _run(args)
    else:
        _run(args)
    return 0


def _run(args) -> None:
    from ..asm import ActiveSurface
    from ..rasterize import rasterize_mesh
    from ..sampling import sample_surface_points

    shape_grid = shape_geometry(spacing=(1.0, 1.0, 1.0), oblique=False, extent_mm=80)
    truth = shape_mask(args.shape, shape_grid)
    grid = Geometry.create((256, 256, 256), (1.0, 1.0, 1.0), (-128.0, -128.0, -128.0))
    pool = sample_surface_points(truth, shape_grid, 250 + args.repeats)
    rng = np.random.default_rng(0)
    out = np.zeros(grid.shape, np.uint8)
    print(f"ASM per-click latency: re-fit + rasterize into 256³ 1 mm, shape {args.shape}, single thread")
    print(f"{'N':>5} {'median ms':>10} {'p95 ms':>8} {'fit ms':>8} {'full-grid ms':>13} {'ratio':>7}")
    surface = ActiveSurface()
    for n in (25, 50, 125, 250):
        base = pool[:n]
        t0 = time.perf_counter()
        surface.fit(base)
        fit_ms = 1e3 * (time.perf_counter() - t0)
        warm = surface.vertices.copy()
        times = []
        for r in range(args.repeats):
            extra = pool[250 + r] if n == 250 else pool[n + int(rng.integers(250 - n))]
            surface.vertices = warm.copy()
            t0 = time.perf_counter()
            surface.update(np.vstack([base, extra]))
            rasterize_mesh(surface.vertices, surface.faces, grid, out=out)
            times.append(1e3 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        _rasterize_full(surface.vertices, surface.faces, grid)
        full_ms = 1e3 * (time.perf_counter() - t0)
        med = float(np.median(times))
        print(f"{n:>5} {med:>10.2f} {np.percentile(times, 95):>8.2f} {fit_ms:>8.1f} {full_ms:>13.1f} "
              f"{full_ms / med:>6.0f}×")
    if not args.no_quality:
        ns = (10, 25, 50, 125, 250)
        print("\nIoU of the rasterized fit vs the true mask (FPS points; oblique, anisotropic 0.8×1×1.6 mm)")
        print(f"{'shape':>10} " + " ".join(f"{'N=' + str(n):>7}" for n in ns))
        for kind, row in quality_table(ns).items():
            print(f"{kind:>10} " + " ".join(f"{row[n]:>7.3f}" for n in ns))


def _rasterize_full(vertices: np.ndarray, faces: np.ndarray, grid: Geometry) -> np.ndarray:
    """Reference: inside test of every voxel centre of the grid (VTK's enclosed-points filter)."""
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk, vtk_to_numpy

    from ..mesh import to_polydata

    ijk = np.indices(grid.shape, dtype=np.float32)[::-1].reshape(3, -1).T
    pts = vtk.vtkPoints()
    pts.SetData(numpy_to_vtk(grid.to_lps(ijk), deep=True))
    cloud = vtk.vtkPolyData()
    cloud.SetPoints(pts)
    sel = vtk.vtkSelectEnclosedPoints()
    sel.SetInputData(cloud)
    sel.SetSurfaceData(to_polydata(vertices, faces))
    sel.Update()
    return vtk_to_numpy(sel.GetOutput().GetPointData().GetArray("SelectedPoints")).reshape(grid.shape)
