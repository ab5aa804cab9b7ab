"""The annotation workflow both front ends drive: one controller, sessions per volume, one autosave layout.

:class:`AnnotationController` is what the desktop module's Logic and the browser's panel call for every
button: open a volume (resume its nodes from the scene, reopen its autosave folder, or start afresh), add
and select objects, place mode (kept in step with the scene's interaction node, so Esc or Slicer's toolbar
are seen), undo/redo, clear, delete a point, load/save points, the labelmap of all templates, a shape prior
from the earlier objects of the active object's name (:meth:`AnnotationController.use_prior`). After every
change it sends listeners one :class:`AnnotationStatus` with the counts a panel shows.

Autosave layout (:meth:`AnnotationController.session_folder`): ``<autosave root>/<volume stem>/`` with the
stem of the volume's file (else its node name) made safe; a folder that already holds another volume's
session is skipped (``<stem>_2``, ...), so two volumes never share a folder and a volume finds its own again.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import slicer
import vtk

from weaknet.errors import InputError
from weaknet.filenames import safe_stem, split_suffix

from . import nodes
from .session import (ATTR_OBJECT, REF_VOLUME, SESSION_FILE, VOLUME_FILE, AnnotationSession, TargetObject,
                      check_prior_allowed)

log = logging.getLogger(__name__)

MAX_PRIOR_OBJECTS = 20
"""A shape prior is built from at most this many earlier objects (the first found; building takes ≈ 1 s each)."""
SUGGESTIONS_NODE = "WeakNet: where next"
ATTR_SUGGESTIONS = "WeakNet.Suggestions"
"""Attribute of the markups node that shows the suggestions (:meth:`AnnotationController.show_suggestions`)."""
SUGGESTION_COLOR = (1.0, 0.0, 1.0)  # magenta: no object's colour (session.COLORS), visible on grey


@dataclass(frozen=True)
class AnnotationStatus:
    """What a panel shows after a change. ``points``: the active object's points; ``total_points``: over all
    objects of the volume; ``clicks``: the annotation effort (points placed, including removed ones)."""

    message: str
    level: str  # "info" | "warning" | "error"
    volume: str | None = None
    objects: tuple[str, ...] = ()
    active: str | None = None
    points: int = 0
    total_points: int = 0
    clicks: int = 0
    placing: bool = False
    can_undo: bool = False
    can_redo: bool = False
    folder: Path | None = None
    prior: int = 0  # the active object's shape prior: from this many earlier objects (0: none)
    building_prior: bool = False  # a shape prior is being built for the active object (see use_prior)

    @property
    def counts(self) -> str:
        """One line: "<active>: 12 points · 3 objects, 30 points, effort 31 clicks"."""
        if self.active is None:
            return "no object yet"
        return (f"{self.active}: {self.points} points · {len(self.objects)} object(s), {self.total_points} points, "
                f"effort {self.clicks} clicks")


IDLE = AnnotationStatus("open a volume, add an object, then click points on its surface", "info")


class AnnotationController:
    """Annotation sessions of the volumes of one scene, and the one the user works on (:attr:`session`).

    scene: the ``vtkMRMLScene``; autosave_root: where session folders go (None: no autosave);
    volumes_logic: to load a session's volume file when reopening without a volume node; fit_options: for
    :class:`weaknet.asm.ActiveSurface`. :attr:`placing`: whether clicks place points (it holds across volumes
    and objects; the scene's interaction node is followed). :attr:`drop_outside_clicks` and :attr:`later`:
    given to every session (:attr:`AnnotationSession.drop_outside_clicks`, :attr:`AnnotationSession.later`).
    """

    def __init__(self, scene, autosave_root: str | Path | None = None, volumes_logic=None,
                 fit_options: dict | None = None):
        self.scene = scene
        self.autosave_root = Path(autosave_root) if autosave_root else None
        self.volumes_logic = volumes_logic
        self.fit_options = fit_options
        self.sessions: dict[str, AnnotationSession] = {}
        self.session: AnnotationSession | None = None
        self.placing = False
        self.drop_outside_clicks = False  # see AnnotationSession.drop_outside_clicks
        self.later: Callable[[Callable[[], None]], None] | None = None  # see AnnotationSession.later
        self._listeners: list[Callable[[AnnotationStatus], None]] = []
        self._priors: dict[tuple, object] = {}  # (name, the earlier points' fingerprints) → ShapePrior built
        self._building: tuple | None = None  # (session, object, Future) of the prior being built, see use_prior
        self._suggested: tuple | None = None  # (object, its fitted points) the shown suggestions are for
        interaction = scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
        self._interaction_tag = None
        if interaction is not None:
            self._interaction_tag = interaction.AddObserver(
                slicer.vtkMRMLInteractionNode.InteractionModeChangedEvent, self._on_interaction_mode)

    # ------------------------------------------------------------------------------------------ volumes
    def session_folder(self, volume_node) -> Path | None:
        """The autosave folder of a volume (see the module docstring), or None without an autosave root."""
        if self.autosave_root is None:
            return None
        source = nodes.node_file(volume_node)
        stem = safe_stem(split_suffix(source.name)[0] if source else volume_node.GetName(), "volume")
        n = 1
        while True:
            folder = self.autosave_root / (stem if n == 1 else f"{stem}_{n}")
            if not (folder / SESSION_FILE).is_file() or _holds(folder, volume_node, source):
                return folder
            n += 1

    def open(self, volume_node) -> AnnotationSession:
        """Make ``volume_node``'s session the current one: the one already open, else resumed from the scene's
        WeakNet nodes (a saved scene), else reopened from its autosave folder, else a new one."""
        if volume_node is None or not self.scene.IsNodePresent(volume_node):
            raise InputError("pick a volume first")
        session = self.sessions.get(volume_node.GetID())
        if session is None or session.closed or session.volume_node is not volume_node:
            session = self._start(volume_node)
            session.drop_outside_clicks, session.later = self.drop_outside_clicks, self.later
            session.add_listener(self._on_session)
            self.sessions[volume_node.GetID()] = session
        self.session = session
        if self.placing and session.active is not None:
            session.start_placing(session.active, persistent=True)
        self._emit()
        return session

    def _start(self, volume_node) -> AnnotationSession:
        folder = self.session_folder(volume_node)
        in_scene = any(n.GetNodeReference(REF_VOLUME) is volume_node
                       for n in nodes.nodes_of_class(self.scene, "vtkMRMLSegmentationNode"))
        if not in_scene and folder is not None and (folder / SESSION_FILE).is_file():
            return AnnotationSession.reopen(self.scene, folder, volume_node=volume_node,
                                            fit_options=self.fit_options)
        return AnnotationSession.from_scene(self.scene, volume_node, autosave_dir=folder,
                                            fit_options=self.fit_options)

    def close(self, volume_node=None, remove_nodes: bool = False) -> None:
        """Stop a volume's session (default: the current one); with ``remove_nodes`` its points and template
        nodes leave the scene too (its files stay in the autosave folder)."""
        session = self.sessions.pop(volume_node.GetID(), None) if volume_node is not None else self.session
        if session is None:
            return
        self.sessions = {k: s for k, s in self.sessions.items() if s is not session}
        session.remove_listener(self._on_session)
        session.close()
        if remove_nodes:
            for node in [o.markups_node for o in session.objects] + [session.segmentation_node]:
                if node is not None and self.scene.IsNodePresent(node):
                    self.scene.RemoveNode(node)
        if session is self.session:
            self.session = None
        self._emit()

    def require(self) -> AnnotationSession:
        """The current session; InputError when no volume is open."""
        if self.session is None or self.session.closed:
            raise InputError("open a volume first")
        return self.session

    def active(self) -> TargetObject:
        """The current session's active object; InputError when there is none."""
        obj = self.require().active
        if obj is None:
            raise InputError("add an object first (Add object), then place points on its surface")
        return obj

    # ------------------------------------------------------------------------------------------ objects
    def add_object(self, name: str | None = None) -> TargetObject:
        """Add an object (default name: the first free "Object <n>") and make it active (placing if on)."""
        obj = self.require().add_object(name or None)
        self._follow_placing()
        self._emit()
        return obj

    def select(self, name: str) -> TargetObject:
        """Make the object called ``name`` the active one."""
        session = self.require()
        session.active = session.object(name)
        self._follow_placing()
        self._emit()
        return session.active

    def rename_object(self, name: str, new_name: str) -> TargetObject:
        """Rename an object (its segment and points node follow; its files keep their stem, so the autosave
        folder stays consistent). Raises InputError for an empty or taken name."""
        session = self.require()
        obj, new_name = session.object(name), str(new_name).strip()
        if not new_name:
            raise InputError("give the object a name")
        if new_name != name and any(o.name == new_name for o in session.objects):
            raise InputError(f"an object named '{new_name}' already exists on this volume; pick another name")
        obj.name = new_name
        obj.markups_node.SetAttribute(ATTR_OBJECT, new_name)
        obj.markups_node.SetName(f"{session.volume_node.GetName()} {new_name}")
        segment = session.segmentation_node.GetSegmentation().GetSegment(obj.segment_id)
        if segment is not None:
            segment.SetName(new_name)
        self._objects_changed(session)
        return obj

    def set_color(self, name: str, color: tuple[float, float, float]) -> None:
        """An object's colour (0–1 RGB): its template segment and its points; kept in the autosave."""
        session = self.require()
        obj = session.object(name)
        obj.color = tuple(float(min(1.0, max(0.0, c))) for c in color)
        segment = session.segmentation_node.GetSegmentation().GetSegment(obj.segment_id)
        if segment is not None:
            segment.SetColor(*obj.color)
        display = obj.markups_node.GetDisplayNode()
        if display is not None:
            display.SetSelectedColor(*obj.color)
        self._objects_changed(session)

    def set_shown(self, name: str, visible: bool | None = None, opacity: float | None = None) -> None:
        """Show or hide an object (template and points) and/or set its template's opacity (0–1)."""
        session = self.require()
        obj = session.object(name)
        display = session.segmentation_node.GetDisplayNode()
        points = obj.markups_node.GetDisplayNode()
        if visible is not None:
            if display is not None:
                display.SetSegmentVisibility(obj.segment_id, bool(visible))
            if points is not None:
                points.SetVisibility(bool(visible))
        if opacity is not None and display is not None:
            display.SetSegmentOpacity(obj.segment_id, float(min(1.0, max(0.0, opacity))))
        self._emit()

    def shown(self, name: str) -> tuple[bool, float]:
        """(visible, opacity) of an object's template."""
        session = self.require()
        display = session.segmentation_node.GetDisplayNode()
        sid = session.object(name).segment_id
        if display is None or session.segmentation_node.GetSegmentation().GetSegment(sid) is None:
            return True, 1.0  # no template yet
        return bool(display.GetSegmentVisibility(sid)), float(display.GetSegmentOpacity3D(sid))

    def remove_object(self, name: str) -> None:
        """Delete an object: its points and template leave the scene and the autosave (its undo entries go)."""
        session = self.require()
        session.remove_object(session.object(name))
        self._follow_placing()
        self._objects_changed(session)

    def _objects_changed(self, session: AnnotationSession) -> None:
        """Autosave after a change of the objects themselves (names, colours, deletions) and tell listeners."""
        if session.autosave_dir is not None:
            try:
                session.save()
            except (InputError, OSError) as exc:
                log.warning("WeakNet: autosave failed: %s", exc)
        self._emit()

    def find(self, markups_node) -> tuple[AnnotationSession, TargetObject] | None:
        """The session and object whose points ``markups_node`` holds, or None."""
        for session in self.sessions.values():
            for obj in session.objects:
                if obj.markups_node is markups_node:
                    return session, obj
        return None

    # ------------------------------------------------------------------------------------------- points
    def set_placing(self, placing: bool) -> None:
        """Persistent place mode for the active object's points (True), or back to view mode (False)."""
        if placing:
            self.require().start_placing(self.active(), persistent=True)
        elif self.session is not None:
            self.session.stop_placing()
        self.placing = bool(placing)
        self._emit()

    def undo(self) -> None:
        """Undo the last point edit of the current volume (points and the template shown with them)."""
        self.require().undo()
        self._follow_placing()

    def redo(self) -> None:
        """Redo the last undone point edit."""
        self.require().redo()
        self._follow_placing()

    def clear(self) -> None:
        """Remove all points of the active object (undoable)."""
        self.require().clear_points(self.active())

    def delete_point(self, index: int) -> None:
        """Delete point number ``index`` (0-based) of the active object (undoable)."""
        node = self.active().markups_node
        if not 0 <= int(index) < node.GetNumberOfControlPoints():
            raise InputError(f"no point #{int(index) + 1} on {self.active().name}")
        node.RemoveNthControlPoint(int(index))

    def refit(self) -> None:
        """Fit the active object's template from scratch through its points (the live fit warm-starts)."""
        self.require().refit(self.active(), full=True)

    def load_points(self, path: str | Path) -> int:
        """Replace the active object's points by a point file's (.mrk.json/.fcsv/.csv, LPS); one undoable
        edit, counted as that many clicks. Returns the number of points."""
        from weaknet.points import read_points

        session, obj = self.require(), self.active()
        points = read_points(path)
        obj.clicks += len(points)
        with session.batch():
            nodes.set_control_points_lps(obj.markups_node, points)
        return len(points)

    def save_points(self, path: str | Path) -> Path:
        """Write the active object's points: .mrk.json (Slicer's format), .fcsv (Slicer's older one) or .csv
        (``x,y,z``), all LPS."""
        from weaknet.points import write_points

        obj = self.active()
        if obj.point_count == 0:
            raise InputError(f"{obj.name} has no points to save")
        if str(path).lower().endswith(".mrk.json"):
            return nodes.write_node(obj.markups_node, path)
        return write_points(obj.points_lps, path)

    def save_segmentation(self, path: str | Path) -> Path:
        """Write the current volume's segmentation (every object's template, pending refinements settled) as
        Slicer's .seg.nrrd."""
        session = self.require()
        session.settle()
        return nodes.write_node(session.segmentation_node, path)

    def labelmap(self) -> tuple[np.ndarray, object]:
        """All templates of the current volume as one labelmap: uint8 (D, H, W), object i ↦ label i+1 (a
        later object wins where they overlap), and its Geometry: the grid of the volume's file when it has
        one (Slicer may store a file's voxels in another axis order, e.g. k flipped; an export on the file's
        own grid compares voxel-wise with the file's labels), else the volume node's."""
        from weaknet.resample import resample
        from weaknet.volume import Volume, read_geometry

        session = self.require()
        session.settle()
        labels = np.zeros(session.geometry.shape, np.uint8)
        for i, obj in enumerate(session.objects):
            if obj.mask is not None:
                labels[obj.mask > 0] = i + 1
        source = nodes.node_file(session.volume_node)
        if source is None:
            return labels, session.geometry
        on_file = resample(Volume(labels, session.geometry), read_geometry(source), "nearest")
        return on_file.array.astype(np.uint8), on_file.geometry

    def points_ras(self) -> dict[str, np.ndarray]:
        """Every object's points (N, 3) in RAS mm, by name (what the views show)."""
        from weaknet.coords import lps_to_ras

        session = self.require()
        return {o.name: lps_to_ras(o.points_lps) for o in session.objects}

    def suggestions(self, count: int = 3, probability=None) -> list[np.ndarray]:
        """Where to click next on the active object's template (:func:`weaknet.suggest.suggest_points`): up to
        ``count`` positions (3,) RAS mm, best first, for a front end to jump the views to. ``probability``: a
        model's foreground probability (:class:`weaknet.volume.Volume`) to compare with; without one, the
        places farthest from the points. InputError before the object has a template."""
        from weaknet.coords import lps_to_ras
        from weaknet.suggest import suggest_points

        obj = self.active()
        if obj.surface is None or obj.surface.vertices is None:
            raise InputError(f"{obj.name} has no template yet: place at least 4 points first")
        found = suggest_points(obj.surface.vertices, obj.surface.faces, obj.points_lps, probability, count)
        return [lps_to_ras(f.position[None])[0] for f in found]

    def show_suggestions(self, count: int = 3, probability=None) -> list[np.ndarray]:
        """:meth:`suggestions`, also shown in every view as numbered points of their own ("next 1", ...: a locked
        markups node "WeakNet: where next" in magenta, not saved with the scene) until the active object or its
        points change. Returns them (RAS mm), best first."""
        found = self.suggestions(count, probability)
        node = self._suggestion_node()
        node.RemoveAllControlPoints()
        for i, ras in enumerate(found):
            node.AddControlPoint(vtk.vtkVector3d(*(float(c) for c in ras)), f"next {i + 1}")
        obj = self.active()
        self._suggested = (obj, obj.fitted_points)
        return found

    def _suggestion_node(self):
        """The scene's markups node for the suggestions (made on first use)."""
        node = next((n for n in nodes.nodes_of_class(self.scene, "vtkMRMLMarkupsFiducialNode")
                     if n.GetAttribute(ATTR_SUGGESTIONS)), None)
        if node is None:
            node = self.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", SUGGESTIONS_NODE)
            node.SetAttribute(ATTR_SUGGESTIONS, "1")
            node.SetLocked(True)  # shown, never moved or picked
            node.SetSaveWithScene(False)
            node.CreateDefaultDisplayNodes()
            display = node.GetDisplayNode()
            display.SetSelectedColor(*SUGGESTION_COLOR)
            display.SetColor(*SUGGESTION_COLOR)
            display.SetGlyphTypeFromString("StarBurst2D")
        return node

    def _clear_stale_suggestions(self) -> None:
        """Take the shown suggestions away once the active object or its points changed."""
        if self._suggested is None:
            return
        obj, points = self._suggested
        active = self.session.active if self.session is not None and not self.session.closed else None
        if active is not obj or active.fitted_points is not points:
            self._suggested = None
            node = self._suggestion_node()
            if node.GetNumberOfControlPoints():
                node.RemoveAllControlPoints()

    # ---------------------------------------------------------------------------------- the shape prior
    def earlier_objects(self, name: str) -> list[tuple[str, np.ndarray]]:
        """The clicks of the other objects of the structure ``name`` (:func:`structure_of`: "Nucleus 3" and
        "nucleus" are one) on every volume — the active object left out: those open (the current volume's
        too, e.g. earlier nuclei of the same stack) and the sessions in the autosave root; only objects fitted
        through their points (not started from a model's proposal) with at least 4. Returns
        [("<volume> / <object>", points (N, 3) LPS)]."""
        from weaknet.points import read_points

        key = structure_of(name)
        active = self.session.active if self.session is not None else None
        found, folders = [], set()
        for session in self.sessions.values():
            if session.closed:
                continue
            if session.autosave_dir is not None:
                folders.add(session.autosave_dir.resolve())
            for obj in session.objects:
                if obj is not active and structure_of(obj.name) == key and obj.proposal is None \
                        and obj.point_count >= 4:
                    found.append((f"{session.volume_node.GetName()} / {obj.name}", obj.points_lps))
        if self.autosave_root is not None and self.autosave_root.is_dir():
            for meta_path in sorted(self.autosave_root.glob(f"*/{SESSION_FILE}")):
                if meta_path.parent.resolve() in folders:
                    continue
                try:
                    meta = json.loads(meta_path.read_text(encoding="utf-8"))
                    for entry in meta.get("objects", []):
                        if structure_of(str(entry["name"])) != key or entry.get("proposal"):
                            continue
                        points = read_points(meta_path.parent / entry["points"])
                        if len(points) >= 4:
                            found.append((f"{meta.get('volume', meta_path.parent.name)} / {entry['name']}", points))
                except (OSError, ValueError, KeyError, TypeError, InputError) as exc:
                    log.warning("WeakNet: %s skipped for the shape prior (%s)", meta_path.parent, exc)
        return found

    def use_prior(self, on: bool = True) -> TargetObject:
        """Fit the active object with a shape prior (:class:`weaknet.shape_prior.ShapePrior`) learned from the
        earlier objects of its structure (:meth:`earlier_objects`; each the fit of its points), or
        without one (``on`` False). The prior is built once per set of earlier objects and re-used. From 4
        earlier objects on, building also chooses how closely the template keeps the prior's shape, by leaving
        each earlier object out (5–30 s at 2,562 vertices): with :attr:`later` set (a front end) that runs on a
        worker thread (the status says so, ``building_prior``) and the prior is applied through ``later``
        once built, if the object still exists. One undoable edit. InputError with fewer than 3 earlier
        objects, for an object started from a model's proposal, or while a prior is being built."""
        from weaknet.shape_prior import MIN_MESHES, prior_from_point_sets

        session, obj = self.require(), self.active()
        if self._building is not None:
            raise InputError(f"a shape prior of '{self._building[1].name}' is being built; wait until it is done")
        prior = None
        if on:
            check_prior_allowed(obj)
            earlier = self.earlier_objects(obj.name)
            if len(earlier) < MIN_MESHES:
                where = f": {', '.join(n for n, _ in earlier)}" if earlier else ""
                raise InputError(f"a shape prior of '{obj.name}' needs at least {MIN_MESHES} earlier objects of "
                                 f"that name (a trailing number aside) with 4 or more points; found "
                                 f"{len(earlier)}{where}. Annotate more objects named '{obj.name}' first, on this "
                                 "or other volumes")
            earlier = earlier[:MAX_PRIOR_OBJECTS]
            key = (structure_of(obj.name), tuple(np.round(p, 3).tobytes() for _, p in earlier))
            prior = self._priors.get(key)
            if prior is None:
                build = functools.partial(prior_from_point_sets, [p for _, p in earlier], obj.name,
                                          [n for n, _ in earlier], **(self.fit_options or {}))
                if self.later is None or len(earlier) <= MIN_MESHES:  # nothing to tune: a second at most
                    prior = self._priors[key] = build()
                else:
                    future = _prior_builder().submit(build)
                    self._building = (session, obj, future)
                    session.report(f"{obj.name}: building a shape prior from {len(earlier)} earlier objects "
                                   "(its fit is tuned on them; up to half a minute)…")
                    self.later(lambda: self._prior_built(key))
                    return obj
        session.set_prior(obj, prior)
        self._emit()
        return obj

    def _prior_built(self, key: tuple) -> None:
        """Through :attr:`later`: once the prior being built is done, cache it and give it to its object."""
        session, obj, future = self._building
        if not future.done():
            self.later(lambda: self._prior_built(key))
            return
        self._building = None
        try:
            prior = self._priors[key] = future.result()
        except InputError as exc:
            session.report(f"{obj.name}: no shape prior: {exc}", "error")
        except Exception as exc:  # noqa: BLE001 - called from a GUI timer: report, never raise
            log.exception("WeakNet: building the shape prior of %s failed", obj.name)
            session.report(f"{obj.name}: building the shape prior failed ({exc}); your points are kept", "error")
        else:
            if not session.closed and obj in session.objects:
                active = session.active
                session.set_prior(obj, prior)
                session.active = active  # the user may have gone on with another object meanwhile
        self._emit()

    # -------------------------------------------------------------------------------------- the model
    def start_from_prediction(self, predicted, name: str | None = None, segment_id: str | None = None,
                              note: str = "") -> TargetObject:
        """Start an object from a model's prediction on the current volume: its template becomes the model's
        proposal (:class:`weaknet.proposal.Proposal`: an Active Surface through the predicted surface), and
        the points clicked on it from then on correct it locally (undoable, autosaved with the object).

        ``predicted``: a mask (:class:`weaknet.volume.Volume`, uint8 (D, H, W), 1 = object, any grid) or a
        segmentation node (the one Apply model made; ``segment_id``: which segment, needed only when it holds
        several) — its largest component is used. The object is the active one while it has no points and no
        template yet (a freshly added object), else a new one (``name``, default "Object <n>"). ``note``: shown
        as a warning with the status. Returns the object; InputError for an empty prediction."""
        return self._propose(self.require(), predicted, name, segment_id, note)

    def start_from_model(self, model_dir: str | Path | None, gamma: float | None = None, device: str | None = None,
                         modality: str | None = None, name: str | None = None):
        """Run a trained model on the current volume out of process (``weaknet predict``, as Apply model does)
        and start an object from its prediction (:meth:`start_from_prediction`) once it is done. Returns the
        :class:`~WeakNetSlicerLib.process.ProcessRun` at once: poll it from a GUI timer; once "done", its
        ``output`` is the object; an empty prediction ends it "failed" with the reason as ``error``.
        ``gamma`` None: the model's threshold; ``device`` None: TrainConfig's; ``modality``: the volume's, to warn
        when the model was trained on another. InputError (before anything starts) without a model folder or
        for a folder without a model."""
        from weaknet.config import TrainConfig

        from .process import predict_node_process
        from .training import model_warnings

        session = self.require()
        if not model_dir or not str(model_dir).strip():
            raise InputError("no model to start from: train one (Train) or choose a trained model's folder first")
        warnings = model_warnings(model_dir, session.volume_node, modality)  # refuses a folder without a model
        return predict_node_process(model_dir, session.volume_node,
                                    lambda mask: self._propose(session, mask, name, None, "; ".join(warnings)),
                                    gamma, device or TrainConfig().device)

    def _propose(self, session: AnnotationSession, predicted, name: str | None, segment_id: str | None,
                 note: str) -> TargetObject:
        from weaknet.proposal import Proposal
        from weaknet.volume import Volume

        if session.closed:
            raise InputError("the volume was closed before the model's prediction arrived; open it and try again")
        if not isinstance(predicted, Volume):
            predicted = Volume(nodes.segment_mask(predicted, _only_segment(predicted, segment_id),
                                                  session.volume_node), session.geometry)
        proposal = Proposal(predicted, **(self.fit_options or {}))
        obj = session.active
        if obj is None or obj.point_count or obj.surface is not None or obj.loaded is not None:
            obj = session.add_object(name or None)
        session.set_proposal(obj, proposal, note)
        if session is self.session:
            self._follow_placing()
        self._emit()
        return obj

    # ----------------------------------------------------------------------------------------- status
    def status(self) -> AnnotationStatus:
        """The counts and message for the current session (:data:`IDLE` when none)."""
        s = self.session
        if s is None:
            return IDLE
        active = s.active
        return AnnotationStatus(
            message=s.status, level=s.status_level, volume=s.volume_node.GetName() if not s.closed else None,
            objects=tuple(o.name for o in s.objects), active=active.name if active else None,
            points=active.point_count if active else 0, total_points=s.point_count, clicks=s.effort,
            placing=self.placing, can_undo=s.can_undo, can_redo=s.can_redo, folder=s.autosave_dir,
            prior=active.prior.meshes if active is not None and active.prior is not None else 0,
            building_prior=self._building is not None and self._building[1] is active)

    def add_listener(self, callback: Callable[[AnnotationStatus], None]) -> None:
        """Call ``callback(status)`` after every change of the current session or of the place mode."""
        self._listeners.append(callback)

    def flush(self) -> None:
        """Put every session's templates on disk now (the autosave writes them up to a second after a click):
        call before the process ends."""
        for session in self.sessions.values():
            session.flush()

    def shutdown(self) -> None:
        """Close every session (their templates reach the disk) and stop observing the scene."""
        for session in list(self.sessions.values()):
            session.remove_listener(self._on_session)
            session.close()
        self.sessions.clear()
        self.session = None
        interaction = self.scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
        if interaction is not None and self._interaction_tag is not None:
            interaction.RemoveObserver(self._interaction_tag)
        self._interaction_tag = None

    # -------------------------------------------------------------------------------------- internals
    def _follow_placing(self) -> None:
        """In place mode, new clicks go to the (new) active object."""
        session = self.session
        if self.placing and session is not None and session.active is not None:
            session.start_placing(session.active, persistent=True)

    def _on_interaction_mode(self, caller, event) -> None:
        placing = caller.GetCurrentInteractionMode() == slicer.vtkMRMLInteractionNode.Place
        if placing != self.placing:  # Esc, Slicer's toolbar, another module
            self.placing = placing
            self._emit()

    def _on_session(self, session) -> None:
        if session is self.session:
            self._emit()

    def _emit(self) -> None:
        self._clear_stale_suggestions()
        status = self.status()
        for callback in list(self._listeners):
            try:
                callback(status)
            except Exception:  # noqa: BLE001 - a broken panel must not break annotation
                log.exception("WeakNet: an annotation listener failed")


def structure_of(name: str) -> str:
    """The structure an object's name stands for: case, surrounding spaces and a trailing number ignored
    ("Nucleus 3", "nucleus_12" and " NUCLEUS" are one; a name that is only a number stays itself)."""
    bare = str(name).strip()
    return (re.sub(r"[\s_\-]*\d+$", "", bare) or bare).casefold()


@functools.lru_cache(maxsize=1)
def _prior_builder() -> ThreadPoolExecutor:
    """The one worker thread that builds shape priors (:meth:`AnnotationController.use_prior`)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="weaknet-prior")


def _only_segment(segmentation_node, segment_id: str | None) -> str:
    """``segment_id``, else the one segment of ``segmentation_node``; InputError when it is missing or when
    there is none or several to choose from."""
    ids = list(segmentation_node.GetSegmentation().GetSegmentIDs())
    if segment_id is not None:
        if segment_id not in ids:
            raise InputError(f"no segment '{segment_id}' in '{segmentation_node.GetName()}'")
        return segment_id
    if len(ids) != 1:
        raise InputError(f"'{segmentation_node.GetName()}' holds {len(ids)} segments: choose the model's one")
    return ids[0]


def _holds(folder: Path, volume_node, source: Path | None) -> bool:
    """Whether ``folder``'s session.json belongs to this volume: the same file, or (a volume without a file)
    the same name with its voxels saved in the folder."""
    try:
        meta = json.loads((folder / SESSION_FILE).read_text(encoding="utf-8"))
        saved = (folder / meta["volume_file"]).resolve()
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if source is not None:
        return saved == source
    return meta.get("volume") == volume_node.GetName() and saved == (folder / VOLUME_FILE).resolve()
