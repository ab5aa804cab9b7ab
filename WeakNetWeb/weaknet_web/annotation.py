"""The page's side of the annotation: WeakNetSlicerLib's :class:`AnnotationController` ⇄ trame state.

The controller (the same one the desktop Slicer module drives) owns the sessions, the autosave layout
(``<data root>/annotations/<volume stem>/``), undo/redo and place mode; this module forwards the buttons to
it and mirrors each :class:`~WeakNetSlicerLib.annotation.AnnotationStatus` it sends into the page.
"""

from __future__ import annotations

import asyncio
import time

from weaknet.coords import lps_to_ras
from weaknet.errors import InputError

from .errors import user_message

ANNOTATIONS = "annotations"
DRAG_PX = 4
"""A left-button press and release farther apart than this (render-window pixels) in the 3D view is a drag
(rotating the view), never a click that places a point."""
HOVER_SETTLE_S = 0.3
"""Seconds after the mouse stopped moving over a view until the other views show the point preview or the
dragged point too (:meth:`AnnotationPanel.render_pointer_view`)."""
HOLD_PERIOD_S = 0.25
"""Longest the other views are held back while the mouse keeps moving over one (≈ 4 frames/s each)."""
REFINE_POLL_S = 0.01
REFINE_SEND_S = 0.03
REFINE_WAIT_S = 0.5
"""A template's refinement (the rest shape re-decided after a click, :attr:`AnnotationSession.later`) waits
until every slice view has pushed the click's frame (starting it and showing its result hold the event loop
that sends them), polled every :data:`REFINE_POLL_S`, at most this long, then :data:`REFINE_SEND_S` for the
frames to go out."""


def flush_soon(state) -> None:
    """Push pending state on the next turn of the event loop as well: a session update that happens while
    trame is flushing (e.g. inside a state-change listener) is otherwise held back until the next message."""
    try:
        asyncio.get_running_loop().call_soon(state.flush)
    except RuntimeError:  # no event loop (scripts, tests without a server): nothing is waiting for the state
        pass


