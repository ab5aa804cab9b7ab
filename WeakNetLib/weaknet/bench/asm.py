"""Active Surface fitting: per-click latency (re-fit + rasterize into 256³) and IoU against N points.

Latency: one point is added to 25, 50, 125, 250 points sampled on a shape; each update is a warm-start
re-fit plus rasterization into a 256³ 1 mm grid, single thread. The reference, measured in the same run,
is a from-scratch fit plus a rasterization of the whole grid's extent (every voxel tested).
Quality: IoU of the rasterized fit against the true mask for each compact shape and N; for the thin,
curved anatomy phantoms (:data:`weaknet.phantoms.THIN_KINDS`) at 1 mm and at 1 × 1 × 2.5 mm, mean and
worst IoU over seeds and the median distance of the clicks to the rasterized template's surface.
Click by click: the same shapes clicked one point at a time, the warm-started re-fits against the fit of the
same points (what the front ends' deferred refinement shows once the clicks pause).
Rasterization: the voxel-centre inside test against a 4 × 4 × 4 supersampled reference.
Proposal: the cost of a correcting click on a model's proposal, against the fit it replaced (same run).
"""

from __future__ import annotations

import os
import time
from functools import partial

import numpy as np

from ..metrics import iou
from ..volume import Geometry

SHAPES = ("sphere", "ellipsoid", "bean", "banana", "c_shape")
CONCAVE = ("bean", "banana", "c_shape")
THIN_GRIDS = {"1 mm": ((1.0, 1.0, 1.0), (72, 72, 72)), "1×1×2.5 mm": ((1.0, 1.0, 2.5), (72, 72, 29))}
THIN_SEEDS = (0, 1, 2)


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
                                                "banana": (18.0, 28.0, 7.6, 7.6, 2),
                                                "c_shape": (15.0, 35.0, 7.0, 7.0, 4)}[kind]
        xc = x + arc_radius  # arc centre at (−R, 0, 0); the arc passes through the origin
        rho = np.hypot(xc, y)
        u = arc_radius * np.arctan2(y, xc) / half_length
        inside = ((rho - arc_radius) / a) ** 2 + (z / b) ** 2 + np.abs(u) ** power <= 1
    return inside.reshape(geometry.shape).astype(np.uint8)


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


def interactive_table(labels: dict, ns=(10, 15, 25, 50, 125), start: int = 6) -> dict[str, dict[int, tuple]]:
    """Click by click: from ``start`` FPS points, one point at a time through ``ActiveSurface.update`` (the
    warm-started re-fit, rest shape re-decided: what a click showed until the front ends refined to the fit)
    against the fit of the same points (what :meth:`~weaknet.asm.ActiveSurface.refine` shows once the clicks
    pause). Per shape (the compact ones and the first seed of each thin phantom on its 1 × 1 × 2.5 mm grid)
    and N: (IoU warm-started, IoU of the fit)."""
    from ..asm import ActiveSurface
    from ..rasterize import rasterize_mesh
    from ..sampling import sample_surface_points

    cases = [(kind, shape_mask(kind, shape_geometry()), shape_geometry()) for kind in SHAPES]
    cases += [(kind, vols[0].array, vols[0].geometry) for (kind, grid), vols in labels.items() if grid == "1×1×2.5 mm"]
    table = {}
    for name, truth, geometry in cases:
        pts = sample_surface_points(truth, geometry, max(ns))
        warm = ActiveSurface().fit(pts[:start])
        table[name] = {}
        for n in range(start + 1, max(ns) + 1):
            warm.update(pts[:n])
            if n in ns:
                table[name][n] = tuple(iou(rasterize_mesh(s.vertices, s.faces, geometry), truth)
                                       for s in (warm, ActiveSurface().fit(pts[:n])))
    return table


def thin_labels(grids=tuple(THIN_GRIDS), seeds=THIN_SEEDS) -> dict:
    """(kind, grid name) → list of label Volumes (oblique grids, one per seed) of the thin phantoms."""
    from ..phantoms import THIN_KINDS, make_label

    return {(kind, g): [make_label(kind, THIN_GRIDS[g][1], THIN_GRIDS[g][0], seed, oblique=True) for seed in seeds]
            for kind in THIN_KINDS for g in grids}


