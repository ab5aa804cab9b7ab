"""Active Surface quality on synthetic shapes with known masks (oblique, permuted, anisotropic grid):
IoU rises with the number of farthest-point-sampled surface points and meets the issue's thresholds,
and every fitted mesh is closed, consistently outward-oriented and free of self-intersections."""

from __future__ import annotations

import numpy as np
import pytest

from weaknet.asm import ActiveSurface
from weaknet.bench.asm import CONCAVE, SHAPES, shape_geometry, shape_mask
from weaknet.metrics import iou
from weaknet.mesh import check_mesh
from weaknet.rasterize import rasterize_mesh
from weaknet.sampling import sample_surface_points

NS = (10, 25, 50, 125)


@pytest.fixture(scope="module")
def geometry():
    g = shape_geometry()  # 0.8 × 1.0 × 1.6 mm, rotated and axis-permuted direction
    assert not np.allclose(np.abs(g.direction_matrix), np.eye(3))
    return g


@pytest.fixture(scope="module")
def fits(geometry):
    """shape → (truth mask, points (125, 3), {N: fitted ActiveSurface})."""
    out = {}
    for kind in SHAPES:
        truth = shape_mask(kind, geometry)
        pts = sample_surface_points(truth, geometry, max(NS))
        out[kind] = (truth, pts, {n: ActiveSurface().fit(pts[:n]) for n in NS})
    return out


@pytest.mark.parametrize("kind", SHAPES)
def test_shapes_are_5k_to_20k_voxels(fits, kind):
    assert 5_000 <= int(fits[kind][0].sum()) <= 20_000


@pytest.mark.parametrize("kind", SHAPES)
def test_iou_rises_with_points_and_meets_thresholds(fits, geometry, kind):
    truth, _, surfaces = fits[kind]
    scores = {n: iou(rasterize_mesh(s.vertices, s.faces, geometry), truth) for n, s in surfaces.items()}
    values = [scores[n] for n in NS]
    assert all(b > a - 0.005 for a, b in zip(values, values[1:])), scores
    assert scores[125] > scores[10] + 0.05, scores
    if kind in CONCAVE:
        assert scores[50] >= 0.85 and scores[125] >= 0.90, scores
    else:
        assert scores[50] >= 0.93, scores


@pytest.mark.parametrize("kind", SHAPES)
def test_fitted_meshes_are_closed_oriented_and_not_self_intersecting(fits, kind):
    for n, surface in fits[kind][2].items():
        report = check_mesh(surface.vertices, surface.faces)
        assert report.ok, (kind, n, report)


@pytest.mark.parametrize("kind", SHAPES)
def test_surface_passes_close_to_every_point(fits, kind):
    _, pts, surfaces = fits[kind]
    surface = surfaces[125]
    d = np.linalg.norm(pts[:, None, :] - surface.vertices[None], axis=2).min(axis=1)
    assert np.median(d) < 1.0 and d.max() < 3.0, (np.median(d), d.max())


def test_incremental_clicks_track_the_from_scratch_fit(fits, geometry):
    """Points added one at a time (warm updates) end close to a fit from scratch; removing and moving
    points is followed too."""
    truth, pts, surfaces = fits["c_shape"]
    surface = ActiveSurface().fit(pts[:20])
    for n in range(21, 51):
        surface.update(pts[:n])
    warm = iou(rasterize_mesh(surface.vertices, surface.faces, geometry), truth)
    scratch = iou(rasterize_mesh(surfaces[50].vertices, surfaces[50].faces, geometry), truth)
    assert warm >= 0.85 and warm > scratch - 0.03, (warm, scratch)
    assert check_mesh(surface.vertices, surface.faces).ok

    # drag point 8 by 4 mm along the surface normal, then delete it
    from weaknet.mesh import vertex_normals

    moved = pts[:50].copy()
    v = int(np.argmin(np.linalg.norm(surface.vertices - moved[7], axis=1)))
    moved[7] += 4.0 * vertex_normals(surface.vertices, surface.faces)[v]
    surface.update(moved)
    assert np.linalg.norm(surface.vertices - moved[7], axis=1).min() < 0.6 * 4.0  # followed the drag
    surface.update(np.delete(moved, 7, axis=0))
    assert np.linalg.norm(surface.vertices - moved[7], axis=1).min() > 2.0
    assert iou(rasterize_mesh(surface.vertices, surface.faces, geometry), truth) > 0.85
    assert check_mesh(surface.vertices, surface.faces).ok

    # a drag that moves the caller's own array in place (as a front end does) is still seen as a move
    import copy

    dragged = pts[:50].copy()
    surface.update(dragged)
    fresh = copy.deepcopy(surface)
    dragged[7] += 4.0 * vertex_normals(surface.vertices, surface.faces)[v]
    surface.update(dragged)
    np.testing.assert_allclose(surface.vertices, fresh.update(dragged.copy()).vertices, atol=1e-9)


