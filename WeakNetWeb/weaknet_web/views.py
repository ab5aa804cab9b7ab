"""Remote views (slice and 3D) that report each frame they send to the browser, and the app's layouts.

trame-slicer renders every Slicer view server-side and streams it as images (RCA). Browser tests and the
latency benchmark must wait for a *delivered* frame, not sleep: each factory here wraps the view's push
callback so that, after an image is pushed, the trame state ``frames`` maps the view's trame id to the app's
scene revision that image shows (see :class:`FrameCounter`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from trame_rca.schedulers import RcaRenderSchedulerProtocol
from trame_slicer.core import LayoutManager
from trame_slicer.rca_view import RemoteSliceViewFactory, RemoteThreeDViewFactory
from trame_slicer.rca_view.rca_view_factory import RcaView
from trame_slicer.views import Layout, LayoutDirection, SliceView, ViewLayoutDefinition


HOLD_S = 0.1
"""Longest a 3-D view's render waits for the slice views' renders."""
SEND_S = 0.03
"""Then the 3-D view's render waits this long, for the slice views' frames to be sent."""


class FrameCounter:
    """Scene revision counter shared by the app and its views.

    ``bump()`` is called by the app after each change of what the views show (a fit, a loaded volume) and
    returns the new revision; every frame rendered afterwards is tagged with it in ``state.frames`` when it
    is pushed to the browser. With ``settle`` a view that has no render pending (Slicer's displayable
    managers asked for none: nothing it shows changed) is counted as showing the new revision at once, so
    nothing is re-rendered only to be counted. ``renders`` counts the renders of each view (benchmarks).
    """

    def __init__(self, server):
        self._state = server.state
        self.revision = 0
        self._state.frames = {}
        self._state.revision = 0
        self._schedulers: dict[str, RcaRenderSchedulerProtocol] = {}
        self.renders: dict[str, int] = {}
        self._slice_views: set[str] = set()

    def watch(self, view_id: str, scheduler: RcaRenderSchedulerProtocol, slice_view: bool = True) -> None:
        """Follow a view: its render scheduler tells whether a render is pending; a 3-D view's renders wait
        for the slice views' (:class:`SliceViewsFirst`)."""
        self._schedulers[view_id] = scheduler
        self.renders.setdefault(view_id, 0)
        if slice_view:
            self._slice_views.add(view_id)
            return
        request = getattr(scheduler, "_request_event", None)
        if request is None:  # another trame-rca: leave its scheduling alone
            return
        scheduler._request_event = SliceViewsFirst(self)
        if request.is_set():
            scheduler._request_event.set()

    def slice_render_pending(self) -> bool:
        return any(_render_pending(self._schedulers[v]) for v in self._slice_views)

    def slices_shown(self) -> bool:
        """Whether every slice view has delivered a frame of the current revision (or needed none)."""
        frames = self._state.frames or {}
        return all(int(frames.get(v, 0)) >= self.revision for v in self._slice_views)

    def bump(self, settle: bool = False) -> int:
        self.revision += 1
        self._state.revision = self.revision
        if settle:
            idle = [v for v, scheduler in self._schedulers.items() if not _render_pending(scheduler)]
            if idle:
                self._mark(idle, self.revision)
        return self.revision

    def frame_pushed(self, view_id: str, revision: int) -> None:
        """Record that ``view_id`` delivered a frame showing scene ``revision``."""
        self._mark([view_id], revision)

    def _mark(self, view_ids: list[str], revision: int) -> None:
        frames = dict(self._state.frames or {})
        for view_id in view_ids:
            frames[view_id] = max(int(frames.get(view_id, 0)), revision)
        with self._state:
            self._state.frames = frames


class SliceViewsFirst(asyncio.Event):
    """A 3-D view's render request, waited on by trame-rca's render loop: once set, it also waits (at most
    :data:`HOLD_S`) until no slice view wants a render. The views render one after the other with the event
    loop blocked (15–40 ms each on llvmpipe) and their frames are pushed after the last one: the slice
    views, where the user clicks, go first."""

    def __init__(self, counter: "FrameCounter"):
        super().__init__()
        self._counter = counter

    async def wait(self) -> bool:
        await super().wait()
        deadline = time.monotonic() + HOLD_S
        while time.monotonic() < deadline and self._counter.slice_render_pending():
            await asyncio.sleep(0.002)
        await asyncio.sleep(SEND_S)  # the slice views' frames go out before this render blocks the loop
        return True