def thin_quality_table(labels: dict, ns=(10, 25, 50, 125, 250), **asm_options) -> dict:
    """(kind, grid) → {N: (mean IoU, worst IoU, median click-to-surface mm)} over the labels' seeds; the
    distance runs from each clicked point to the surface of the rasterized template."""
    from ..asm import ActiveSurface
    from ..rasterize import rasterize_mesh
    from ..sampling import sample_surface_points, surface_distances

    table = {}
    for key, volumes in labels.items():
        scores = {n: ([], []) for n in ns}
        for label in volumes:
            pts_all = sample_surface_points(label.array, label.geometry, max(ns))
            for n in ns:
                surface = ActiveSurface(**asm_options).fit(pts_all[:n])
                mask = rasterize_mesh(surface.vertices, surface.faces, label.geometry)
                scores[n][0].append(iou(mask, label.array))
                scores[n][1].extend(surface_distances(pts_all[:n], mask, label.geometry))
        table[key] = {n: (float(np.mean(a)), float(np.min(a)), float(np.median(d))) for n, (a, d) in scores.items()}
    return table


def print_thin_table(table: dict, ns) -> None:
    print(f"{'phantom':>12} {'grid':>11} " + " ".join(f"{'N=' + str(n):>18}" for n in ns))
    for (kind, grid), row in table.items():
        print(f"{kind:>12} {grid:>11} " + " ".join(f"{row[n][0]:.3f} ({row[n][1]:.3f}) {row[n][2]:.2f}".rjust(18)
                                                 for n in ns))
    print("mean IoU over seeds (worst) median click-to-surface mm")


def raster_error_table(labels: dict) -> None:
    """Print the voxel-centre rasterization of fitted thin templates (N = 50) against a 4 × 4 × 4
    supersampled reference: voxels whose centre test disagrees with an inside fraction ≥ ½, and the
    volume of the mask against the supersampled one and the mesh's exact enclosed volume."""
    from ..asm import ActiveSurface
    from ..mesh import volume
    from ..rasterize import rasterize_mesh
    from ..sampling import sample_surface_points

    print("\nRasterization (voxel-centre test) vs a 4×4×4 supersampled reference, fitted templates at N = 50")
    print(f"{'phantom':>12} {'grid':>11} | {'disagree % of mask':>18} | {'mask mm³':>9} {'supersampled':>12} "
          f"{'mesh exact':>10}")
    for (kind, grid), volumes in labels.items():
        label = volumes[0]
        g = label.geometry
        surface = ActiveSurface().fit(sample_surface_points(label.array, g, 50))
        mask = rasterize_mesh(surface.vertices, surface.faces, g)
        fine = Geometry.create(np.asarray(g.size) * 4, np.asarray(g.spacing) / 4,
                               g.to_lps(np.full((1, 3), -0.375))[0], g.direction_matrix)
        sub = rasterize_mesh(surface.vertices, surface.faces, fine).astype(np.float32)
        d, h, w = g.shape
        fraction = sub.reshape(d, 4, h, 4, w, 4).mean(axis=(1, 3, 5))
        voxel = float(np.prod(g.spacing))
        disagree = ((fraction >= 0.5) != mask.astype(bool)).sum() / max(mask.sum(), 1)
        print(f"{kind:>12} {grid:>11} | {100 * disagree:>18.2f} | {mask.sum() * voxel:>9.0f} "
              f"{fraction.sum() * voxel:>12.0f} {volume(surface.vertices, surface.faces):>10.0f}")


def add_arguments(parser) -> None:
    parser.add_argument("--repeats", type=int, default=40, help="clicks timed per N (default 40)")
    parser.add_argument("--shape", default="bean", choices=SHAPES + ("hippocampus",),
                        help="shape clicked on (default bean; hippocampus: the thin phantom, 1 mm)")
    parser.add_argument("--no-quality", action="store_true", help="skip the IoU-vs-N table")
    parser.add_argument("--ablation", action="store_true",
                        help="also print IoU at N = 50 and 125 with parts of the model switched off")


