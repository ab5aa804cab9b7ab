"""Re-make docs/img/web_app.png: the browser annotator with two objects on the sample phantom.

    PYTHONPATH=WeakNetLib:WeakNetSlicer:WeakNetWeb .venv/bin/python scripts/web_screenshot.py [OUT.png]

Starts ``weaknet app --sample`` on a temporary data root, loads points sampled on the phantom's target (the
bean, 26 points) into an object renamed "Bean" and on its largest distracting structure (20 points) into a
second one, "Distractor", rotates the 3D view a little, selects a point in the list, waits for the frames
of the last fit and saves the page (1400×900, 256 colours).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from weaknet.phantoms import make_phantom
from weaknet.points import write_points
from weaknet.sampling import sample_surface_points
from weaknet_web import testing


def main(out: str = "docs/img/web_app.png") -> Path:
    from PIL import Image

    phantom = make_phantom("bean", modality="CT", seed=0)  # the app's sample phantom
    sizes = np.bincount(phantom.distractors.array.ravel())[1:]
    distractor = (phantom.distractors.array == 1 + int(np.argmax(sizes))).astype(np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        g = phantom.label.geometry
        write_points(sample_surface_points(phantom.label.array, g, 26, seed=0), root / "bean.mrk.json")
        write_points(sample_surface_points(distractor, g, 20, seed=0), root / "distractor.mrk.json")
        with testing.chromium() as browser, testing.running_server(root, sample=True,
                                                                   log_path=Path(tmp) / "server.log") as server:
            page = server.open_page(browser)
            click = lambda testid: page.page.locator(f'[data-testid="{testid}"]').first.click()  # noqa: E731
            for i, (name, points) in enumerate((("Bean", "bean.mrk.json"), ("Distractor", "distractor.mrk.json"))):
                if i:
                    click("add-object")
                    page.wait_state("objects", "v.length === 2")
                page.set_state("rename_text", name)
                click("rename-object")
                page.wait_state("active_object", f"v === {name!r}")
                page.set_state("points_file", points)
                click("load-points_file")
                page.wait_state("status", f"v.includes({name + ': template fitted'!r})")
            threed = [v for v in page.view_ids() if v not in testing.SLICE_VIEWS][0]
            box = page.view_box(threed)
            page.drag(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, 90, -60)
            # in place mode a drag rotates the 3D view and places nothing
            page.wait_state("status", "v.includes('a drag is not a click')")
            page.set_state("place_mode", False)  # no point preview under the mouse
            page.wait_state("place_mode", "v === false")
            page.page.locator('[data-point="1"]').click()  # a selected point: the list shows it, the views jump
            page.wait_state("selected_point", "v === 1")
            click("refit")
            page.wait_state("status", "v.includes('Distractor: template fitted')")
            page.page.mouse.move(5, 895)
            page.rerender()
            page.wait_frames(views=page.view_ids())
            png = Path(tmp) / "page.png"
            page.page.screenshot(path=str(png))
            server.check_alive()
        target = Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(png).convert("RGB").quantize(256).save(target, optimize=True)
    print(f"wrote {target} ({target.stat().st_size / 1024:.0f} KiB)")
    return target


if __name__ == "__main__":
    main(*sys.argv[1:2])