class AnnotationPanel:
    """Mirrors the controller into the page.

    State it writes: ``objects`` (names), ``object_list`` (name, colour, points, visible, opacity of each),
    ``selected_point`` (index in ``points``, -1: none), ``active_object``, ``points`` (the active object's, list of
    {i, ras}), ``n_points`` (the active object's), ``total_points`` (all objects), ``effort``, ``status``,
    ``status_level``, ``place_mode``, ``can_undo``, ``can_redo``, ``use_prior`` (the active object is fitted from a
    shape prior, or one is being built for it: ``building_prior``) and ``update_count`` (statuses mirrored so
    far; tests wait on it).
    """

    def __init__(self, app):
        from WeakNetSlicerLib.annotation import IDLE, AnnotationController

        self.app = app
        self.state = app.state
        self._held_views: list = []  # views whose renders render_pointer_view may hold back
        self.controller = AnnotationController(app.slicer.scene, app.data_root.resolve(ANNOTATIONS))
        self.controller.drop_outside_clicks = True  # a click in a view's black margin is not a point
        self.state.update_count = 0
        self.state.place_mode = True
        self._mirror(IDLE)
        self.controller.add_listener(self._mirror)
        c = self.controller
        self.add_object, self.undo, self.redo, self.refit, self.clear = c.add_object, c.undo, c.redo, c.refit, c.clear
        self.delete_point, self.load_points, self.save_points = c.delete_point, c.load_points, c.save_points
        self.labelmap, self.save_segmentation, self.require = c.labelmap, c.save_segmentation, c.require
        self.state.selected_point = -1
        self.state.object_list = []
        self.state.use_prior = self.state.building_prior = False

    # ------------------------------------------------------------------------------- objects, points
    def rename(self, name: str, new_name: str) -> None:
        self.controller.rename_object(name, new_name)

    def set_color(self, name: str, hex_color: str) -> None:
        """``hex_color``: ``#rrggbb`` from the page's colour swatch."""
        text = str(hex_color).lstrip("#")
        if len(text) != 6:
            raise InputError(f"not a colour: {hex_color!r}")
        self.controller.set_color(name, tuple(int(text[i:i + 2], 16) / 255 for i in (0, 2, 4)))

    def set_shown(self, name: str, visible: bool | None = None, opacity: float | None = None) -> None:
        self.controller.set_shown(name, visible, None if opacity is None else float(opacity))

    def remove_object(self, name: str) -> None:
        """Delete an object (the page asks first); a volume always keeps one object to click on."""
        self.controller.remove_object(name)
        if not self.controller.require().objects:
            self.controller.add_object()

    def select_point(self, index: int) -> None:
        """Select point ``index`` of the active object (the list highlights it; Delete removes it) and move
        every slice view to it (Slicer's jump to a control point: each view keeps its in-plane position)."""
        import slicer

        pts = self.state.points or []
        if not pts:
            self.state.selected_point = -1
            return
        index = int(index) % len(pts)
        self.state.selected_point = index
        r, a, s = pts[index]["ras"]
        slicer.vtkMRMLSliceNode.JumpAllSlices(self.app.slicer.scene, r, a, s, slicer.vtkMRMLSliceNode.OffsetJumpSlice)
        self.app.changed()

    def set_prior(self, on: bool) -> None:
        """The page's "prior" switch: fit the active object from the earlier objects of its name (or without);
        the switch always ends showing what the object has (a refused prior turns it off again)."""
        status = self.controller.status()
        try:
            if bool(on) != (status.prior > 0 or status.building_prior):
                self.controller.use_prior(bool(on))
        finally:
            status = self.controller.status()
            self.state.use_prior = status.prior > 0 or status.building_prior

    def jump_to_suggestion(self) -> None:
        """Show where to click next (the controller's suggestions, as points of their own in every view), move
        every slice view to the first (the place the template is least constrained by points) and keep it in
        ``suggestion`` (RAS mm)."""
        import slicer

        r, a, s = (float(c) for c in self.controller.show_suggestions()[0])
        self.state.suggestion = [r, a, s]
        slicer.vtkMRMLSliceNode.JumpAllSlices(self.app.slicer.scene, r, a, s, slicer.vtkMRMLSliceNode.OffsetJumpSlice)
        self.app.inform(f"where to click next: R {r:.1f}, A {a:.1f}, S {s:.1f} mm (key S)")
        self.app.changed()

    def delete_selected(self) -> None:
        index = int(self.state.selected_point if self.state.selected_point is not None else -1)
        if index < 0:
            raise InputError("select a point in the list first (click it, or use the ← → keys)")
        self.delete_point(index)
        self.state.selected_point = min(index, len(self.state.points) - 1)

    def ignore_drags(self, threed_views, all_views) -> None:
        """Slicer's place mode puts a point where the left button is released, also at the end of a drag that
        rotated the 3D view: take such a point back (every press in any view clears the mark)."""
        start = [0, 0]

        def pressed(interactor, _event):
            start[:] = interactor.GetEventPosition()
            self._mark_drag(False)

        def released(interactor, _event):
            x, y = interactor.GetEventPosition()
            self._mark_drag(abs(x - start[0]) + abs(y - start[1]) > DRAG_PX)

        for view in all_views:
            view.interactor().AddObserver("LeftButtonPressEvent", pressed, 100.0)
        for view in threed_views:
            view.interactor().AddObserver("LeftButtonReleaseEvent", released, 100.0)
            view.interactor().AddObserver("LeftButtonReleaseEvent", lambda *_: self._mark_drag(False), -100.0)

    def rotate_while_placing(self, threed_views) -> None:
        """In place mode Slicer's 3D view does not rotate; a left-button drag there (farther than
        :data:`DRAG_PX`) rotates its camera as VTK's trackball does (view mode is unchanged), and places no
        point (:meth:`ignore_drags`)."""
        for view in threed_views:
            last: list = [None]

            def pressed(interactor, _event, last=last):
                last[0] = (tuple(interactor.GetEventPosition()), tuple(interactor.GetEventPosition()))

            def released(*_, last=last):
                last[0] = None

            def moved(interactor, _event, last=last, view=view):
                if last[0] is None or not self.controller.placing:
                    return
                (x0, y0), (px, py) = last[0]
                x, y = interactor.GetEventPosition()
                if abs(x - x0) + abs(y - y0) <= DRAG_PX:
                    return
                width, height = view.render_window().GetSize()
                camera = view.renderer().GetActiveCamera()
                camera.Azimuth(-200.0 * (x - px) / max(1, width))  # vtkInteractorStyleTrackballCamera's gain
                camera.Elevation(-200.0 * (y - py) / max(1, height))
                camera.OrthogonalizeViewUp()
                view.renderer().ResetCameraClippingRange()
                last[0] = ((x0, y0), (x, y))
                view.schedule_render()

            interactor = view.interactor()
            interactor.AddObserver("LeftButtonPressEvent", pressed, 90.0)
            interactor.AddObserver("LeftButtonReleaseEvent", released, 90.0)
            interactor.AddObserver("MouseMoveEvent", moved, 90.0)

    def render_pointer_view(self, views) -> None:
        """Render the view under the mouse first while it moves there: hovering in place mode (Slicer's point
        preview follows the mouse, and every view showing the markups renders for each move: ≈ 15–40 ms a
        view on llvmpipe, three of them for nothing the user looks at, and a click right after a move waits
        for them) or dragging a point (each step re-fits the template; the other views rendering at 10
        frames/s each left the dragged one few re-fits a second). The other views' renders are held back
        meanwhile; they render once each every :data:`HOLD_PERIOD_S` while the mouse keeps moving, when it
        moves to another view, :data:`HOVER_SETTLE_S` after it stopped, when a button is released (after the
        view under the mouse: Slicer places the point and the template is fitted first), and on every other change
        (:meth:`release_views`: each status outside a drag, the app's ``changed``)."""
        pressed = [False]
        hovered: list = [None]
        since: list = [None]  # when the other views were last held back
        timer: list = [None]

        def moved(_interactor, _event, view):
            if (not self.controller.placing or pressed[0]) and not self._dragging():
                return  # view mode or another drag (window/level, 3-D rotation): every view as it asks
            if hovered[0] is not view:  # a new view: the others render once (the preview left them)
                self.release_views()
                hovered[0], since[0] = view, None
                return
            now = time.monotonic()
            if since[0] is not None and now - since[0] >= HOLD_PERIOD_S:
                self.release_views()  # they render once, held again from the next move
                since[0] = None
            elif since[0] is None:
                since[0] = now
                for other in views:
                    if other is not view and not other.is_render_blocked:
                        other.set_render_blocked(True)
            if timer[0] is not None:
                timer[0].cancel()
            try:
                timer[0] = asyncio.get_running_loop().call_later(HOVER_SETTLE_S, self.release_views)
            except RuntimeError:  # no event loop (scripts): never hold a render back
                self.release_views()

        def press(*_):
            pressed[0] = True

        def release(*_):
            pressed[0] = False
            since[0] = None
            try:  # after Slicer handled the release: the view clicked in (asked to render by the fit) renders first
                asyncio.get_running_loop().call_soon(self.release_views)
            except RuntimeError:
                self.release_views()

        self._held_views = list(views)
        for view in views:
            interactor = view.interactor()
            interactor.AddObserver("MouseMoveEvent", lambda i, e, view=view: moved(i, e, view), 100.0)
            for button in ("Left", "Middle", "Right"):
                interactor.AddObserver(f"{button}ButtonPressEvent", press, 100.0)
                interactor.AddObserver(f"{button}ButtonReleaseEvent", release, 100.0)  # before Slicer's widgets

    def after_frames(self, work) -> None:
        """Run ``work`` (a template's refinement) on the server's event loop once the slice views have
        delivered what changed, or after :data:`REFINE_WAIT_S` (the app's :attr:`AnnotationSession.later`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REFINE_WAIT_S

        def attempt() -> None:
            if loop.time() < deadline and not self.app.frames.slices_shown():
                loop.call_later(REFINE_POLL_S, attempt)
            else:  # pushed; they still go out through this event loop, before the work runs on it
                loop.call_later(REFINE_SEND_S, work)

        loop.call_later(REFINE_POLL_S, attempt)

    def release_views(self) -> None:
        """Let every view held back by :meth:`render_pointer_view` render again (once, at once)."""
        for view in self._held_views:
            if view.is_render_blocked:
                view.set_render_blocked(False)  # schedules its render

    def _dragging(self) -> bool:
        """Whether a point of the volume's objects is being dragged (Slicer's point interaction)."""
        session = self.controller.session
        return session is not None and any(o.dragging for o in session.objects)

    def _mark_drag(self, dragged: bool) -> None:
        if self.controller.session is not None:
            self.controller.session.drop_placements = dragged

    def open(self, volume_node) -> None:
        """Show a newly loaded volume's session (reopened from its autosave folder when there is one)."""
        self.close()
        self.controller.placing = bool(self.state.place_mode)  # the page's switch holds across volumes
        session = self.controller.open(volume_node)
        if not session.objects:
            self.controller.add_object()
        self.controller.set_placing(self.controller.placing)

    def close(self) -> None:
        """Stop the session and take its nodes out of the scene (its files stay in the autosave folder)."""
        self.controller.close(remove_nodes=True)

    def select_object(self, name: str | None) -> None:
        status = self.controller.status()
        if name and name != status.active and name in status.objects:
            self.controller.select(name)

    def set_place_mode(self, placing: bool) -> None:
        if self.controller.session is not None and bool(placing) != self.controller.placing:
            self.controller.set_placing(bool(placing))

    def _mirror(self, status) -> None:
        """Controller listener: mirror a status into the page and re-render (a new scene revision)."""
        session = self.controller.session
        active = session.active if session is not None else None
        for obj in session.objects if session is not None else ():
            display = obj.markups_node.GetDisplayNode()
            if display is not None and display.GetPointLabelsVisibility():
                display.SetPointLabelsVisibility(False)  # the list names the points; labels hide the views
        ras = lps_to_ras(active.points_lps) if active is not None and active.point_count else []
        with self.state:
            s = self.state
            s.objects = list(status.objects)
            s.active_object = status.active
            s.points = [{"i": i, "ras": [round(float(c), 2) for c in p]} for i, p in enumerate(ras)]
            if int(s.selected_point if s.selected_point is not None else -1) >= len(s.points):
                s.selected_point = len(s.points) - 1
            s.object_list = self._object_list(session)
            s.n_points = status.points
            s.total_points = status.total_points
            s.effort = status.clicks
            s.status = user_message(status.message, self.app.data_root.path)
            s.status_level = status.level
            s.can_undo, s.can_redo = status.can_undo, status.can_redo
            s.use_prior = status.prior > 0 or status.building_prior
            s.building_prior = status.building_prior
            if session is not None and s.place_mode != status.placing:
                s.place_mode = status.placing
            s.update_count = int(s.update_count or 0) + 1
            if not self._dragging():  # while dragging, the other views follow every HOLD_PERIOD_S
                self.release_views()
            self.app.changed(render=False)  # the changed nodes' views render themselves
        flush_soon(self.state)

    def _object_list(self, session) -> list[dict]:
        """Per object: name, colour (#rrggbb), points, visible, opacity — the page's object rows."""
        out = []
        for obj in session.objects if session is not None else ():
            visible, opacity = self.controller.shown(obj.name)
            out.append({"name": obj.name, "color": "#" + "".join(f"{round(255 * c):02x}" for c in obj.color),
                        "points": obj.point_count, "visible": visible, "opacity": round(opacity, 2)})
        return out

    def debug(self) -> dict:
        """Points (RAS mm) per object, for tests."""
        if self.controller.session is None:
            return {}
        return {name: pts.tolist() for name, pts in self.controller.points_ras().items()}
