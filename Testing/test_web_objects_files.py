"""End-to-end (issue 13), in headless Chromium on one server: two objects shown in 2D and saved in every
file, saving never replaces an input or (unconfirmed) any existing file, exports on the source file's own
grid, clicks in a view's margin ignored, training fields checked with the command line's limits, TIFF
volumes listed and opened.

The volume's direction (LPS diag(1, -1, 1)) is one Slicer's reader stores with k flipped, as on the
pyradiomics brain MRI; the two blobs sit off the k centre, so a flipped export would not match their labels.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from weaknet.coords import ras_to_lps
from weaknet.metrics import iou
from weaknet.volume import Geometry, Volume, read_volume, write_volume

testing = pytest.importorskip("weaknet_web.testing")

pytestmark = pytest.mark.slow
BLUE = (0.25, 0.7, 0.95)  # Object 2's colour (WeakNetSlicerLib.session.COLORS[1])


def _blob(shape, centre, radii) -> np.ndarray:
    k, j, i = np.indices(shape)
    return ((((i - centre[0]) / radii[0]) ** 2 + ((j - centre[1]) / radii[1]) ** 2
             + ((k - centre[2]) / radii[2]) ** 2) <= 1).astype(np.uint8)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    geometry = Geometry.create((48, 48, 24), (1.0, 1.0, 2.0), (10.0, -5.0, 3.0), np.diag([1.0, -1.0, 1.0]))
    a = _blob(geometry.shape, (15, 23, 8), (9, 11, 5))
    b = _blob(geometry.shape, (34, 25, 14), (7, 8, 4))
    rng = np.random.default_rng(0)
    image = (100.0 + 800.0 * a + 500.0 * b + rng.normal(0, 20, geometry.shape)).astype(np.int16)
    root = tmp_path_factory.mktemp("web13") / "data"
    write_volume(Volume(image, geometry), root / "blobs.nrrd")
    write_volume(Volume(image, geometry), root / "other.nrrd")
    tif = np.arange(20 * 32 * 32, dtype=np.uint16).reshape(20, 32, 32)
    write_volume(Volume(tif, Geometry.create((32, 32, 20))), root / "cells.tif")
    write_volume(Volume((tif > 9000).astype(np.uint8), Geometry.create((32, 32, 20))), root / "cells_label.tif")
    return root, Volume(a, geometry), Volume(b, geometry)


@pytest.fixture(scope="module")
def page(case, tmp_path_factory):
    root = case[0]
    with testing.chromium() as browser, testing.running_server(
            root, volume="blobs.nrrd", log_path=tmp_path_factory.mktemp("log") / "server.log") as server:
        page = server.open_page(browser)
        page.rerender()
        page.server = server
        yield page
        server.check_alive()


def _click(page, testid: str) -> None:
    page.page.locator(f'[data-testid="{testid}"]').click()


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _segment_voxels(path, reference) -> dict[str, int]:
    """Voxels per segment of a .seg.nrrd as Slicer (headless core) exports them on ``reference``'s grid."""
    from WeakNetSlicerLib import nodes
    from WeakNetSlicerLib.scene import create_scene

    core = create_scene()
    seg = nodes.read_node(core.scene, "vtkMRMLSegmentationNode", path)
    volume = core.volumes.AddArchetypeVolume(str(reference), "ref", 0)
    return {sid: int(nodes.segment_mask(seg, sid, volume).sum()) for sid in seg.GetSegmentation().GetSegmentIDs()}


def test_two_objects_shown_and_saved_on_the_source_grid(case, page):
    """Issue 13.1 and 13.6."""
    root, a, b = case
    z_a, z_b = testing.axial_offsets(a, [0.5, 0.2]), testing.axial_offsets(b, [0.5, 0.8])
    testing.click_surface(page, a, [("Green", None, 3), ("Red", z_a[0], 4), ("Red", z_a[1], 3)])
    page.wait_state("status", "v.includes('Object 1: template fitted')")
    _click(page, "add-object")
    page.wait_state("active_object", "v === 'Object 2'")
    # Object 2's first clicks autosave it while still empty (the case that used to lose it)
    clicked = testing.click_surface(page, b, [("Red", z_b[0], 4), ("Green", None, 3), ("Red", z_b[1], 3)])
    page.wait_state("status", "v.includes('Object 2: template fitted')")

    # the labelmap: both objects, on the source file's own grid (voxel-wise comparable with its labels)
    page.set_state("label_file", "exports/both_label.nii.gz")
    _click(page, "save-label_file")
    page.wait_state("info_message", "v === 'saved exports/both_label.nii.gz'")
    saved = read_volume(root / "exports/both_label.nii.gz")
    assert saved.geometry.matches(read_volume(root / "blobs.nrrd").geometry)
    scores = [iou(saved.array == value, truth.array > 0) for value, truth in ((1, a), (2, b))]
    print(f"labelmap IoU per object on the source grid: {scores[0]:.3f}, {scores[1]:.3f}")
    assert min(scores) > 0.5

    # shown in the axial view: Object 2's colour along its template's outline
    page.scroll("Red", z_b[0])
    debug = page.debug()
    shot = page.screenshot_view("Red")
    markers = np.array([page.ras_to_page("Red", p, debug)[:2] for p in clicked])
    outline = testing.outline_pixels(page, "Red", saved.array == 2, saved.geometry, markers, debug)
    hits = testing.overlay_hits(shot, outline, BLUE)
    print(f"Object 2's colour along its outline in the axial view: {hits:.2f} of {len(outline)} pixels")
    assert len(outline) > 20 and hits > 0.8

    # the .seg.nrrd, the autosave and the training set hold both objects
    page.set_state("seg_file", "exports/both.seg.nrrd")
    _click(page, "save-seg_file")
    page.wait_state("info_message", "v === 'saved exports/both.seg.nrrd'")
    for path in (root / "exports/both.seg.nrrd", root / "annotations/blobs/templates.seg.nrrd"):
        voxels = _segment_voxels(path, root / "blobs.nrrd")
        assert len(voxels) == 2 and min(voxels.values()) > 0.5 * b.array.sum(), (path, voxels)
    page.set_state("train_modality", "CT")
    _click(page, "add-training")
    page.wait_state("train_cases", "v === 1")
    template = read_volume(next((root / "training" / "templates").glob("*.nrrd"))).array > 0
    assert abs(int(template.sum()) - int((saved.array > 0).sum())) <= 0.02 * template.sum()


