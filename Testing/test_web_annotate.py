"""End-to-end: the browser annotator (`weaknet app`) in headless Chromium on a phantom.

Clicks land at points of the phantom's true surface that lie on the slice views' planes (mapped RAS →
pixel through each slice node's XY→RAS matrix). Waits are on delivered frames (``state.frames``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from weaknet.coords import lps_to_ras
from weaknet.metrics import iou
from weaknet.phantoms import make_phantom
from weaknet.points import read_points
from weaknet.volume import read_volume, write_volume

testing = pytest.importorskip("weaknet_web.testing")

pytestmark = pytest.mark.slow
# 15 clicks (1 coronal, 1 sagittal, 3 axial planes): measured IoU 0.63 for the live (warm-started) fit and
# 0.63 after "Re-fit" (from scratch); see docs/web.md. Both must exceed the floor.
IOU_FLOOR = 0.5


@pytest.fixture(scope="module")
def phantom():
    return make_phantom("bean", modality="CT", seed=0)


@pytest.fixture
def data_root(tmp_path, phantom):
    root = tmp_path / "data"
    write_volume(phantom.image, root / "phantom.nrrd")
    return root


@pytest.fixture(scope="module")
def browser():
    with testing.chromium() as b:
        yield b


def test_click_points_fit_template_overlay(tmp_path, data_root, phantom, browser):
    with testing.running_server(data_root, volume="phantom.nrrd", log_path=tmp_path / "server.log") as server:
        page = server.open_page(browser)
        page.rerender()
        # volume rendering is on only with a hardware OpenGL renderer (~2 s a frame on llvmpipe)
        software = any(s in page.state("gpu_renderer").lower() for s in ("llvmpipe", "softpipe", "swrast"))
        assert page.state("vr_enabled") is (not software)
        before = page.screenshot_view("Red")
        z = testing.axial_offsets(phantom.label, [0.5, 0.8, 0.2])
        plan = [("Green", None, 3), ("Yellow", None, 3), ("Red", z[0], 3), ("Red", z[1], 3), ("Red", z[2], 3)]
        clicked = testing.click_surface(page, phantom.label, plan)
        debug = page.debug()

        # the session's points are the clicks (RAS), within a voxel
        points = np.array(debug["points_ras"]["Object 1"])
        assert points.shape == (15, 3)
        assert np.linalg.norm(points - clicked, axis=1).max() < min(phantom.image.geometry.spacing)
        assert page.state("n_points") == 15 and page.state("effort") == 15
        assert "15 points · effort 15 clicks" in page.page.locator('[data-testid="point-count"]').inner_text()

        # the template, exported from the page as a labelmap, overlaps the phantom
        label_path = data_root / page.state("label_file")
        page.page.locator('[data-testid="save-label_file"]').click()
        page.wait_state("info_message", "v.startsWith('saved')")
        live = iou(read_volume(label_path).array > 0, phantom.label.array > 0)
        fits = page.state("update_count")
        page.page.locator('[data-testid="refit"]').click()
        page.wait_state("update_count", f"v > {fits}")
        page.set_state("info_message", "")
        page.page.locator('[data-testid="save-label_file"]').click()
        page.wait_state("overwrite_visible", "v === true")  # the file exists: replaced only once confirmed
        page.page.locator('[data-testid="overwrite-confirm"]').click()
        page.wait_state("info_message", "v.startsWith('saved')")
        template = read_volume(label_path)
        assert template.geometry.matches(phantom.label.geometry)
        score = iou(template.array > 0, phantom.label.array > 0)
        print(f"template IoU with the phantom after 15 clicks: live fit {live:.3f}, re-fitted {score:.3f}")
        assert live > IOU_FLOOR and score > IOU_FLOOR

        # the overlay is drawn along the template's outline in the axial view (and was not before)
        page.wait_frames()
        after = page.screenshot_view("Red", tmp_path / "red.png")
        markers = np.array([page.ras_to_page("Red", p, debug)[:2] for p in clicked if
                            abs(page.ras_to_page("Red", p, debug)[2]) < 1.0])
        outline = testing.outline_pixels(page, "Red", template.array, template.geometry, markers, debug)
        assert len(outline) > 20
        hit_after, hit_before = testing.overlay_hits(after, outline), testing.overlay_hits(before, outline)
        print(f"overlay colour near the outline: {hit_after:.2f} after, {hit_before:.2f} before")
        assert hit_after > 0.8 and hit_before < 0.1

        # a second tab shows the same session, gets its own frames, and its edits reach the first tab
        page2 = server.open_page(browser)
        assert page2.state("n_points") == 15
        page2.rerender()
        page2.page.locator('[data-testid="undo"]').click()
        page.wait_state("n_points", "v === 14")
        page.page.locator('[data-testid="undo"]').click()
        page2.wait_state("n_points", "v === 13")
        page.wait_frames()
        page2.wait_frames()
        autosave = data_root / "annotations" / "phantom"
        meta = json.loads((autosave / "session.json").read_text(encoding="utf-8"))
        assert meta["objects"][0]["point_count"] == 13
        assert np.allclose(lps_to_ras(read_points(autosave / meta["objects"][0]["points"])), points[:13], atol=1e-3)
        server.check_alive()


def test_edit_save_restart_restore(tmp_path, data_root, phantom, browser):
    log = tmp_path / "server.log"
    with testing.running_server(data_root, volume="phantom.nrrd", log_path=log) as server:
        page = server.open_page(browser)
        page.rerender()
        plan = [("Green", None, 3), ("Yellow", None, 3), ("Red", None, 3)]
        clicked = testing.click_surface(page, phantom.label, plan)

        # drag point #1 (on the coronal plane) 20 px to the right: it moves towards patient left (−R)
        page.set_state("place_mode", False)
        page.drag_ras("Green", clicked[0], 20, 0)
        moved = np.array(page.debug()["points_ras"]["Object 1"][0])
        assert moved[0] < clicked[0][0] - 1.0 and np.allclose(moved[1:], clicked[0][1:], atol=0.5)
        # delete point #2 from the list; undo brings it back, undo again reverts the drag
        page.page.locator('[data-point="1"] button').click()
        page.wait_state("n_points", "v === 8")
        undo = page.page.locator('[data-testid="undo"]')
        undo.click()
        page.wait_state("n_points", "v === 9")
        assert np.abs(np.array(page.debug()["points_ras"]["Object 1"])[1] - clicked[1]).max() < 0.6
        undo.click()
        page.wait_state("points", f"Math.abs(v[0].ras[0] - {clicked[0][0]}) < 0.6")
        page.page.locator('[data-point="1"] button').click()
        page.wait_state("status", "v.includes('fitted through 8 points')")
        points = np.array(page.debug()["points_ras"]["Object 1"])
        assert np.abs(points - clicked[[0, 2, 3, 4, 5, 6, 7, 8]]).max() < 0.6  # within a pixel (0.5 mm)

        for key in ("points_file", "seg_file", "label_file"):
            page.page.locator(f'[data-testid="save-{key}"]').click()
            page.wait_state("info_message", f"v === 'saved ' + {json.dumps(page.state(key))}")
        before = np.array(page.debug()["points_ras"]["Object 1"])
        files = {k: data_root / page.state(k) for k in ("points_file", "seg_file", "label_file")}
        page.page.close()
    # the files written from the page
    assert np.allclose(lps_to_ras(read_points(files["points_file"])), before, atol=1e-3)
    import SimpleITK as sitk

    assert sitk.GetArrayFromImage(sitk.ReadImage(str(files["seg_file"]))).sum() > 0
    saved_label = read_volume(files["label_file"]).array
    assert saved_label.sum() > 0

    # stopping the server (SIGTERM) wrote the last templates: none is older than its points
    from WeakNetSlicerLib.autosave import points_fingerprint, read_tags

    autosave = data_root / "annotations" / "phantom"
    fitted = read_tags(autosave / "templates.seg.nrrd")["weaknet_Object_1"]["WeakNet.PointsFingerprint"]
    assert fitted == points_fingerprint(read_points(autosave / "Object_1.mrk.json"))

    # a new server on the same data root finds points and template back (autosave)
    with testing.running_server(data_root, volume="phantom.nrrd", log_path=log) as server:
        page = server.open_page(browser)
        page.rerender()
        assert page.state("n_points") == 8
        assert page.state("effort") == 9  # clicks made, including the deleted point
        assert "reopened" in page.state("status")
        after = np.array(page.debug()["points_ras"]["Object 1"])
        assert np.allclose(after, before, atol=1e-3)
        page.set_state("label_file", "exports/after_restart.nii.gz")
        page.page.locator('[data-testid="save-label_file"]').click()
        page.wait_state("info_message", "v === 'saved exports/after_restart.nii.gz'")
        restored = read_volume(data_root / "exports/after_restart.nii.gz").array
        assert iou(restored > 0, saved_label > 0) > 0.99

        # the saved segmentation and labelmap load back beside the template
        page.set_state("label_file", files["label_file"].relative_to(data_root).as_posix())
        for key in ("seg_file", "label_file"):
            page.page.locator(f'[data-testid="load-{key}"]').click()
            page.wait_state("info_message", "v.startsWith('loaded') && v.endsWith('(1 segment)')")
            page.set_state("info_message", "")

        # loading the saved points into a second object fits a second template
        page.page.locator('[data-testid="add-object"]').click()
        page.wait_state("objects", "v.length === 2")
        page.page.locator('[data-testid="load-points_file"]').click()
        page.wait_state("total_points", "v === 16")
        page.wait_state("status", "v.includes('Object 2: template fitted')")
        assert page.state("n_points") == 8 and page.state("active_object") == "Object 2"
        server.check_alive()

