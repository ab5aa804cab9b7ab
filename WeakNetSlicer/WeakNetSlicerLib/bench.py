"""Benchmark of the live loop on the real Slicer core: a point added or moved → the template in its segment.

    python -m WeakNetSlicerLib.bench [--volumes 256 512] [--points 25 50 125 250] [--events 20]
                                     [--subdivisions 4] [--no-autosave] [--later]

For each volume (256³ at 1 mm; 512×512×300 at 0.7×0.7×1.5 mm, a CT's grid) and each point count, an
object of about 200 mm (a bean as long as a liver) gets its points in one batch, then ``--events`` point
events, alternately a new point (``AddControlPoint``: PointAdded + PositionDefined, a click) and a moved
point (``SetNthControlPointPosition``: PointModified, one step of a drag). Each event is timed from the
call until the session has updated the segment (re-fit, box rasterisation, segment labelmap and surface,
points autosaved, templates handed to the background writer). Reference, measured in the same run on the
same point sets: the library alone (``ActiveSurface.update`` + ``rasterize_box``). Slicer's rendering is not
included. Prints one table row per volume and point count, wall-clock and CPU time (``time.thread_time``: the
interactive thread's own work, without the waits for the shared cores), with the load average. ``--later``:
as the front ends run it (``AnnotationSession.later``): an event re-fits with the quick follow, and the rest
shape's re-decision it leaves runs on the worker thread after the event, untimed, before the next one.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

VOLUMES = {256: ((256, 256, 256), (1.0, 1.0, 1.0)), 512: ((512, 512, 300), (0.7, 0.7, 1.5))}
"""Volume key → (voxels i, j, k), spacing mm."""
OBJECT_SCALE = 3.5
"""The benchmark's bean (weaknet.bench.asm.shape_mask, ≈ 56 mm long) scaled to ≈ 200 mm (a liver's length)."""


def surface_pool(count: int, seed: int = 1) -> np.ndarray:
    """``count`` farthest-point samples (N, 3) LPS mm of a ≈ 200 mm bean centred on the LPS origin."""
    from weaknet.bench.asm import shape_geometry, shape_mask
    from weaknet.sampling import sample_surface_points

    geometry = shape_geometry(spacing=(1.0, 1.0, 1.0), oblique=False)
    return OBJECT_SCALE * sample_surface_points(shape_mask("bean", geometry), geometry, count, seed=seed)


def _volume_node(scene, key: int):
    from weaknet.volume import Geometry, Volume

    from . import nodes

    size, spacing = VOLUMES[key]
    spacing = np.asarray(spacing)
    origin = -spacing * (np.asarray(size) - 1) / 2
    geometry = Geometry.create(size, spacing, origin, np.eye(3))
    return nodes.add_volume_node(scene, Volume(np.zeros(geometry.shape, np.int16), geometry), f"bench{key}")


def run(volumes=(256, 512), points=(25, 50, 125, 250), events: int = 20, subdivisions: int = 4,
        autosave: bool = True, later: bool = False) -> list[dict]:
    """Per volume and point count: the event → segment times and the library-only times (ms, lists);
    ``later``: refinements deferred (see the module docstring)."""
    from weaknet.asm import ActiveSurface
    from weaknet.coords import lps_to_ras
    from weaknet.rasterize import rasterize_box

    from . import nodes
    from .scene import create_scene
    from .session import AnnotationSession

    adds = (events + 1) // 2
    rows = []
    rng = np.random.default_rng(0)
    core = create_scene()
    with tempfile.TemporaryDirectory() as tmp:
        for key in volumes:
            volume = _volume_node(core.scene, key)
            geometry = nodes.volume_geometry(volume)
            for n in points:
                pool = surface_pool(n + adds)
                session = AnnotationSession(core.scene, volume, autosave_dir=Path(tmp) / f"{key}_{n}" if autosave
                                            else None, fit_options={"subdivisions": subdivisions})
                queue: list = []
                if later:
                    session.later = queue.append
                obj = session.add_object(f"n{n}")
                with session.batch():
                    nodes.set_control_points_lps(obj.markups_node, pool[:n])
                reference = ActiveSurface(subdivisions=subdivisions).fit(pool[:n])
                current = pool[:n].copy()
                loop, library, loop_cpu, library_cpu = [], [], [], []
                for e in range(events):
                    if e % 2 == 0:  # a click: a new point
                        current = np.vstack([current, pool[len(current)]])
                        t0, c0 = time.perf_counter(), time.thread_time()
                        obj.markups_node.AddControlPoint(*lps_to_ras(current[-1]))
                    else:  # a drag step: the last point moves by ≈ 1 mm
                        current[-1] += rng.normal(0.0, 0.6, 3)
                        t0, c0 = time.perf_counter(), time.thread_time()
                        obj.markups_node.SetNthControlPointPosition(len(current) - 1, *lps_to_ras(current[-1]))
                    loop.append(time.perf_counter() - t0)
                    loop_cpu.append(time.thread_time() - c0)
                    while queue:  # what a front end does once it has shown the event
                        queue.pop(0)()
                        time.sleep(0.001)
                    assert session.status_level == "info", session.status
                    t0, c0 = time.perf_counter(), time.thread_time()
                    reference.update(current, defer=later)
                    rasterize_box(reference.vertices, reference.faces, geometry)
                    library.append(time.perf_counter() - t0)
                    library_cpu.append(time.thread_time() - c0)
                    reference.refine()  # untimed, as the bridge's
                t0 = time.perf_counter()
                session.flush()
                flush = time.perf_counter() - t0
                rows.append({"volume": "×".join(map(str, geometry.size)), "points": n, "loop": loop,
                             "library": library, "loop_cpu": loop_cpu, "library_cpu": library_cpu, "flush": flush,
                             "voxels": int(np.count_nonzero(obj.block))})
                session.close()
                for node in (obj.markups_node, session.segmentation_node):
                    core.scene.RemoveNode(node)
            core.scene.RemoveNode(volume)
    return rows


def _ms(values, q: float) -> float:
    return 1e3 * float(np.percentile(values, q))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, nargs="+", default=[256, 512], choices=sorted(VOLUMES))
    parser.add_argument("--points", type=int, nargs="+", default=[25, 50, 125, 250])
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--subdivisions", type=int, default=4, help="icosphere level: 4 → 2,562, 5 → 10,242 vertices")
    parser.add_argument("--no-autosave", action="store_true")
    parser.add_argument("--later", action="store_true", help="defer the rest shape's re-decision (front ends)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    rows = run(tuple(args.volumes), tuple(args.points), args.events, args.subdivisions, not args.no_autosave,
               args.later)
    load_after = os.getloadavg()[0]
    autosave = "off" if args.no_autosave else "on"
    print(f"point event → segment updated, real Slicer core (headless), autosave {autosave}, "
          f"icosphere level {args.subdivisions}, refinement {'deferred' if args.later else 'at once'}; "
          f"{args.events} events per row (clicks and drag steps "
          f"alternating); load average {load_before:.2f} → {load_after:.2f}")
    print("| volume | points | template voxels | event → segment median / p95 (ms) | CPU median / p95 (ms) "
          "| library only median / p95 (ms) | library CPU median / p95 (ms) | bridge / library | "
          "final template write (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['volume']} | {r['points']} | {r['voxels']:,} "
              f"| {_ms(r['loop'], 50):.1f} / {_ms(r['loop'], 95):.1f} "
              f"| {_ms(r['loop_cpu'], 50):.1f} / {_ms(r['loop_cpu'], 95):.1f} "
              f"| {_ms(r['library'], 50):.1f} / {_ms(r['library'], 95):.1f} "
              f"| {_ms(r['library_cpu'], 50):.1f} / {_ms(r['library_cpu'], 95):.1f} "
              f"| {np.median(r['loop']) / np.median(r['library']):.2f} | {1e3 * r['flush']:.0f} |")
    print("(wall-clock times include waiting for the shared cores; CPU: this thread's time (time.thread_time), "
          "what a dedicated core would take; the autosave's threads are not in it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
