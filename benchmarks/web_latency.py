"""Click → template overlay latency of the browser annotator, measured in the browser.

Starts ``weaknet app`` on a phantom, opens it in headless Chromium, places 6 points (coronal + sagittal
planes) so a template exists, then clicks N more points of the phantom's surface on three axial planes,
alternately after a pause of ``--pause-ms`` (a hand's pace: placing a point on a surface takes an annotator
well over half a second) and back to back (the next click as soon as the last one's overlay shows, while
the server still finishes that click: the 3-D view, the template's refinement). Rows for both. For each
click the page itself times (``performance.now()`` from the ``mousedown`` event, polled every animation
frame):

- click → points:  the page's point count shows the click (the server placed it and re-fitted),
- click → overlay: the clicked view, then all three slice views, delivered a frame showing the new template.

Reference, measured in the same run: the render round trip without any fit (the page asks the server to
re-render; time until every slice view delivered the new frame).

Also counted on the server: renders per view per click (one per view that shows the change is the
floor), renders per view while the mouse only hovers over the axial view (the point preview), and, with
place mode off, a point dragged across the axial view at a hand's pace and again as fast as playwright sends
the moves, and as a real mouse moves at 60 Hz (pointer moves dispatched in the page every animation frame):
moves sent, re-fits and frames the axial view delivered per second.

    .venv/bin/python benchmarks/web_latency.py [--clicks 30] [--pause-ms 500] [--kind bean] [--size 64 64 48]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from weaknet.phantoms import make_phantom
from weaknet.volume import write_volume
from weaknet_web import testing

TIMER_JS = ("() => { window.__wn = {t0: 0}; document.addEventListener('mousedown',"
            " () => { window.__wn.t0 = performance.now(); }, true); }")
WAIT_JS = """async ([kind, arg, views]) => {
  const s = window.trame.state;
  const ok = () => kind === 'points' ? s.get('n_points') >= arg
                 : views.every(v => ((s.get('frames') || {})[v] || 0) >= arg);
  await new Promise(r => { const f = () => (ok() ? r() : requestAnimationFrame(f)); f(); });
  return [performance.now(), s.get('revision')];
}"""
RENDER_JS = """async (views) => {
  const t0 = performance.now();
  const rev = await window.trame.trigger('weaknet_render');
  const s = window.trame.state;
  await new Promise(r => { const f = () => (views.every(v => ((s.get('frames') || {})[v] || 0) >= rev)
                                         ? r() : requestAnimationFrame(f)); f(); });
  return performance.now() - t0;
}"""


def measure_clicks(page: testing.AppPage, label, plan, pause_ms: int) -> dict[str, list[float]]:
    """Click as planned, every other click after ``pause_ms``; per click, ms from mousedown to: point count,
    overlay in the view, in all views, and whether it came after the pause."""
    out = {"points": [], "view": [], "all": [], "paced": []}
    views = list(testing.SLICE_VIEWS)
    for view, offset, count in plan:
        page.scroll(view, offset)
        debug = page.debug()
        for p in testing.plane_surface_points(label.array, label.geometry, debug, {view: count})[view]:
            x, y, _ = page.ras_to_page(view, p, debug)
            k = int(page.state("n_points")) + 1
            paced = len(out["paced"]) % 2 == 0
            if paced:
                page.page.wait_for_timeout(pause_ms)
            page.page.mouse.click(x, y)
            t_points, revision = page.page.evaluate(WAIT_JS, ["points", k, views])
            t_view, _ = page.page.evaluate(WAIT_JS, ["frames", revision, [view]])
            t_all, _ = page.page.evaluate(WAIT_JS, ["frames", revision, views])
            t0 = page.page.evaluate("() => window.__wn.t0")
            out["points"].append(t_points - t0)
            out["view"].append(t_view - t0)
            out["all"].append(t_all - t0)
            out["paced"].append(paced)
    return out


def count_renders(page: testing.AppPage, action) -> dict[str, int]:
    """Renders per view (server-side count) caused by ``action()``, once every slice view has settled."""
    before = page.debug()["renders"]
    action()
    page.wait_frames(views=list(testing.SLICE_VIEWS) + ["ThreeD"])
    page.page.wait_for_timeout(300)  # a render scheduled late still counts
    after = page.debug()["renders"]
    return {v: after.get(v, 0) - before.get(v, 0) for v in after}


def hover(page: testing.AppPage, view: str, moves: int = 20) -> None:
    """Move the mouse across a view in ``moves`` steps at 60 Hz, without clicking."""
    box = page.view_box(view)
    for i in range(moves):
        page.page.mouse.move(box["x"] + box["width"] * (0.3 + 0.4 * i / moves), box["y"] + box["height"] * 0.5)
        page.page.wait_for_timeout(16)


IN_PAGE_DRAG_JS = """async ([x, y, steps]) => {
  // pointer moves of the mouse button held down (pointerId 1, playwright's mouse), one per animation frame,
  // dispatched in the page as the browser does for a real mouse at 60 Hz
  const target = document.elementFromPoint(x, y);
  for (let i = 1; i <= steps; i++) {
    await new Promise(requestAnimationFrame);
    const [cx, cy] = [x + 25 * Math.sin(Math.PI * i / steps), y + 12 * i / steps];
    target.dispatchEvent(new PointerEvent("pointermove", {clientX: cx, clientY: cy, pointerId: 1,
      pointerType: "mouse", isPrimary: true, buttons: 1, bubbles: true, cancelable: true, composed: true}));
  }
  return [x + 25 * Math.sin(Math.PI), y + 12];
}"""


def measure_drag(page: testing.AppPage, view: str, steps: int = 40, pause_ms: int = 16,
                 in_page: bool = False) -> dict[str, float]:
    """Drag the active object's last point across ``view`` (place mode off) in ``steps`` mouse moves,
    ``pause_ms`` apart through playwright (16: a hand's pace at 60 Hz; 0: as fast as playwright sends them),
    or with ``in_page`` one per animation frame dispatched in the page itself (a real mouse at 60 Hz: the
    moves do not wait for playwright's round trips); moves sent, re-fits and frames of that view per second
    over the drag."""
    debug = page.debug()
    points = np.asarray(next(iter(debug["points_ras"].values())), float)
    offset = debug["views"][view]["offset"]
    on_plane = points[np.abs(points[:, 2] - offset) < 0.5]  # an axial view's offset is its S coordinate
    start = on_plane[-1]
    page.set_state("place_mode", False)
    page.wait_state("place_mode", "v === false")
    x, y, _ = page.ras_to_page(view, start, debug)
    mouse = page.page.mouse
    mouse.move(x + 4, y + 4)
    mouse.move(x, y)
    page.wait_state(f"{view}_active_view_cursor", "v === 'pointer'")
    fits0, frames0 = int(page.state("update_count")), page.debug()["renders"].get(view, 0)
    t0 = time.perf_counter()
    mouse.down()
    if in_page:
        mouse.move(*page.page.evaluate(IN_PAGE_DRAG_JS, [x, y, steps]))
    else:
        for i in range(1, steps + 1):
            mouse.move(x + 25 * np.sin(np.pi * i / steps), y + 12 * i / steps)
            if pause_ms:
                page.page.wait_for_timeout(pause_ms)
    mouse.up()
    page.wait_frames()
    seconds = time.perf_counter() - t0
    fits, frames = int(page.state("update_count")) - fits0, page.debug()["renders"].get(view, 0) - frames0
    page.set_state("place_mode", True)
    return {"seconds": seconds, "moves": steps, "moves_per_s": steps / seconds, "fits": fits,
            "fits_per_s": fits / seconds, "frames_per_s": frames / seconds}


def save_screenshot(page: testing.AppPage, path: Path) -> None:
    """The whole page once every view shows the current template, as a 256-colour PNG."""
    from io import BytesIO

    from PIL import Image

    page.wait_frames(views=list(testing.SLICE_VIEWS) + ["ThreeD"])
    image = Image.open(BytesIO(page.page.screenshot())).convert("RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def row(name: str, ms: list[float], ref: float) -> str:
    a = np.asarray(ms)
    med = float(np.median(a))
    return (f"| {name} | {len(a)} | {med:.0f} | {np.percentile(a, 90):.0f} | {a.min():.0f} | {a.max():.0f} "
            f"| {med / ref:.1f}× |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=30, help="measured clicks, half of them paced (default 30)")
    parser.add_argument("--pause-ms", type=int, default=500, help="pause before every other click (default 500)")
    parser.add_argument("--kind", default="bean", help="phantom kind (default bean)")
    parser.add_argument("--size", type=int, nargs=3, default=(64, 64, 48), help="phantom voxels i j k")
    parser.add_argument("--layout", default="Four-up", help="page layout (Four-up | Slices only | ...)")
    parser.add_argument("--screenshot", default=None,
                        help="also save the page after the clicks as a small PNG (e.g. docs/img/web_app.png)")
    args = parser.parse_args(argv)

    phantom = make_phantom(args.kind, modality="CT", size=tuple(args.size), seed=0)
    with tempfile.TemporaryDirectory() as tmp, testing.chromium() as browser:
        root = Path(tmp) / "data"
        write_volume(phantom.image, root / "phantom.nrrd")
        with testing.running_server(root, volume="phantom.nrrd", log_path=Path(tmp) / "server.log") as server:
            page = server.open_page(browser)
            page.set_state("layout_name", args.layout)
            page.rerender()
            page.page.evaluate(TIMER_JS)
            reference = [page.page.evaluate(RENDER_JS, list(testing.SLICE_VIEWS)) for _ in range(20)]
            testing.click_surface(page, phantom.label, [("Green", None, 3), ("Yellow", None, 3)])
            z = testing.axial_offsets(phantom.label, [0.5, 0.8, 0.2])
            per_plane = [args.clicks // 3 + (1 if i < args.clicks % 3 else 0) for i in range(3)]
            times = measure_clicks(page, phantom.label, [("Red", z[i], n) for i, n in enumerate(per_plane)],
                                   args.pause_ms)
            debug = page.debug()
            extra = testing.plane_surface_points(phantom.label.array, phantom.label.geometry, debug, {"Red": 2})
            per_click = [count_renders(page, lambda p=p: page.click_ras("Red", p, debug)) for p in extra["Red"]]
            hovering = count_renders(page, lambda: hover(page, "Red"))
            drag = measure_drag(page, "Red")
            fast = measure_drag(page, "Red", pause_ms=0)
            live = measure_drag(page, "Red", steps=120, in_page=True)
            if args.screenshot:
                save_screenshot(page, Path(args.screenshot))
            server.check_alive()
    ref = float(np.median(reference))
    print(f"weaknet app click → overlay latency, {args.layout} layout, {args.kind} phantom {tuple(args.size)} voxels, "
          f"headless Chromium, {platform.processor() or platform.machine()}, Python {sys.version.split()[0]}")
    print("| measured in the browser | n | median ms | p90 ms | min ms | max ms | × reference |")
    print("|---|---|---|---|---|---|---|")
    print(row("render round trip, no fit (reference)", reference, ref))
    paced = np.asarray(times["paced"])
    for label, pick in ((f"{args.pause_ms} ms after the last click", paced), ("back to back", ~paced)):
        print(row(f"click → point count shown, {label}", np.asarray(times["points"])[pick], ref))
        print(row(f"click → template overlay in the clicked view, {label}", np.asarray(times["view"])[pick], ref))
        print(row(f"click → overlay in all three slice views, {label}", np.asarray(times["all"])[pick], ref))
    views = sorted(per_click[0])
    print()
    print("| renders on the server | " + " | ".join(views) + " |")
    print("|---|" + "---|" * len(views))
    print("| per click (mean of 2) | " + " | ".join(f"{np.mean([c[v] for c in per_click]):.1f}" for v in views) + " |")
    print("| 20 mouse moves over the axial view, no click | " + " | ".join(str(hovering[v]) for v in views) + " |")
    print()
    print(f"drag of one point across the axial view ({drag['moves']} mouse moves, 16 ms apart, in "
          f"{drag['seconds']:.2f} s: {drag['moves_per_s']:.0f} moves/s sent): {drag['fits']} re-fits, "
          f"{drag['fits_per_s']:.0f} re-fits/s, axial view {drag['frames_per_s']:.0f} frames/s")
    print(f"the same drag with no pause between the moves ({fast['moves_per_s']:.0f} moves/s sent): {fast['fits']} "
          f"re-fits, {fast['fits_per_s']:.0f} re-fits/s, axial view {fast['frames_per_s']:.0f} frames/s")
    print(f"the same drag as a real mouse at 60 Hz (moves dispatched in the page every animation frame, "
          f"{live['moves']} in {live['seconds']:.2f} s: {live['moves_per_s']:.0f} moves/s): {live['fits']} re-fits, "
          f"{live['fits_per_s']:.0f} re-fits/s, axial view {live['frames_per_s']:.0f} frames/s")
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end of the run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
