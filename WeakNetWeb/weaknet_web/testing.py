"""Driving the annotator from a real browser: a server subprocess, headless Chromium, clicks at RAS points.

Used by the end-to-end tests (Testing/test_web_*.py) and the click→overlay latency benchmark. Waits are
on delivered frames (``state.frames`` ≥ a scene revision, see :mod:`weaknet_web.views`), never on sleeps.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .server import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
# A known, rare failure of the server under slicer-core (see /work/shared/NOTES.md): it logs these errors
# and exits. ServerProcess restarts it once when it happens at start or while the first page opens.
KNOWN_CRASH = "vtkImageExtractComponents"
SLICE_VIEWS = ("Red", "Green", "Yellow")  # axial, coronal, sagittal (trame ids of Slicer's slice views)


class ServerError(RuntimeError):
    """The app's server did not start or died; the message ends with its log's tail."""


class ServerProcess:
    """``weaknet app`` in a subprocess on a free loopback port; its output goes to ``log_path``."""

    def __init__(self, data_root: Path, volume: str | None = None, sample: bool = False, log_path=None,
                 extra_args: tuple[str, ...] = ()):
        self.data_root = Path(data_root)
        self.args = [str(self.data_root / volume)] if volume else []
        self.args += ["--data-root", str(self.data_root)] + (["--sample"] if sample else []) + list(extra_args)
        self.log_path = Path(log_path or self.data_root.parent / "server.log")
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self._log_start = 0

    def start(self, timeout: float = 60.0, retries: int = 1) -> "ServerProcess":
        for attempt in range(retries + 1):
            try:
                return self._start_once(timeout)
            except ServerError as exc:
                self.stop()
                if KNOWN_CRASH not in str(exc) or attempt == retries:
                    raise
        return self

    def _start_once(self, timeout: float) -> "ServerProcess":
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "a")
        self._log_start = self._log.tell()
        self.proc = subprocess.Popen([sys.executable, "-m", "weaknet", "app", *self.args, "--port", str(port)],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise ServerError(f"server not ready after {timeout:.0f} s\n{self.log_tail()}")

    def open_page(self, browser, retries: int = 1, **kwargs) -> "AppPage":
        """A tab on the app (:class:`AppPage`); if the server died of the known crash meanwhile, restart it
        and try again (at most ``retries`` times)."""
        for attempt in range(retries + 1):
            try:
                return AppPage(browser, self.url, **kwargs)
            except Exception:
                crashed = self.proc is not None and self.proc.poll() is not None
                if not (crashed and KNOWN_CRASH in self.log_tail()) or attempt == retries:
                    raise
                self.stop()
                self.start(retries=0)
        raise AssertionError("unreachable")

    def check_alive(self) -> None:
        """Raise ServerError (with the log's tail) if the server has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerError(f"server exited with status {self.proc.returncode}\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` meaningful lines this server process logged (VTK's harmless warnings left out)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_start)
                text = f.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        noise = ("WindowResizeEvent", "ConfigureEvent", "bad X server", "vtkXOpenGLRenderWindow")
        return "\n".join([ln for ln in text if ln.strip() and not any(n in ln for n in noise)][-lines:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_log", None):
            self._log.close()
        self.proc = None


@contextmanager
def running_server(*args, **kwargs):
    server = ServerProcess(*args, **kwargs).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def chromium():
    """A headless Chromium (Debian's /usr/bin/chromium, driven by playwright; nothing is downloaded)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class AppPage:
    """One browser tab on the app, with helpers that wait on delivered frames."""

    def __init__(self, browser, url: str, width: int = 1400, height: int = 900, timeout_ms: int = 30000):
        self.page = browser.new_page(viewport={"width": width, "height": height})
        self.page.set_default_timeout(timeout_ms)
        self.page.goto(url)
        self.page.wait_for_function(
            "() => { const im = document.querySelectorAll('img.image-display-area');"
            " return im.length >= 3 && Array.from(im).every(e => e.naturalWidth > 0"
            " && Math.abs(e.getBoundingClientRect().width - e.naturalWidth) < 2); }")
        self.wait_state("volume_name", lambda v: bool(v))

    def state(self, name: str):
        return self.page.evaluate("(n) => window.trame.state.get(n)", name)

    def set_state(self, name: str, value) -> None:
        self.page.evaluate("([n, v]) => window.trame.state.set(n, v)", [name, value])

    def trigger(self, name: str, *args):
        return self.page.evaluate("([n, a]) => window.trame.trigger(n, a)", [name, list(args)])

    def wait_state(self, name: str, predicate_js_or_py, timeout_ms: int | None = None):
        """Wait until state ``name`` satisfies a JS expression in ``v`` (str) or poll a Python predicate."""
        if isinstance(predicate_js_or_py, str):
            self.page.wait_for_function(f"() => {{ const v = window.trame.state.get({name!r}); "
                                        f"return {predicate_js_or_py}; }}", timeout=timeout_ms)
            return self.state(name)
        deadline = time.monotonic() + (timeout_ms or 30000) / 1000
        while time.monotonic() < deadline:
            value = self.state(name)
            if predicate_js_or_py(value):
                return value
            self.page.wait_for_timeout(50)
        raise TimeoutError(f"state {name} never satisfied the predicate (last: {self.state(name)!r})")

    def wait_frames(self, revision: int | None = None, views=SLICE_VIEWS) -> int:
        """Wait until every view in ``views`` delivered a frame of scene revision ≥ ``revision`` (default:
        the current one) to this page; returns that revision."""
        if revision is None:
            revision = int(self.state("revision"))
        self.page.wait_for_function(
            "([rev, views]) => { const f = window.trame.state.get('frames') || {};"
            " return views.every(v => (f[v] || 0) >= rev); }", arg=[revision, list(views)], polling="raf")
        return revision

    def rerender(self) -> int:
        """Force a new revision and wait for its frames in every slice view."""
        return self.wait_frames(int(self.trigger("weaknet_render")))

    def scroll(self, view: str, offset_mm: float) -> None:
        """Move a slice view to ``offset_mm`` with its slider (as a user does) and wait for the frames.

        The page sends a slider value only when it differs from the one it holds, which may equal the target
        while the view is elsewhere (moved by the server since): after each second without the view moving,
        the value is sent again nudged by 0.1 µm steps (well inside the 1e-3 mm tolerance)."""
        start = time.monotonic()
        for attempt in range(10):
            self.set_state(f"{view}__SliderState__value", float(offset_mm) + 1e-4 * attempt)
            retry = time.monotonic() + 1.0
            while time.monotonic() < retry:
                if abs(self.debug()["views"][view]["offset"] - offset_mm) <= 1e-3:
                    self.rerender()
                    return
                self.page.wait_for_timeout(30)
        raise TimeoutError(f"{view} did not move to {offset_mm} mm in {time.monotonic() - start:.0f} s")

    def debug(self) -> dict:
        return self.trigger("weaknet_debug")

    def view_box(self, view: str) -> dict:
        return self.page.evaluate(
            "(v) => { const r = document.querySelector(`[data-view=\"${v}\"]`).parentElement"
            ".querySelector('img.image-display-area').getBoundingClientRect();"
            " return {x: r.x, y: r.y, width: r.width, height: r.height}; }", view)

    def ras_to_page(self, view: str, ras, debug: dict | None = None) -> tuple[float, float, float]:
        """Page pixel (x, y) of a RAS point in a slice view, and the point's distance (mm) off the slice."""
        info = (debug or self.debug())["views"][view]
        xy_to_ras = np.array(info["xy_to_ras"], float).reshape(4, 4)
        xyz = np.linalg.solve(xy_to_ras, np.r_[np.asarray(ras, float), 1.0])
        w, h = info["size"]
        box = self.view_box(view)
        normal = xy_to_ras[:3, 2] / np.linalg.norm(xy_to_ras[:3, 2])
        off = float(np.dot(np.asarray(ras, float) - xy_to_ras[:3, 3], normal))
        return (box["x"] + (xyz[0] + 0.5) * box["width"] / w,
                box["y"] + (h - xyz[1] - 0.5) * box["height"] / h, off)

    def click_ras(self, view: str, ras, debug: dict | None = None, frames: bool = False) -> int:
        """Click at a RAS point (on the view's current slice) and wait until the page shows the point (the
        server has re-fitted by then); with ``frames`` also wait for the slice views' frames of the re-fit.
        Returns the scene revision of the re-fit."""
        x, y, off = self.ras_to_page(view, ras, debug)
        if abs(off) > 0.5:
            raise ValueError(f"{ras} is {off:.2f} mm off the {view} slice")
        before = int(self.state("n_points"))
        self.page.mouse.click(x, y)
        self.wait_state("n_points", f"v >= {before + 1}")  # sent with the re-fit's revision (same flush)
        revision = int(self.state("revision"))
        return self.wait_frames(revision) if frames else revision

    def drag_ras(self, view: str, ras, dx: float, dy: float, steps: int = 10) -> None:
        """Drag the point at ``ras`` by (dx, dy) page pixels (place mode must be off); waits for the hover
        cursor before pressing and for the re-fit after releasing."""
        x, y, _ = self.ras_to_page(view, ras)
        mouse = self.page.mouse
        mouse.move(x + 4, y + 4)
        mouse.move(x, y)
        self.wait_state(f"{view}_active_view_cursor", "v === 'pointer'")
        fits = int(self.state("update_count"))
        mouse.down()
        for i in range(1, steps + 1):
            mouse.move(x + dx * i / steps, y + dy * i / steps)
            self.page.wait_for_timeout(30)  # pointer speed of a hand drag
        mouse.up()
        self.wait_state("update_count", f"v > {fits}")
        self.wait_frames()

    def drag(self, x: float, y: float, dx: float, dy: float, steps: int = 10) -> None:
        """Press the left button at page pixel (x, y), move by (dx, dy) at a hand's pace, release."""
        mouse = self.page.mouse
        mouse.move(x, y)
        mouse.down()
        for i in range(1, steps + 1):
            mouse.move(x + dx * i / steps, y + dy * i / steps)
            self.page.wait_for_timeout(30)
        mouse.up()

    def view_ids(self) -> list[str]:
        """The trame ids of the views on the page (slice views: :data:`SLICE_VIEWS`; the 3D view's differs)."""
        return self.page.evaluate("() => Array.from(document.querySelectorAll('[data-view]'))"
                                  ".map(e => e.getAttribute('data-view'))")

    def screenshot_view(self, view: str, path: Path | None = None) -> np.ndarray:
        """The view's pixels as the browser shows them: uint8 (H, W, 3)."""
        from io import BytesIO

        from PIL import Image

        box = self.view_box(view)
        png = self.page.screenshot(clip=box, path=str(path) if path else None)
        return np.asarray(Image.open(BytesIO(png)).convert("RGB"))


def plane_surface_points(mask: np.ndarray, geometry, debug: dict, counts: dict[str, int],
                         margin_px: float = 25.0) -> dict[str, np.ndarray]:
    """Points (RAS mm) on the true surface of ``mask`` that lie on each slice view's current plane.

    counts: view → how many points (spread by farthest-point sampling). The surface is the mask's
    marching-cubes boundary (weaknet.sampling.mask_surface); points within ``margin_px`` of a view's edge
    are skipped.
    """
    from weaknet.coords import lps_to_ras
    from weaknet.sampling import farthest_point_sampling, mask_surface

    verts = lps_to_ras(mask_surface(mask, geometry)[0])
    out = {}
    for view, n in counts.items():
        info = debug["views"][view]
        m = np.array(info["xy_to_ras"], float).reshape(4, 4)
        normal = m[:3, 2] / np.linalg.norm(m[:3, 2])
        near = verts[np.abs((verts - m[:3, 3]) @ normal) < 0.05]
        xy = np.linalg.solve(m, np.c_[near, np.ones(len(near))].T).T[:, :2]
        w, h = info["size"]
        keep = (xy[:, 0] > margin_px) & (xy[:, 0] < w - margin_px) & (xy[:, 1] > margin_px) & (xy[:, 1] < h - margin_px)
        near = near[keep]
        if len(near) < n:
            raise ValueError(f"the {view} slice cuts the surface in only {len(near)} points")
        out[view] = near[farthest_point_sampling(near, n, seed=0)]
    return out


def axial_offsets(label, quantiles) -> list[float]:
    """RAS S coordinates (mm) of axial voxel planes through a label Volume's object at the given quantiles of
    its extent (valid slice offsets of the axial view for an axis-aligned volume)."""
    from weaknet.coords import lps_to_ras

    g = label.geometry
    ks = np.flatnonzero(label.array.reshape(g.shape[0], -1).any(axis=1))
    picked = ks[np.round(np.quantile(np.arange(len(ks)), quantiles)).astype(int)]
    return [float(lps_to_ras(g.to_lps(np.array([[0.0, 0.0, k]])))[0, 2]) for k in picked]


def click_surface(page: AppPage, label, plan) -> np.ndarray:
    """Click points of a label Volume's surface: plan = [(view, slice offset mm or None, count), ...];
    returns the clicked points (N, 3) RAS in order."""
    clicked = []
    for view, offset, count in plan:
        if offset is not None:
            page.scroll(view, offset)
        debug = page.debug()
        for p in plane_surface_points(label.array, label.geometry, debug, {view: count})[view]:
            page.click_ras(view, p, debug)
            clicked.append(p)
    return np.array(clicked)


def overlay_hits(shot: np.ndarray, pixels: np.ndarray, color=(0.95, 0.35, 0.25), radius: int = 3) -> float:
    """Fraction of ``pixels`` (M, 2) x, y of a screenshot (H, W, 3) with a pixel of ``color``'s hue within
    ``radius``: its dominant channel (red for Object 1, blue for Object 2...) above the weakest by > 40 (a
    grey image pixel has none)."""
    rgb = shot.astype(int)
    c, weakest = int(np.argmax(color)), int(np.argmin(color))
    hue = (rgb[..., c] - rgb[..., weakest]) > 40
    hits = [hue[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1].any()
            for x, y in np.round(pixels).astype(int)]
    return float(np.mean(hits)) if hits else 0.0


def outline_pixels(page: AppPage, view: str, mask: np.ndarray, geometry, avoid: np.ndarray, debug) -> np.ndarray:
    """Pixels (view-relative x, y) of ``mask``'s surface on the view's plane, away (> 12 px) from ``avoid``
    (page pixels (M, 2) of the point markers)."""
    from weaknet.coords import lps_to_ras
    from weaknet.sampling import mask_surface

    verts = lps_to_ras(mask_surface(mask, geometry)[0])
    box = page.view_box(view)
    out = []
    for v in verts:
        x, y, off = page.ras_to_page(view, v, debug)
        if abs(off) < 0.05 and (not len(avoid) or np.min(np.hypot(avoid[:, 0] - x, avoid[:, 1] - y)) > 12):
            out.append((x - box["x"], y - box["y"]))
    return np.array(out)