def test_thin_c_phantom_is_carved_without_folds():
    """The evidence phantoms' C is a thin ~280° tube (≈ 5 mm radius, 2 mm slices): the bent rest shape
    beats a single ellipsoid by a wide margin (the tube rest shape, chosen here, a little more), and even
    250 crowded points leave the mesh unfolded."""
    from weaknet.phantoms import make_phantom

    label = make_phantom("c_shape", "CT", seed=0, oblique=True, distractors=False).label
    pts = sample_surface_points(label.array, label.geometry, 250)
    score = {}
    for name, options, n in (("default", {}, 50), ("bent", {"tube": False}, 50),
                             ("ellipsoid", {"bend": False, "tube": False}, 50), ("dense", {}, 250)):
        surface = ActiveSurface(**options).fit(pts[:n])
        assert check_mesh(surface.vertices, surface.faces).ok, name
        score[name] = iou(rasterize_mesh(surface.vertices, surface.faces, label.geometry), label.array)
    assert score["bent"] > score["ellipsoid"] + 0.15 and score["dense"] > score["default"], score
    assert score["default"] >= score["bent"] - 0.005, score  # the tube, when chosen, is no worse


@pytest.fixture(scope="module")
def hippocampus():
    """A hippocampus-like phantom (curved, tapered tube, bulbous head, thin tail; 1 mm, oblique grid) and
    50 farthest-point clicks on its surface."""
    from weaknet.phantoms import make_label

    label = make_label("hippocampus", (64, 64, 64), (1.0, 1.0, 1.0), seed=1, oblique=True)
    return label, sample_surface_points(label.array, label.geometry, 50)


def test_tube_rest_shape_fits_thin_curved_anatomy(hippocampus):
    """The tube rest shape (principal curve + radius profile) is chosen on a hippocampus and is what
    reaches the issue's IoU; the rasterized template passes through the clicks."""
    from weaknet.sampling import surface_distances

    label, pts = hippocampus
    score, click = {}, {}
    for name, options, n in (("tube 25", {}, 25), ("tube 50", {}, 50), ("no tube 25", {"tube": False}, 25),
                             ("no tube 50", {"tube": False}, 50)):
        surface = ActiveSurface(**options).fit(pts[:n])
        assert check_mesh(surface.vertices, surface.faces).ok, name
        assert (surface._kind == "tube") == name.startswith("tube"), (name, surface._kind)
        mask = rasterize_mesh(surface.vertices, surface.faces, label.geometry)
        score[name] = iou(mask, label.array)
        click[name] = float(np.median(surface_distances(pts[:n], mask, label.geometry)))
    assert score["tube 50"] >= 0.85 and score["tube 25"] >= 0.77, score
    assert score["tube 25"] > score["no tube 25"] + 0.05 and score["tube 50"] > score["no tube 50"], score
    assert click["tube 50"] <= 0.3 and click["tube 25"] <= 0.3, click


