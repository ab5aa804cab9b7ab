"""The page's side of the annotation: WeakNetSlicerLib's :class:`AnnotationSession` ⇄ trame state.

The session (the same one the desktop Slicer module uses) observes one markups node per object, re-fits the
template on every point change and autosaves; this module only starts/reopens it per volume, forwards the
buttons to it and mirrors its status, points and counts into the page.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from weaknet.coords import lps_to_ras
from weaknet.errors import InputError

ANNOTATIONS = "annotations"


def annotation_folder(data_root, volume_relative: str) -> Path:
    """The autosave folder of a volume: ``<data root>/annotations/<volume path without its suffix>/``."""
    stem = volume_relative
    for suffix in (".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd", ".tiff", ".tif"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return data_root.resolve(f"{ANNOTATIONS}/{stem}")


def flush_soon(state) -> None:
    """Push pending state on the next turn of the event loop as well: a session update that happens while
    trame is flushing (e.g. inside a state-change listener) is otherwise held back until the next message."""
    try:
        asyncio.get_running_loop().call_soon(state.flush)
    except RuntimeError:  # no event loop (scripts, tests without a server): nothing is waiting for the state
        pass


class AnnotationPanel:
    """Owns the session of the open volume and keeps the page's annotation state up to date.

    State it writes: ``objects`` (names), ``active_object``, ``points`` (list of {i, ras}), ``n_points``,
    ``effort``, ``status``, ``status_level``, ``place_mode`` and ``update_count`` (session updates mirrored
    so far: fits, warnings, object changes; tests wait on it).
    """

    def __init__(self, app):
        self.app = app
        self.state = app.state
        self.session = None
        self._observed: set[str] = set()
        # undo: per object, the point sets (N, 3) LPS before each change, and the last one seen
        self._history: dict[str, list[np.ndarray]] = {}
        self._last: dict[str, np.ndarray] = {}
        self._restoring = False
        s = self.state
        s.objects = []
        s.active_object = None
        s.points = []
        s.n_points = 0
        s.effort = 0
        s.status = "open a volume, then click points on the object's surface"
        s.status_level = "info"
        s.update_count = 0
        s.place_mode = True

    # ------------------------------------------------------------------------------------ lifecycle
    def open(self, volume_node, volume_relative: str) -> None:
        """Start (or reopen from its autosave folder) the session of a newly shown volume."""
        from WeakNetSlicerLib.session import SESSION_FILE, AnnotationSession

        self.close()
        folder = annotation_folder(self.app.data_root, volume_relative)
        scene = self.app.slicer.scene
        if (folder / SESSION_FILE).is_file():
            self.session = AnnotationSession.reopen(scene, folder, volume_node=volume_node)
        else:
            self.session = AnnotationSession(scene, volume_node, autosave_dir=folder)
        self.session.add_listener(self._on_session)
        if not self.session.objects:
            self.session.add_object()
        self._apply_mode()
        self._on_session(self.session)

    def close(self) -> None:
        """Stop the session and take its nodes out of the scene (its files stay in the autosave folder)."""
        session, self.session = self.session, None
        self._history.clear()
        self._last.clear()
        if session is None:
            return
        session.close()
        scene = self.app.slicer.scene
        for node in [o.markups_node for o in session.objects] + [session.segmentation_node]:
            if node is not None and scene.IsNodePresent(node):
                scene.RemoveNode(node)

    def require(self):
        if self.session is None:
            raise InputError("open a volume first (data root, upload or Sample phantom)")
        return self.session

    # --------------------------------------------------------------------------------------- actions
    def add_object(self) -> None:
        session = self.require()
        session.add_object()
        self._apply_mode()
        self._on_session(session)

    def select_object(self, name: str | None) -> None:
        if self.session is None or not name or (self.session.active and self.session.active.name == name):
            return
        self.session.active = self.session.object(name)
        self._apply_mode()
        self._on_session(self.session)

    def set_place_mode(self, placing: bool) -> None:
        self._apply_mode(placing)

    def undo(self) -> None:
        """Undo the active object's last change of points (a click, a drag, a deletion, a clear, a load)."""
        from WeakNetSlicerLib import nodes

        session = self.require()
        obj = session.active
        history = self._history.get(obj.name)
        if not history:
            raise InputError(f"nothing to undo on {obj.name}")
        previous = history.pop()
        self._restoring = True
        try:
            with session.batch():  # one from-scratch fit of the restored points
                nodes.set_control_points_lps(obj.markups_node, previous)
        finally:
            self._restoring = False
        self._last[obj.name] = obj.points_lps  # as the node holds them (read back)
        self._on_session(session)

    def refit(self) -> None:
        """Fit the active object's template from scratch through all its points (the live fit warm-starts)."""
        session = self.require()
        session.refit(session.active, full=True)

    def clear(self) -> None:
        self.require().clear_points()

    def delete_point(self, index: int) -> None:
        """Delete the active object's point number ``index`` (0-based); the template re-fits."""
        session = self.require()
        node = session.active.markups_node
        if not 0 <= int(index) < node.GetNumberOfControlPoints():
            raise InputError(f"no point #{int(index) + 1} on {session.active.name}")
        node.RemoveNthControlPoint(int(index))

    def load_points(self, path: Path) -> None:
        """Replace the active object's points by those of a point file (.mrk.json/.fcsv/.csv, LPS)."""
        from weaknet.points import read_points
        from WeakNetSlicerLib import nodes

        session = self.require()
        points = read_points(path)
        with session.batch():
            nodes.set_control_points_lps(session.active.markups_node, points)
        session.active.clicks += len(points)
        self._on_session(session)

    def save_points(self, path: Path) -> None:
        """Write the active object's points (.mrk.json, LPS, Slicer's format)."""
        from WeakNetSlicerLib import nodes

        session = self.require()
        if session.active.point_count == 0:
            raise InputError(f"{session.active.name} has no points to save")
        nodes.write_node(session.active.markups_node, path)

    def labelmap(self) -> tuple[np.ndarray, object]:
        """All templates as one labelmap: uint8 (D, H, W), object i ↦ label i+1; and the volume's Geometry."""
        session = self.require()
        labels = np.zeros(session.geometry.shape, np.uint8)
        for i, obj in enumerate(session.objects):
            if obj.mask is not None:
                labels[obj.mask > 0] = i + 1
        return labels, session.geometry

    # ------------------------------------------------------------------------------------- internals
    def _apply_mode(self, placing: bool | None = None) -> None:
        placing = self.state.place_mode if placing is None else placing
        if self.session is None or self.session.active is None:
            return
        if placing:
            self.session.start_placing(self.session.active, persistent=True)
        else:
            self.app.slicer.markups_logic.disable_place_mode()

    def _on_session(self, session) -> None:
        """Session listener: mirror it into the page and re-render (a new scene revision)."""
        if session is not self.session:
            return
        active = session.active
        for obj in session.objects:
            display = obj.markups_node.GetDisplayNode()
            if display is not None and display.GetPointLabelsVisibility():
                display.SetPointLabelsVisibility(False)
            self._observe_clicks(obj.markups_node)
            self._record(obj)
        with self.state:
            s = self.state
            s.objects = [o.name for o in session.objects]
            s.active_object = active.name if active else None
            ras = lps_to_ras(active.points_lps) if active is not None and active.point_count else np.zeros((0, 3))
            s.points = [{"i": i, "ras": [round(float(c), 2) for c in p]} for i, p in enumerate(ras)]
            s.n_points = session.point_count
            s.effort = session.effort
            s.status = session.status
            s.status_level = session.status_level
            s.update_count = int(s.update_count or 0) + 1
            self.app.changed()
        flush_soon(self.state)

    def _record(self, obj) -> None:
        """Undo history: when ``obj``'s points differ from the last set seen, keep that set (not while a
        point is being dragged: a drag is one change, recorded when it ends)."""
        if self._restoring or obj.dragging:
            return
        current = obj.points_lps
        last = self._last.get(obj.name)
        if last is not None and last.shape == current.shape and np.allclose(last, current, rtol=0, atol=1e-6):
            return
        if last is not None:
            self._history.setdefault(obj.name, []).append(last)
        self._last[obj.name] = current

    def _observe_clicks(self, markups_node) -> None:
        """Refresh the page when a click is counted (the session counts a placed point when Slicer reports
        its position defined, which can come after the re-fit and its status) and when a drag ends."""
        import slicer

        if markups_node.GetID() in self._observed:
            return
        self._observed.add(markups_node.GetID())
        refresh = lambda *_: self.session is not None and self._on_session(self.session)  # noqa: E731
        for event in ("PointPositionDefinedEvent", "PointEndInteractionEvent"):
            markups_node.AddObserver(getattr(slicer.vtkMRMLMarkupsNode, event), refresh)

    def debug(self) -> dict:
        """Points (RAS mm) per object, for tests."""
        if self.session is None:
            return {}
        return {o.name: lps_to_ras(o.points_lps).tolist() if o.point_count else [] for o in self.session.objects}