def test_save_never_replaces_an_input_and_asks_before_replacing_a_file(case, page):
    """Issue 13.2."""
    root = case[0]
    volume_digest = _digest(root / "blobs.nrrd")
    errors = page.state("error_count")
    page.set_state("label_file", "blobs.nrrd")  # the open volume
    _click(page, "save-label_file")
    page.wait_state("error_count", f"v > {errors}")
    assert "never overwritten" in page.state("error_message")
    assert _digest(root / "blobs.nrrd") == volume_digest

    other = _digest(root / "other.nrrd")  # another volume: asked first; Cancel keeps it
    page.set_state("label_file", "other.nrrd")
    page.set_state("info_message", "")
    _click(page, "save-label_file")
    page.wait_state("overwrite_visible", "v === true")
    assert page.page.locator('[data-testid="overwrite-dialog"]').inner_text().count("other.nrrd") == 1
    _click(page, "overwrite-cancel")
    page.wait_state("overwrite_visible", "v === false")
    page.page.locator('[data-testid="overwrite-dialog"]').wait_for(state="hidden")
    assert _digest(root / "other.nrrd") == other and page.state("info_message") == ""
    _click(page, "save-label_file")  # confirmed: replaced by the labelmap
    page.wait_state("overwrite_visible", "v === true")
    _click(page, "overwrite-confirm")
    page.wait_state("info_message", "v === 'saved other.nrrd'")
    page.page.locator('[data-testid="overwrite-dialog"]').wait_for(state="hidden")  # its scrim takes clicks
    assert set(np.unique(read_volume(root / "other.nrrd").array)) <= {0, 1, 2}
    assert _digest(root / "blobs.nrrd") == volume_digest


def test_click_outside_the_image_adds_no_point(case, page):
    """Issue 13.3 (the margin): a click beside the image is ignored with a warning; nothing blocks the fit."""
    debug = page.debug()
    info = debug["views"]["Red"]
    w, h = info["size"]
    box = page.view_box("Red")
    x, y = box["x"] + 4, box["y"] + box["height"] / 2
    xy = ((x - box["x"]) * w / box["width"] - 0.5, h - (y - box["y"]) * h / box["height"] - 0.5)
    ras = np.array(info["xy_to_ras"], float).reshape(4, 4) @ [xy[0], xy[1], 0.0, 1.0]
    geometry = read_volume(case[0] / "blobs.nrrd").geometry
    assert not geometry.contains(ras_to_lps(ras[:3][None]))[0], "the view's left edge is not beside the image"
    before, total, effort = page.state("n_points"), page.state("total_points"), page.state("effort")
    updates = page.state("update_count")
    page.page.mouse.click(x, y)
    page.wait_state("status", "v.includes('outside the image was ignored')")
    page.wait_state("update_count", f"v > {updates}")
    assert page.state("n_points") == before and page.state("total_points") == total
    assert page.state("effort") == effort  # not a click on the object
    assert page.state("status_level") == "warning"


def test_drag_in_3d_adds_no_point(page):
    """Issue 13.3 (3D): rotating the 3D view in place mode (press, drag, release) leaves no point."""
    threed = [v for v in page.view_ids() if v not in testing.SLICE_VIEWS][0]
    box = page.view_box(threed)
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    before, total = page.state("n_points"), page.state("total_points")
    assert page.state("place_mode") is True
    page.drag(x, y, 60, 20)
    page.wait_state("status", lambda v: "a drag is not a click" in v or page.state("n_points") != before)
    assert page.state("n_points") == before and page.state("total_points") == total


@pytest.mark.parametrize("field, text, expected", [
    ("train_epochs", "1e12", "not a whole number"), ("train_epochs", "2.5", "not a whole number"),
    ("train_patch", "100000", "must lie in [4, 1024]"), ("train_steps_per_epoch", "0", "must lie in [1, ")])
def test_training_fields_use_the_command_line_limits(page, field, text, expected):
    """Issue 13.8: a clear message, never an internal error, and nothing starts."""
    errors = page.state("error_count")
    page.set_state(field, text)
    _click(page, "train")
    page.wait_state("error_count", f"v > {errors}")
    message = page.state("error_message")
    page.set_state(field, "")
    assert expected in message and "Internal error" not in message
    assert page.state("train_state") == "idle"


def test_tif_listed_and_opened(case, page):
    """Issue 13.9: a .tif is listed only as a volume that opens; its label file is not listed."""
    choices = page.state("volume_choices")
    assert "cells.tif" in choices and "cells_label.tif" not in choices
    page.set_state("volume_choice", "cells.tif")
    errors = page.state("error_count")
    _click(page, "open-volume")
    page.wait_state("volume_name", lambda v: v == "cells.tif" or page.state("error_count") > errors)
    assert page.state("error_count") == errors, page.state("error_message")
    assert page.state("wl_range") == [0.0, float(20 * 32 * 32 - 1)]
    assert page.state("objects") == ["Object 1"] and page.state("n_points") == 0