def run(args) -> int:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"  # effective for BLAS pools not yet started; see the printed note
    latency_table(args.shape, args.repeats)
    proposal_table(args.repeats)
    labels = None
    if not args.no_quality:
        ns = (10, 25, 50, 125, 250)
        print("\nIoU of the rasterized fit vs the true mask (FPS points on the true surface; oblique, "
              "permuted grid, 0.8×1.0×1.6 mm)")
        print(f"{'shape':>10} " + " ".join(f"{'N=' + str(n):>7}" for n in ns))
        for kind, row in quality_table(ns).items():
            print(f"{kind:>10} " + " ".join(f"{row[n]:>7.3f}" for n in ns))
        print(f"\nThin, curved phantoms (weaknet.phantoms, oblique grids, seeds {THIN_SEEDS})")
        labels = thin_labels()
        print_thin_table(thin_quality_table(labels, ns[1:]), ns[1:])
        raster_error_table(labels)
        ins = (10, 15, 25, 50, 125)
        print("\nClick by click (from 6 points, one at a time): warm-started re-fits / the fit of the points "
              "(what the front ends show once the clicks pause)")
        print(f"{'shape':>12} " + " ".join(f"{'N=' + str(n):>13}" for n in ins))
        rows = interactive_table(labels, ins)
        for kind, row in rows.items():
            print(f"{kind:>12} " + " ".join(f"{row[n][0]:.3f} / {row[n][1]:.3f}" for n in ins))
        print(f"{'mean':>12} " + " ".join(
            f"{np.mean([r[n][0] for r in rows.values()]):.3f} / {np.mean([r[n][1] for r in rows.values()]):.3f}"
            for n in ins))
    if args.ablation:
        ablation_table(labels)
    return 0


ABLATIONS = {
    "default": {},
    "no tube rest shape (bent ellipsoid at best)": {"tube": False},
    "no bent rest shape": {"bend": False},
    "no sheet rest shape": {"sheet": False},
    "ellipsoid rest shape only": {"bend": False, "tube": False, "sheet": False},
    "no vertex→point normal forces": {"normal_pull": 0.0},
    "one stiffness level (no coarse-to-fine)": {"taus": (2.0,)},
    "membrane only (β = 0)": {"beta": 0.0},
    "one pass (no plastic second pass)": {"passes": 1},
    "10,242 vertices (subdivisions 5)": {"subdivisions": 5},
}


def ablation_table(labels: dict | None = None, ns=(50, 125), thin_ns=(25, 50)) -> None:
    """Print IoU for each variant in :data:`ABLATIONS`: every compact shape at ``ns`` points and the thin
    phantoms at 1 mm (mean over seeds) at ``thin_ns``."""
    from ..phantoms import THIN_KINDS

    thin = {k: v for k, v in (labels or thin_labels(grids=("1 mm",))).items() if k[1] == "1 mm"}
    print(f"\nAblation: IoU at N = {'/'.join(map(str, ns))} (compact shapes) and "
          f"{'/'.join(map(str, thin_ns))} (thin phantoms, 1 mm, mean of {len(THIN_SEEDS)} seeds)")
    print(f"{'variant':>44} " + " ".join(f"{k[:11]:>11}" for k in SHAPES + THIN_KINDS))
    for name, options in ABLATIONS.items():
        table = quality_table(ns, **options)
        thin_table = {kind: row for (kind, _), row in thin_quality_table(thin, thin_ns, **options).items()}
        cells = [f"{'/'.join(f'{table[k][n]:.3f}' for n in ns):>11}" for k in SHAPES]
        cells += [f"{'/'.join(f'{thin_table[k][n][0]:.3f}' for n in thin_ns):>11}" for k in THIN_KINDS]
        print(f"{name:>44} " + " ".join(cells), flush=True)


