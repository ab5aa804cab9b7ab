"""Issue 15 in the browser, headless Chromium: key S moves every slice view to the controller's suggestion, a
place on the template far from the points; the "prior" switch fits the object from earlier objects of its
name (refused, and off again, while there are too few)."""

from __future__ import annotations

import numpy as np
import pytest

from weaknet.coords import ras_to_lps
from weaknet.points import write_points
from weaknet.sampling import sample_surface_points
from weaknet.volume import Geometry, Volume, write_volume

testing = pytest.importorskip("weaknet_web.testing")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    geometry = Geometry.create((48, 48, 24), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    k, j, i = np.indices(geometry.shape)
    blob = ((((i - 24) / 12) ** 2 + ((j - 24) / 10) ** 2 + ((k - 12) / 6) ** 2) <= 1).astype(np.uint8)
    image = (-800.0 + 1000.0 * blob + np.random.default_rng(0).normal(0, 20, geometry.shape)).astype(np.int16)
    root = tmp_path_factory.mktemp("web_prior") / "data"
    write_volume(Volume(image, geometry), root / "blob.nrrd")
    points = sample_surface_points(blob, geometry, 8, seed=0)
    write_points(points, root / "pts.mrk.json")
    with testing.chromium() as browser, testing.running_server(
            root, volume="blob.nrrd", log_path=tmp_path_factory.mktemp("log") / "server.log") as server:
        p = server.open_page(browser)
        p.set_state("points_file", "pts.mrk.json")
        p.page.locator('[data-testid="load-points_file"]').first.click()
        p.wait_state("status", "v.includes('template fitted through 8 points')")
        yield p, points, root
        server.check_alive()


def _magenta_near(p, view: str, ras, radius: int = 6) -> int:
    """Magenta pixels (the suggestions' colour) within ``radius`` px of a RAS point in a slice view."""
    x, y, _ = p.ras_to_page(view, ras)
    box = p.view_box(view)
    shot = p.screenshot_view(view).astype(int)
    cx, cy = int(round(x - box["x"])), int(round(y - box["y"]))
    patch = shot[max(0, cy - radius):cy + radius + 1, max(0, cx - radius):cx + radius + 1]
    return int(np.sum((patch[..., 0] > 170) & (patch[..., 2] > 170) & (patch[..., 1] < 110)))


def test_key_s_jumps_the_views_to_the_suggestion(page):
    p, points, _ = page
    p.page.evaluate("() => document.activeElement && document.activeElement.blur()")
    p.page.keyboard.press("s")
    p.wait_state("suggestion", "v !== null")
    r, a, s = p.state("suggestion")
    p.wait_frames(p.rerender())
    assert _magenta_near(p, "Red", [r, a, s]) >= 4  # shown in the axial view as a point of its own
    # far from every point: the least constrained place on the template
    lps = ras_to_lps(np.array([[r, a, s]]))[0]
    assert np.linalg.norm(points - lps, axis=1).min() > 5.0
    views = p.debug()["views"]
    assert abs(views["Red"]["offset"] - s) <= 1.0
    assert abs(abs(views["Green"]["offset"]) - abs(a)) <= 0.5 and abs(abs(views["Yellow"]["offset"]) - abs(r)) <= 0.5
    assert "where to click next" in p.state("info_message")
    # a new click (here: one point deleted) takes the old suggestions away
    p.page.locator('[data-point="7"] button').click()
    p.wait_state("n_points", "v === 7")
    p.wait_frames(p.rerender())
    assert _magenta_near(p, "Red", [r, a, s]) == 0
    p.page.locator('[data-testid="undo"]').click()
    p.wait_state("n_points", "v === 8")


def _blob(shape, axes, centre):
    k, j, i = np.indices(shape)
    return ((((i - centre[0]) / axes[0]) ** 2 + ((j - centre[1]) / axes[1]) ** 2
             + ((k - centre[2]) / axes[2]) ** 2) <= 1).astype(np.uint8)


def test_prior_switch_uses_earlier_objects_of_the_name(page):
    """Refused with 0 earlier objects (the message names what to do; the switch turns off again); with four
    earlier volumes annotated (the real workflow layer on the real Slicer core, as another session would
    leave them in the annotations folder) the prior is built on the server's worker thread (the switch shows
    it loading) and the object is fitted from it, autosaved with it; Undo takes the prior back, the switch
    follows; off again fits without it."""
    import json

    from WeakNetSlicerLib.annotation import AnnotationController
    from WeakNetSlicerLib.scene import create_scene

    p, _, root = page
    errors = p.state("error_count")
    p.page.locator('[data-testid="use-prior"] input').click()
    p.wait_state("error_count", f"v > {errors}")
    assert "needs at least 3 earlier objects of that name" in p.state("error_message")
    assert "found 0" in p.state("error_message")
    p.wait_state("use_prior", "v === false")
    # four earlier volumes, each with its own 'Object 1' (30 clicks), written by the workflow layer
    core = create_scene()
    ctl = AnnotationController(core.scene, root / "annotations")
    geometry = Geometry.create((48, 48, 24), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    for n, axes in enumerate([(11, 10, 6), (13, 9, 6), (12, 11, 5), (10, 9, 7)]):
        blob = _blob(geometry.shape, axes, (24 + n, 23, 12))
        path = write_volume(Volume((-800.0 + 1000.0 * blob).astype(np.int16), geometry), root / f"earlier_{n}.nrrd")
        ctl.open(core.volumes.AddArchetypeVolume(str(path), path.stem, 0))
        ctl.add_object("Object 1")
        write_points(sample_surface_points(blob, geometry, 30, seed=n), root / f"earlier_{n}.mrk.json")
        ctl.load_points(root / f"earlier_{n}.mrk.json")
    ctl.shutdown()
    updates = p.state("update_count")
    p.page.locator('[data-testid="use-prior"] input').click()
    p.wait_state("building_prior", "v === true")
    assert p.state("use_prior") is True
    p.wait_state("status", "v.includes('from the shape prior of 4 earlier objects')", timeout_ms=120000)
    assert p.state("building_prior") is False
    assert p.state("use_prior") is True and p.state("update_count") > updates
    meta = json.loads((root / "annotations" / "blob" / "session.json").read_text())
    entry = next(e for e in meta["objects"] if e["name"] == "Object 1")
    assert (root / "annotations" / "blob" / entry["prior"]).is_file()
    p.page.locator('[data-testid="undo"]').click()
    p.wait_state("use_prior", "v === false")
    p.page.locator('[data-testid="redo"]').click()
    p.wait_state("use_prior", "v === true")
    p.page.locator('[data-testid="use-prior"] input').click()
    p.wait_state("use_prior", "v === false")
    p.wait_state("status", "v.includes('template fitted through 8 points') && !v.includes('prior')")
