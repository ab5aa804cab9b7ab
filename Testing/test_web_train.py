"""End-to-end: training set, background training with live progress, cancel, and applying a model, driven
from the browser annotator in headless Chromium (tiny CPU settings; real training processes)."""

from __future__ import annotations

import pytest

from weaknet.phantoms import make_phantom
from weaknet.points import write_points
from weaknet.sampling import sample_surface_points
from weaknet.volume import write_volume

testing = pytest.importorskip("weaknet_web.testing")

pytestmark = pytest.mark.slow


def test_train_cancel_apply(tmp_path):
    phantom = make_phantom("ellipsoid", modality="CT", size=(32, 32, 24), seed=1)
    root = tmp_path / "data"
    write_volume(phantom.image, root / "small.nrrd")
    write_points(sample_surface_points(phantom.label.array, phantom.label.geometry, 12), root / "pts.mrk.json")
    with testing.chromium() as browser, \
            testing.running_server(root, volume="small.nrrd", log_path=tmp_path / "server.log") as server:
        page = server.open_page(browser)
        click = lambda testid: page.page.locator(f'[data-testid="{testid}"]').click()  # noqa: E731
        page.set_state("points_file", "pts.mrk.json")
        click("load-points_file")
        page.wait_state("status", "v.includes('template fitted through 12 points')")

        click("add-training")
        page.wait_state("error_message", "v.includes('choose the modality')")  # never guessed
        errors = page.state("error_count")
        page.set_state("train_modality", "CT")
        click("add-training")
        page.wait_state("train_cases", "v === 1")
        assert (root / "training" / "DATASET.json").is_file()

        for key, value in (("train_epochs", 2), ("train_steps_per_epoch", 2), ("train_patch", 16),
                           ("train_device", "cpu")):
            page.set_state(key, value)
        click("train")
        page.wait_state("train_state", "v !== 'idle'")
        page.wait_state("train_state", "v === 'done' || v === 'failed'", timeout_ms=150000)
        assert page.state("train_state") == "done", page.state("train_message")
        assert page.state("train_progress") == 100
        assert len(page.state("loss_curve")) == 4  # 2 epochs × 2 steps, plotted live
        model = page.state("model_choice")
        assert model and (root / model / "model.json").is_file()

        click("apply-model")
        page.wait_state("prediction_message", "v.includes('applied')", timeout_ms=60000)
        page.wait_frames()

        # a long training is cancelled from the page
        page.set_state("train_epochs", 200)
        click("train")
        page.wait_state("loss_curve", "v.length > 0", timeout_ms=120000)
        click("cancel-training")
        page.wait_state("train_state", "v === 'cancelled'", timeout_ms=60000)
        assert page.state("error_count") == errors, page.state("error_message")
        server.check_alive()