def latency_table(shape: str = "bean", repeats: int = 40) -> list[dict]:
    """Print and return per-click latency rows (ms) for N = 25, 50, 125, 250 existing points.

    Wall-clock times depend on what else runs on the machine; CPU times (``time.thread_time``, this
    thread only) approximate a dedicated core, so both are reported.
    """
    from ..asm import ActiveSurface
    from ..rasterize import MaskRasterizer
    from ..sampling import sample_surface_points

    if shape == "hippocampus":
        from ..phantoms import make_label

        label = make_label("hippocampus", (80, 80, 80), (1.0, 1.0, 1.0), seed=0)
        shape_grid, truth = label.geometry, label.array
    else:
        shape_grid = shape_geometry(spacing=(1.0, 1.0, 1.0), oblique=False, extent_mm=80)
        truth = shape_mask(shape, shape_grid)
    grid = Geometry.create((256, 256, 256), (1.0, 1.0, 1.0), (-128.0, -128.0, -128.0))
    pool = sample_surface_points(truth, shape_grid, 250 + repeats)
    rng = np.random.default_rng(0)
    raster = MaskRasterizer(grid)
    surface = ActiveSurface()
    print(f"ASM per click, shape {shape}: warm update + rasterize into a 256³ 1 mm grid; "
          f"{len(surface.unit)} vertices, {repeats} clicks per N, one thread; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'N':>5} | {'wall median':>11} {'wall p95':>8} | {'CPU median':>10} {'CPU p95':>8} | "
          f"{'fit+raster':>10} {'fit/upd':>7} | {'raster':>6} {'VTK stencil':>11} {'VTK/ours':>8}")
    rows = []
    for n in (25, 50, 125, 250):
        base = pool[:n]
        c0 = time.thread_time()
        surface.fit(base)
        raster.update(surface.vertices, surface.faces)
        fit_ms = 1e3 * (time.thread_time() - c0)
        state = _state(surface)
        wall, cpu, raster_cpu = [], [], []
        for r in range(repeats):
            extra = pool[250 + r] if n == 250 else pool[n + int(rng.integers(250 - n))]
            _restore(surface, state)
            t0, c0 = time.perf_counter(), time.thread_time()
            surface.update(np.vstack([base, extra]))
            c1 = time.thread_time()
            raster.update(surface.vertices, surface.faces)
            wall.append(1e3 * (time.perf_counter() - t0))
            cpu.append(1e3 * (time.thread_time() - c0))
            raster_cpu.append(1e3 * (time.thread_time() - c1))
        vtk_ms = min(_vtk_stencil_ms(surface.vertices, surface.faces, grid) for _ in range(3))
        row = dict(n=n, wall_median=float(np.median(wall)), wall_p95=float(np.percentile(wall, 95)),
                   cpu_median=float(np.median(cpu)), cpu_p95=float(np.percentile(cpu, 95)), fit=fit_ms,
                   raster=float(np.median(raster_cpu)), vtk=vtk_ms)
        rows.append(row)
        print(f"{n:>5} | {row['wall_median']:>11.2f} {row['wall_p95']:>8.2f} | {row['cpu_median']:>10.2f} "
              f"{row['cpu_p95']:>8.2f} | {fit_ms:>10.1f} {fit_ms / row['cpu_median']:>6.0f}× | "
              f"{row['raster']:>6.2f} {vtk_ms:>11.1f} {vtk_ms / row['raster']:>7.0f}×")
    print("ms; fit+raster: from-scratch fit (CPU); raster: our rasterization (CPU); VTK stencil: "
          "vtkPolyDataToImageStencil into the whole grid (CPU)")
    return rows


PROPOSAL_CASES = (("banana", (64, 64, 48), 4), ("banana", (128, 128, 96), 4), ("banana", (64, 64, 48), 5))
"""(phantom kind, size in voxels at 1 × 1 × 1.5 mm, icosphere subdivisions) of :func:`proposal_table`."""


def proposal_table(repeats: int = 40, cases=PROPOSAL_CASES, reference_clicks: int = 5) -> list[dict]:
    """Print and return the cost (ms, CPU) of a correcting click on a model's proposal
    (:meth:`weaknet.proposal.Proposal.update`), with the click's mask rasterized into the phantom's grid.

    The "model" misses the far 20 % of a CT phantom's object (seed 0) along its main axis; the clicks are
    points of the true surface off the proposal. Each timed click re-fits for 1–3 clicks. References in the
    same run: the fit from scratch with the proposal as rest shape through the same points (the method
    before, ``reference_clicks`` clicks timed).
    """
    from ..phantoms import make_phantom
    from ..proposal import Proposal
    from ..rasterize import MaskRasterizer
    from ..sampling import mask_surface

    print(f"\nProposal, one correcting click (Proposal.update + rasterize), {repeats} clicks per row, one thread; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'phantom':>16} {'vertices':>8} | {'median':>7} {'p95':>7} | {'old fit':>8} {'old/new':>7}")
    rows = []
    for kind, size, subdivisions in cases:
        phantom = make_phantom(kind, "CT", size=size, spacing=(1.0, 1.0, 1.5), seed=0)
        truth, geometry = phantom.label.array, phantom.label.geometry
        proposal = Proposal(phantom.label.like(_missing_end(truth, geometry)), subdivisions=subdivisions)
        raster = MaskRasterizer(geometry)
        vertices, faces = mask_surface(truth, geometry)
        off = point_distances_to(vertices, proposal)
        pool = vertices[np.argsort(-off)[: 4 * repeats : 4]]  # true surface points far off the proposal
        rng = np.random.default_rng(0)
        clicks = [pool[rng.choice(len(pool), 1 + r % 3, replace=False)] for r in range(repeats)]
        new = [_click_ms(proposal.update, c, raster) for c in clicks]
        old = [_click_ms(partial(_fit_from_scratch, proposal), c, raster) for c in clicks[:reference_clicks]]
        row = dict(case=f"{kind} {size[0]}×{size[1]}×{size[2]}", vertices=len(proposal.vertices),
                   median=float(np.median(new)), p95=float(np.percentile(new, 95)), old=float(np.median(old)))
        rows.append(row)
        print(f"{row['case']:>16} {row['vertices']:>8} | {row['median']:>7.1f} {row['p95']:>7.1f} | "
              f"{row['old']:>8.0f} {row['old'] / row['median']:>6.0f}×")
    print("ms CPU per click (median, p95); old fit: the fit from scratch with the proposal as rest shape "
          f"(median of {reference_clicks}), in the same run")
    return rows