def _render_pending(scheduler) -> bool:
    """Whether trame-rca's image scheduler has a render requested and not yet made (unknown: True)."""
    event = getattr(scheduler, "_request_event", None)
    return True if event is None else event.is_set()


def _counting_factory(base: type):
    class CountingFactory(base):
        """``base`` whose views record each pushed frame in a :class:`FrameCounter`."""

        def __init__(self, server, counter: FrameCounter, **kwargs):
            super().__init__(server, **kwargs)
            self._counter = counter
            self._last_scheduler: RcaRenderSchedulerProtocol | None = None

        def _create_vuetify_ui(self, view_id, slicer_view, rca_scheduler, **kwargs):
            self._last_scheduler = rca_scheduler
            super()._create_vuetify_ui(view_id, slicer_view, rca_scheduler, **kwargs)

        def _create_view(self, view, scene, app_logic) -> RcaView:
            rca_view = super()._create_view(view, scene, app_logic)
            if isinstance(rca_view.slicer_view, SliceView):  # 2-D images: multisampling only costs time
                rca_view.slicer_view.render_window().SetMultiSamples(0)
            push: Callable = rca_view.view_adapter.push
            view_id = rca_view.view_adapter.area_name
            counter = self._counter
            # Tag a frame with the revision current when it was *rendered*: a frame rendered just before a
            # fit is often pushed just after it (the fit holds the event loop), and must not count as new.
            rendered = [counter.revision]
            counter.watch(view_id, self._last_scheduler, isinstance(rca_view.slicer_view, SliceView))

            def on_render(*_):
                rendered[0] = counter.revision
                counter.renders[view_id] = counter.renders.get(view_id, 0) + 1

            rca_view.slicer_view.render_window().AddObserver("EndEvent", on_render)

            def push_and_count(content: bytes, meta: dict) -> None:
                push(content, meta)
                counter.frame_pushed(view_id, rendered[0])

            self._last_scheduler.set_push_callback(push_and_count)
            return rca_view

    CountingFactory.__name__ = f"Counting{base.__name__}"
    return CountingFactory


CountingSliceViewFactory = _counting_factory(RemoteSliceViewFactory)
CountingThreeDViewFactory = _counting_factory(RemoteThreeDViewFactory)


_LETTERS = (("L", "R"), ("P", "A"), ("I", "S"))  # RAS axes: (negative, positive) direction


def orientation_labels(xy_to_ras) -> dict[str, str]:
    """The anatomical direction at each edge of a slice view and along its normal, from its 4×4 XY→RAS
    matrix (a vtkMatrix4x4): {"left", "right", "top", "bottom"} (each edge gets the dominant axis of its
    direction), "normal" (R, A or S: the axis the slice position is given along) and "sign" (±1: the slice
    offset times it is that coordinate), e.g. an axial view shows R at its left, A at its top, "S 12.0 mm"."""
    def letter(column: int, sign: float) -> str:
        direction = [sign * xy_to_ras.GetElement(r, column) for r in range(3)]
        axis = max(range(3), key=lambda r: abs(direction[r]))
        return _LETTERS[axis][direction[axis] > 0]

    normal = [xy_to_ras.GetElement(r, 2) for r in range(3)]
    axis = max(range(3), key=lambda r: abs(normal[r]))
    return {"left": letter(0, -1), "right": letter(0, 1), "bottom": letter(1, -1), "top": letter(1, 1),
            "normal": _LETTERS[axis][1], "sign": 1 if normal[axis] > 0 else -1}


_EDGE = "position: absolute; color: #ffd54f; font: 600 13px sans-serif; pointer-events: none; " \
    "text-shadow: 0 0 3px #000;"