def test_tube_template_warm_start_follows_cold(hippocampus):
    """A tube rest shape warm-started from the previous centre line (as after a click) stays close to one
    built from scratch, is closed and outward, and warm updates through 25 → 50 clicks track the fit."""
    from weaknet.asm import tube_template
    from weaknet.mesh import icosphere

    label, pts = hippocampus
    unit, faces = icosphere(4)
    cold, normal, line = tube_template(pts[:40], unit)
    assert check_mesh(cold, faces).ok
    warm, _, _ = tube_template(pts[:41], unit, normal, line)
    again, _, _ = tube_template(pts[:41], unit, normal)
    assert np.median(np.linalg.norm(warm - again, axis=1)) < 1.0
    surface = ActiveSurface().fit(pts[:25])
    for n in range(26, 51):
        surface.update(pts[:n])
    warm_iou = iou(rasterize_mesh(surface.vertices, surface.faces, label.geometry), label.array)
    scratch = ActiveSurface().fit(pts[:50])
    scratch_iou = iou(rasterize_mesh(scratch.vertices, scratch.faces, label.geometry), label.array)
    assert warm_iou > scratch_iou - 0.03 and check_mesh(surface.vertices, surface.faces).ok, (warm_iou, scratch_iou)


def test_sheet_rest_shape_follows_a_folded_sheet():
    """On a thin folded plate the folded-sheet rest shape is chosen and beats the ellipsoid widely."""
    from weaknet.phantoms import make_label

    label = make_label("sheet", (64, 64, 64), (1.0, 1.0, 1.0), seed=0, oblique=True)
    pts = sample_surface_points(label.array, label.geometry, 50)
    score = {}
    for name, options in (("default", {}), ("ellipsoid", {"bend": False, "tube": False, "sheet": False})):
        surface = ActiveSurface(**options).fit(pts)
        assert check_mesh(surface.vertices, surface.faces).ok, name
        score[name] = iou(rasterize_mesh(surface.vertices, surface.faces, label.geometry), label.array)
        assert surface._kind == ("sheet" if name == "default" else "ellipsoid")
    assert score["default"] > score["ellipsoid"] + 0.1, score


def test_fine_mesh_follows_clicks_on_the_coarser_level(fits, geometry, monkeypatch):
    """At 10,242 vertices a deferred update follows the points on the 2,562-vertex level and carries the
    change up: the points are followed as closely as by the fine mesh's own follow, the template is as good
    (within 0.03 IoU), the mesh stays closed and unfolded; a copy (an undo entry) follows on its own."""
    import copy

    import weaknet.asm as asm

    truth, pts, _ = fits["bean"]
    start = ActiveSurface(subdivisions=5).fit(pts[:25])
    direct, coarse = copy.deepcopy(start), start
    monkeypatch.setattr(asm, "COARSE_FOLLOW_FROM", 99)
    for n in range(26, 41):
        direct.update(pts[:n], defer=True)
    monkeypatch.setattr(asm, "COARSE_FOLLOW_FROM", 5)
    for n in range(26, 41):
        coarse.update(pts[:n], defer=True)
    assert coarse._coarse is not None and len(coarse.vertices) == 10242 and coarse.needs_refine
    for s in (direct, coarse):
        assert check_mesh(s.vertices, s.faces).ok
    from weaknet.mesh import point_distances

    near = point_distances(pts[:40], coarse.vertices, coarse.faces)
    assert np.median(near) < 0.5 and near.max() < 1.5 * max(1.0, point_distances(pts[:40], direct.vertices,
                                                                                   direct.faces).max())
    scores = [iou(rasterize_mesh(s.vertices, s.faces, geometry), truth) for s in (direct, coarse)]
    assert scores[1] > scores[0] - 0.03, scores
    # a copy of the surface (as an undo entry holds) follows from its own state, not the original's follower
    twin = copy.copy(coarse)
    for key, value in vars(coarse).items():
        if isinstance(value, np.ndarray):
            setattr(twin, key, value.copy())
    coarse.update(pts[:42], defer=True)
    twin.update(pts[:42], defer=True)
    np.testing.assert_allclose(twin.vertices, coarse.vertices, atol=1e-6)