def _missing_end(truth: np.ndarray, geometry: Geometry, keep: float = 80.0) -> np.ndarray:
    """uint8 (D, H, W): a model's prediction that misses the object's far (100 − ``keep``) % along its main
    axis (the object's voxels below that percentile)."""
    ijk = np.argwhere(truth > 0)[:, ::-1].astype(float)
    lps = geometry.to_lps(ijk)
    axis = np.linalg.svd(lps - lps.mean(axis=0), full_matrices=False)[2][0]
    along = (lps - lps.mean(axis=0)) @ axis
    out = np.zeros_like(truth, dtype=np.uint8)
    inside = ijk[along < np.percentile(along, keep)].astype(int)
    out[inside[:, 2], inside[:, 1], inside[:, 0]] = 1
    return out


def point_distances_to(points: np.ndarray, proposal) -> np.ndarray:
    """(N,) mm from points (N, 3) to a proposal's mesh."""
    from ..mesh import point_distances

    return point_distances(points, proposal.vertices, proposal.faces)


def _fit_from_scratch(proposal, clicks: np.ndarray):
    """The correction before: an ActiveSurface fitted from scratch (two passes, fold check) with the
    proposal's mesh as rest shape through :meth:`~weaknet.proposal.Proposal.points_for` the clicks (N, 3)."""
    from ..asm import ActiveSurface

    return ActiveSurface(rest_shape=lambda _: proposal.vertices, **proposal._options).fit(proposal.points_for(clicks))


def _click_ms(fit, points: np.ndarray, raster) -> float:
    """CPU time (ms, this thread) of ``fit(points)`` (→ an ActiveSurface) plus rasterizing its mesh."""
    c0 = time.thread_time()
    surface = fit(points)
    raster.update(surface.vertices, surface.faces)
    return 1e3 * (time.thread_time() - c0)


_STATE = ("vertices", "rest", "template", "points", "_normal", "_kind", "_line", "_nearest", "_chosen_at")


def _state(surface) -> dict:
    """A copy of the fitted state of an ActiveSurface (so every timed click starts from the same fit)."""
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k in _STATE for v in [getattr(surface, k)]}


def _restore(surface, state: dict) -> None:
    for k, v in state.items():
        setattr(surface, k, v.copy() if isinstance(v, np.ndarray) else v)


def _vtk_stencil_ms(vertices: np.ndarray, faces: np.ndarray, grid: Geometry) -> float:
    """Reference rasterizer: vtkPolyDataToImageStencil into the whole (axis-aligned) grid, in ms."""
    import vtk

    from ..mesh import to_polydata

    t0 = time.thread_time()
    stencil = vtk.vtkPolyDataToImageStencil()
    stencil.SetInputData(to_polydata(vertices, faces))
    stencil.SetOutputOrigin(*grid.origin)
    stencil.SetOutputSpacing(*grid.spacing)
    stencil.SetOutputWholeExtent(0, grid.size[0] - 1, 0, grid.size[1] - 1, 0, grid.size[2] - 1)
    to_image = vtk.vtkImageStencilToImage()
    to_image.SetInputConnection(stencil.GetOutputPort())
    to_image.SetInsideValue(1)
    to_image.SetOutsideValue(0)
    to_image.SetOutputScalarTypeToUnsignedChar()
    to_image.Update()
    return 1e3 * (time.thread_time() - t0)
