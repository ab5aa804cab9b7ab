"""Benchmark of the live loop on the real Slicer core: one point event → re-fitted template in the segment.

    python -m WeakNetSlicerLib.bench [--points 8 16 32] [--repeats 5]

For each point count, a point of a phantom's object is moved (PointModifiedEvent) and the time until the
session has updated the segment is measured, split into the library's share (``ActiveSurface.update`` +
``rasterize_mesh``, the reference, measured in the same run on the same points) and the bridge's
(RAS→LPS, validation, vtkOrientedImageData + segment update, closed surface). Prints a table with the
ratio bridge-loop / library-only. Slicer's own rendering is not included.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def run(points=(8, 16, 32), repeats: int = 5, size=(128, 128, 48), spacing=(0.8, 0.8, 2.5)) -> list[dict]:
    """Median milliseconds per moved point for each point count; returns the table rows."""
    from weaknet.asm import ActiveSurface
    from weaknet.coords import lps_to_ras
    from weaknet.phantoms import make_phantom
    from weaknet.rasterize import rasterize_mesh
    from weaknet.sampling import sample_surface_points

    from . import nodes
    from .scene import create_scene
    from .session import AnnotationSession

    phantom = make_phantom("bean", "CT", size=size, spacing=spacing, seed=0, oblique=True)
    geometry = phantom.image.geometry
    core = create_scene()
    volume = nodes.add_volume_node(core.scene, phantom.image, "bench")
    rows = []
    rng = np.random.default_rng(0)
    for n in points:
        pts = sample_surface_points(phantom.label.array, phantom.label.geometry, n, seed=1)
        session = AnnotationSession(core.scene, volume)
        obj = session.add_object(f"n{n}")
        with session.batch():
            nodes.set_control_points_lps(obj.markups_node, pts)
        reference = ActiveSurface().fit(pts)
        loop, library = [], []
        for _ in range(repeats):
            moved = pts.copy()
            moved[0] += rng.normal(0.0, 0.5, 3)
            t0 = time.perf_counter()
            obj.markups_node.SetNthControlPointPosition(0, *lps_to_ras(moved[0]))
            loop.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            reference.update(moved)
            rasterize_mesh(reference.vertices, reference.faces, geometry)
            library.append(time.perf_counter() - t0)
            pts = moved
            assert session.status_level == "info", session.status
        rows.append({"points": n, "loop_ms": 1e3 * float(np.median(loop)),
                     "library_ms": 1e3 * float(np.median(library))})
        session.close()
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rows = run(tuple(args.points), args.repeats)
    print("| points | event → segment (ms) | library only: update + rasterize (ms) | ratio |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['points']} | {r['loop_ms']:.1f} | {r['library_ms']:.1f} | {r['loop_ms'] / r['library_ms']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
