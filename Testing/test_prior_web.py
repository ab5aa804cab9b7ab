"""Where to click next in the browser (issue 15), headless Chromium: key S moves every slice view to the
controller's suggestion, a place on the template far from the points."""

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
        yield p, points
        server.check_alive()


def test_key_s_jumps_the_views_to_the_suggestion(page):
    p, points = page
    p.page.evaluate("() => document.activeElement && document.activeElement.blur()")
    p.page.keyboard.press("s")
    p.wait_state("suggestion", "v !== null")
    r, a, s = p.state("suggestion")
    # far from every point: the least constrained place on the template
    lps = ras_to_lps(np.array([[r, a, s]]))[0]
    assert np.linalg.norm(points - lps, axis=1).min() > 5.0
    views = p.debug()["views"]
    assert abs(views["Red"]["offset"] - s) <= 1.0
    assert abs(abs(views["Green"]["offset"]) - abs(a)) <= 0.5 and abs(abs(views["Yellow"]["offset"]) - abs(r)) <= 0.5
    assert "where to click next" in p.state("info_message")