def _tagged(populate: Callable) -> Callable:
    """``populate`` (a view gutter builder) plus an empty ``<div data-view="ID">`` that lets tests and the
    benchmark find the view's image in the page, and on slice views the orientation letters at the edges
    (state ``orientation[ID]``) and the slice position in mm (its slider's value)."""
    from trame.widgets import html

    def populate_and_tag(server, view_id: str, view) -> None:
        html.Div(raw_attrs=[f'data-view="{view_id}"'], style="display: none")
        populate(server, view_id, view)
        if not hasattr(view, "get_slice_value"):
            return
        o = f"(orientation['{view_id}'] || {{}})"
        for edge, where in (("left", "left: 4px; top: 50%;"), ("right", "right: 30px; top: 50%;"),
                            ("top", "top: 4px; left: 50%;"), ("bottom", "bottom: 34px; left: 50%;")):
            html.Div(f"{{{{ {o}.{edge} }}}}", style=_EDGE + where,
                     raw_attrs=[f'data-testid="orientation-{view_id}-{edge}"'])
        position = f"(({o}.sign || 1) * ({view_id}__SliderState__value || 0)).toFixed(1)"
        html.Div(f"{{{{ {o}.normal }}}} {{{{ {position} }}}} mm",
                 style=_EDGE + "left: 6px; bottom: 34px; font-weight: 400;",
                 raw_attrs=[f'data-testid="slice-position-{view_id}"'])

    return populate_and_tag


STILL_QUALITY = 90  # RCA's still-frame JPEG quality; interactive frames use it too, so a change costs one
# render per view instead of two (an interactive frame, then a still re-render): renders dominate without a GPU


SLICE_FPS = (30.0, 10.0)
"""Most frames per second of a slice view under the mouse, and of the others: while a point is dragged the
view being dragged in follows at 30 frames/s and the other views (≈ 15–40 ms a render on llvmpipe) do not
hold up the re-fits."""
THREED_FPS = (20.0, 5.0)


def register_counting_factories(view_manager, server, counter: FrameCounter) -> None:
    """Register slice and 3D view factories whose frames are counted by ``counter`` (JPEG images)."""
    from trame_slicer.app.ui import create_vertical_slice_view_gutter_ui, create_vertical_view_gutter_ui

    view_manager.register_factory(CountingSliceViewFactory(
        server, counter, populate_view_ui_f=_tagged(create_vertical_slice_view_gutter_ui),
        target_fps=SLICE_FPS[0], blur_fps=SLICE_FPS[1], interactive_quality=STILL_QUALITY))
    view_manager.register_factory(CountingThreeDViewFactory(
        server, counter, populate_view_ui_f=_tagged(create_vertical_view_gutter_ui),
        target_fps=THREED_FPS[0], blur_fps=THREED_FPS[1], interactive_quality=STILL_QUALITY))


LAYOUTS = ("Four-up", "Axial + 3D", "Axial only", "Slices only")


def layouts() -> dict[str, Layout]:
    """The app's layouts: Slicer's four-up (axial, 3D, coronal, sagittal) and smaller ones."""
    axial = ViewLayoutDefinition.axial_view()
    coronal = ViewLayoutDefinition.coronal_view()
    sagittal = ViewLayoutDefinition.sagittal_view()
    threed = ViewLayoutDefinition.threed_view()
    return {
        "Four-up": Layout(LayoutDirection.Vertical, [
            Layout(LayoutDirection.Horizontal, [axial, threed]),
            Layout(LayoutDirection.Horizontal, [coronal, sagittal]),
        ]),
        "Axial + 3D": Layout(LayoutDirection.Horizontal, [axial, threed]),
        "Axial only": Layout(LayoutDirection.Vertical, [axial]),
        "Slices only": Layout(LayoutDirection.Horizontal, [axial, coronal, sagittal]),
    }


def make_layout_manager(slicer_app, server) -> LayoutManager:
    """A layout manager with :func:`layouts` registered and the four-up layout selected."""
    manager = LayoutManager(slicer_app.scene, slicer_app.view_manager, server)
    manager.register_layout_dict(layouts())
    manager.set_layout(LAYOUTS[0])
    return manager
