"""The annotation session: clicked points on a Slicer scene → live Active Surface templates as segments.

One :class:`AnnotationSession` per volume node; several target objects per volume (one markups fiducial
node + one segment of the session's segmentation node each); several sessions (volumes) per scene. Every
point added, moved or removed re-fits that object's template incrementally (``ActiveSurface.update``) and
replaces its segment: the binary labelmap (slice views) rasterised on the volume's own grid (its IJK→RAS:
oblique, anisotropic) and the fitted mesh as the closed surface (3D views). Only what changed is touched: the
template's bounding box (:class:`weaknet.rasterize.MaskRasterizer`; the segment's labelmap holds just that
box), no copy of the whole grid.

Bad input never raises out of a scene observer and never drops a point: fewer than 4 points, points
outside the volume, coplanar points... set :attr:`AnnotationSession.status` (and notify listeners) and
keep every point where the user put it — except, with :attr:`AnnotationSession.drop_outside_clicks` (the
browser annotator), a click placed outside the image, which is taken back at once with a warning. With an
autosave folder the clicks (``.mrk.json``, small) are written at once on every change, and the templates
(``templates.seg.nrrd``) off the interactive path by :class:`~WeakNetSlicerLib.autosave.TemplateWriter`: at most
once a second, at the end of a drag and on :meth:`AnnotationSession.flush`/``close``. :meth:`AnnotationSession.reopen`
restores both, and re-fits an object whose saved template is older than its points (each segment carries a
fingerprint of the points it was fitted through).

Every change of an object's points (a click, a drag, a deletion, a clear, a batch) is one entry of the
session's undo stack (:class:`EditHistory`); undo and redo put back the points *and* the template that was
shown with them (the warm-started mesh, not a fresh fit). Object names become file stems and segment ids
through :func:`weaknet.filenames.unique_stem`, so no two objects share a file.

An object started from a model's prediction (:meth:`AnnotationSession.set_proposal`) has a
:class:`weaknet.proposal.Proposal` as its template: its points, any number of them, correct it locally
instead of being fitted alone; the proposal is part of each undo entry and is saved as ``<stem>.proposal.npz``.
An object fitted with a shape prior (:meth:`AnnotationSession.set_prior`, a :class:`weaknet.shape_prior.ShapePrior`
learned from earlier objects of its name) starts every fit from the prior's shape; the prior too is part of each
undo entry and is saved as ``<stem>.prior.npz``.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import weakref
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import slicer
import vtk

from weaknet.errors import InputError, WeakNetError
from weaknet.filenames import unique_stem
from weaknet.points import check_inside, validate_points

from . import nodes
from .autosave import POINTS_TAG, SegmentBlock, TemplateWriter, points_fingerprint, write_seg_nrrd

log = logging.getLogger(__name__)

REF_VOLUME = "weaknetVolume"
"""Node reference role from a session's markups and segmentation nodes to their volume (saved in .mrml and
remapped by Slicer when a scene is imported)."""
ATTR_OBJECT = "WeakNet.Object"
ATTR_STEM = "WeakNet.Stem"
ATTR_CLICKS = "WeakNet.Clicks"
ATTR_PROPOSAL = "WeakNet.Proposal"
"""Markups node attribute: the file of the object's proposal (saved with a scene, read by ``from_scene``)."""
ATTR_PRIOR = "WeakNet.Prior"
"""Markups node attribute: the file of the object's shape prior (as ``ATTR_PROPOSAL``)."""
POINTS_SUFFIX = ".mrk.json"
PROPOSAL_SUFFIX = ".proposal.npz"
PRIOR_SUFFIX = ".prior.npz"
SEGMENT_PREFIX = "weaknet_"
UNDO_LEVELS = 100
SESSION_FILE = "session.json"
TEMPLATES_FILE = "templates.seg.nrrd"
VOLUME_FILE = "volume.nrrd"
"""Written into the session folder for a volume that has no file of its own."""
COLORS = ((0.95, 0.35, 0.25), (0.25, 0.7, 0.95), (0.45, 0.85, 0.35), (0.95, 0.8, 0.25), (0.75, 0.45, 0.95))
_POINT_EVENTS = ("PointAddedEvent", "PointModifiedEvent", "PointRemovedEvent", "PointPositionDefinedEvent",
                 "PointPositionUndefinedEvent")


@dataclass
class TargetObject:
    """One structure being annotated: its points (a markups fiducial node) and its template (a segment).

    ``stem`` names its files and segment (unique in the session, see :func:`weaknet.filenames.unique_stem`);
    ``mask`` is the current template (D, H, W) uint8 on the volume's grid, or None before the first fit (made
    when first read, then kept up to date in place, box by box); ``loaded`` a template read from a file, until
    the next fit; ``block`` the voxels of its bounding box from voxel ``offset`` (k, j, i):
    what the segment holds (never changed once made: the autosave writes it from another thread);
    ``template_points`` (N, 3) LPS the points the shown template was fitted through; ``clicks`` counts points
    placed by the user (the annotation effort), including ones later removed; ``proposal`` a model's
    :class:`weaknet.proposal.Proposal` the points correct (None: the template is fitted through the points
    alone); ``prior`` a :class:`weaknet.shape_prior.ShapePrior` every fit of its points starts from (None: the
    ASM's own rest shapes).
    """

    name: str
    stem: str
    markups_node: "slicer.vtkMRMLMarkupsFiducialNode"
    color: tuple[float, float, float]
    clicks: int = 0
    surface: object | None = None
    loaded: np.ndarray | None = None
    block: np.ndarray | None = None
    offset: tuple[int, int, int] = (0, 0, 0)
    rasterizer: object | None = None
    template_points: np.ndarray | None = None
    fitted_points: np.ndarray | None = None
    tags: list[int] = field(default_factory=list)
    dragging: bool = False
    drag_recorded: bool = False
    proposal: object | None = None
    prior: object | None = None
    refining: Future | None = None  # the refinement of its template running on a worker thread
    refine_stop: threading.Event | None = None  # set to abandon that refinement (a newer click)

    @property
    def segment_id(self) -> str:
        return SEGMENT_PREFIX + self.stem

    @property
    def points_file(self) -> str:
        return self.stem + POINTS_SUFFIX

    @property
    def proposal_file(self) -> str:
        return self.stem + PROPOSAL_SUFFIX

    @property
    def prior_file(self) -> str:
        return self.stem + PRIOR_SUFFIX

    @property
    def mask(self) -> np.ndarray | None:
        """The current template (D, H, W) uint8 on the volume's grid, or None: the live rasterizer's (made on
        first read, then kept in step box by box), else the template ``loaded`` from a file."""
        return self.rasterizer.mask if self.rasterizer is not None else self.loaded

    @property
    def points_lps(self) -> np.ndarray:
        """The defined control points (N, 3), LPS mm."""
        return nodes.control_points_lps(self.markups_node)

    @property
    def point_count(self) -> int:
        return len(self.points_lps)


@dataclass
class Edit:
    """One change of an object's points (or of its proposal or prior): the points (N, 3) LPS, the fitted
    ActiveSurface (a private copy, or None), the proposal and the prior *before* it, so undo puts back exactly
    what was shown."""

    obj: TargetObject
    points: np.ndarray
    surface: object | None
    proposal: object | None = None
    prior: object | None = None


class EditHistory:
    """The session's undo and redo stacks of point edits (all objects, in the order made; at most
    :data:`UNDO_LEVELS` kept). A new edit clears the redo stack."""

    def __init__(self, levels: int = UNDO_LEVELS):
        self.levels = levels
        self.undo: list[Edit] = []
        self.redo: list[Edit] = []

    def record(self, edit: Edit) -> None:
        self.undo = (self.undo + [edit])[-self.levels:]
        self.redo.clear()

    def forget(self, obj: TargetObject) -> None:
        """Drop the entries of an object that is no longer annotated."""
        self.undo = [e for e in self.undo if e.obj is not obj]
        self.redo = [e for e in self.redo if e.obj is not obj]


def snapshot(surface):
    """A private copy of an ActiveSurface's state (its arrays copied; the shared factorisations are not), or
    None. ``ActiveSurface.update`` changes its arrays in place, hence the copies."""
    if surface is None:
        return None
    copied = copy.copy(surface)
    for key, value in vars(surface).items():
        if isinstance(value, np.ndarray):
            setattr(copied, key, value.copy())
    return copied


class AnnotationSession:
    """Live template annotation of one volume node on any Slicer scene (desktop, trame-slicer, headless).

    scene: the ``vtkMRMLScene``; volume_node: a scalar volume node in it; segmentation_node: where the
    templates go (created, named "<volume> templates", when None); autosave_dir: folder for the clicks and
    templates (None: no autosave); fit_options: keyword arguments of ``weaknet.asm.ActiveSurface``.
    """

    def __init__(self, scene, volume_node, segmentation_node=None, autosave_dir: str | Path | None = None,
                 fit_options: dict | None = None):
        if volume_node is None or not scene.IsNodePresent(volume_node):
            raise InputError("pick a volume first: the session needs a volume node in the scene")
        self.scene = scene
        self.volume_node = volume_node
        self.geometry = nodes.volume_geometry(volume_node)
        self.fit_options = dict(fit_options or {})
        self.autosave_dir = Path(autosave_dir) if autosave_dir else None
        self.objects: list[TargetObject] = []
        self.active: TargetObject | None = None
        self.status = "add an object and place points on its surface"
        self.status_level = "info"
        self.closed = False
        self._listeners: list[Callable[["AnnotationSession"], None]] = []
        self.autosave_error: str | None = None
        self._writer = TemplateWriter(on_error=_weak(self._on_write_error))
        self._session_text: str | None = None  # session.json as last written to the autosave folder
        self._attachments_written: dict[tuple[str, str], object] = {}  # (kind, stem) → what its autosaved file holds
        self.history = EditHistory()
        self._batch = 0
        self._session_dirty: bool | None = False  # None/True while a point event collects session.json writes
        self.drop_outside_clicks = False
        """Take back a newly placed point that lies outside the image (a click in a view's margin) at once."""
        self.drop_placements = False
        """Take back any newly placed point while set (a front end sets it for a drag that Slicer's place mode
        would end with a point, e.g. rotating the 3D view)."""
        self._dropped_placement = False
        self.later: Callable[[Callable[[], None]], None] | None = None
        """How a front end runs work after it has shown a click (e.g. a GUI timer): given, a point event
        answers with the quick follow of ``ActiveSurface.update(defer=True)`` (≈ 5 ms) and the fit of the points
        (``ActiveSurface.refine``, 0.1–0.3 s on a worker thread) runs through it, so that the template once the
        clicks pause is the fit of its points; None: the quick answer only (with the rest shape re-decided)."""
        self.segmentation_node = segmentation_node or self._new_segmentation_node()
        self._tag_segmentation()
        threading.Thread(target=_prepare_fits, args=(self.fit_options,), name="weaknet-asm-setup",
                         daemon=True).start()
        self._scene_tags = [scene.AddObserver(slicer.vtkMRMLScene.NodeAboutToBeRemovedEvent,
                                              _weak(self._on_node_removed)),
                            scene.AddObserver(slicer.vtkMRMLScene.StartCloseEvent, _weak(self._on_scene_close))]
        if self.autosave_dir:
            self._autosave(self._write_session_file)

    # ----------------------------------------------------------------------------------------- objects
    def add_object(self, name: str | None = None, markups_node=None,
                   color: tuple[float, float, float] | None = None, stem: str | None = None) -> TargetObject:
        """Add a target object (a new markups node unless one is given) and make it the active one.

        An existing node's points are fitted at once. ``stem`` (files, segment id) is made unique from the
        name unless given (a reopened object keeps its own). Raises :class:`InputError` for a duplicate name.
        """
        self._require_open()
        name = name or self.next_object_name()
        if any(o.name == name for o in self.objects):
            raise InputError(f"an object named '{name}' already exists on this volume; pick another name")
        color = color or COLORS[len(self.objects) % len(COLORS)]
        if markups_node is None:
            markups_node = self.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode",
                                                        f"{self.volume_node.GetName()} {name}")
            markups_node.CreateDefaultDisplayNodes()
        display = markups_node.GetDisplayNode()
        if display is not None:  # the points in the object's colour, also for a reopened points file
            display.SetSelectedColor(*color)
        markups_node.SetNodeReferenceID(REF_VOLUME, self.volume_node.GetID())
        stem = stem or unique_stem(name, [o.stem for o in self.objects])
        markups_node.SetAttribute(ATTR_OBJECT, name)
        markups_node.SetAttribute(ATTR_STEM, stem)
        obj = TargetObject(name=name, stem=stem, markups_node=markups_node, color=color)
        for event in _POINT_EVENTS:  # (VTK passes custom events' names as 'NoEvent': bind them here)
            obj.tags.append(markups_node.AddObserver(getattr(slicer.vtkMRMLMarkupsNode, event),
                                                     _weak(self._on_points, obj, event)))
        for event, dragging in (("PointStartInteractionEvent", True), ("PointEndInteractionEvent", False)):
            obj.tags.append(markups_node.AddObserver(getattr(slicer.vtkMRMLMarkupsNode, event),
                                                     _weak(self._on_drag, obj, dragging)))
        self.objects.append(obj)
        self.active = obj
        if obj.points_lps.size and not self._batch:
            self.refit(obj, full=True)
        else:
            self._set_status(f"{name}: place at least 4 points on its surface", "info")
        if self.autosave_dir:
            self._autosave(self._write_session_file)
        return obj

    def next_object_name(self) -> str:
        """The first free default name "Object <n>"."""
        names = {o.name for o in self.objects}
        return next(f"Object {i}" for i in range(1, len(names) + 2) if f"Object {i}" not in names)

    def object(self, name: str) -> TargetObject:
        """The object called ``name`` (InputError when there is none)."""
        for o in self.objects:
            if o.name == name:
                return o
        raise InputError(f"no object named '{name}' on volume '{self.volume_node.GetName()}'")

    def remove_object(self, obj: TargetObject, remove_nodes: bool = True) -> None:
        """Stop annotating ``obj``; with ``remove_nodes`` also delete its points node and segment."""
        self._detach(obj)
        self.history.forget(obj)
        self.objects.remove(obj)
        if self.active is obj:
            self.active = self.objects[-1] if self.objects else None
        if remove_nodes:
            self.segmentation_node.GetSegmentation().RemoveSegment(obj.segment_id)
            if self.scene.IsNodePresent(obj.markups_node):
                self.scene.RemoveNode(obj.markups_node)
        if self.autosave_dir:
            self._save_templates()

    # ------------------------------------------------------------------------------------------ points
    def undo(self) -> TargetObject | None:
        """Undo the last point edit (any object; it becomes the active one): its points and the template shown
        with them come back. Returns the object, or None (status says so) when there is nothing to undo."""
        return self._step(self.history.undo, self.history.redo, "undo", "undid")

    def redo(self) -> TargetObject | None:
        """Redo the last undone point edit; returns its object, or None when there is nothing to redo."""
        return self._step(self.history.redo, self.history.undo, "redo", "redid")

    def _step(self, source: list[Edit], target: list[Edit], action: str, done: str) -> TargetObject | None:
        """Pop an edit from ``source``, push the present state of its object onto ``target``, show the edit."""
        self._require_open()
        while source and source[-1].obj not in self.objects:
            source.pop()
        if not source:
            self._set_status(f"nothing to {action}", "info")
            return None
        edit = source.pop()
        obj = edit.obj
        target.append(Edit(obj, obj.fitted_points if obj.fitted_points is not None else obj.points_lps,
                           snapshot(obj.surface), obj.proposal, obj.prior))
        with self._quiet():
            nodes.set_control_points_lps(obj.markups_node, edit.points)
        obj.proposal, obj.prior = edit.proposal, edit.prior
        self.active = obj
        self._show(obj, edit.surface)
        self._set_status(f"{obj.name}: {done} a change ({len(edit.points)} points)", "info")
        return obj

    def _show(self, obj: TargetObject, surface) -> None:
        """Show ``surface`` (an ActiveSurface or None) as ``obj``'s template for its present points; autosave."""
        obj.fitted_points = obj.points_lps  # as the node holds them (read back)
        self._show_surface(obj, surface, obj.fitted_points, refine=False)  # exactly what was shown
        self._save_points(obj)
        self._save_templates()

    def _show_surface(self, obj: TargetObject, surface, points: np.ndarray, refine: bool = True) -> None:
        """Make ``surface`` (an ActiveSurface fitted through ``points`` (N, 3) LPS, or None: no template)
        ``obj``'s template: its mask updated within the old and new bounding boxes, its segment given the new
        box and the mesh as closed surface; ``refine``: what a deferred update left is handed to :attr:`later`."""
        from weaknet.rasterize import MaskRasterizer

        obj.surface = surface
        if surface is None:
            obj.loaded, obj.block, obj.rasterizer, obj.template_points = None, None, None, None
            self._write_segment(obj, None, None)
            return
        if obj.rasterizer is None:
            obj.rasterizer = MaskRasterizer(self.geometry)
        obj.rasterizer.update(surface.vertices, surface.faces)
        obj.loaded, obj.block = None, obj.rasterizer.block
        obj.offset = tuple(int(b.start) for b in obj.rasterizer.box)
        obj.template_points = points
        self._write_segment(obj, obj.block, nodes.surface_polydata(surface.vertices, surface.faces))
        if refine and self.later is not None and getattr(surface, "needs_refine", False) and not obj.dragging:
            self._refine_later(obj)

    @property
    def can_undo(self) -> bool:
        return any(e.obj in self.objects for e in self.history.undo)

    @property
    def can_redo(self) -> bool:
        return any(e.obj in self.objects for e in self.history.redo)

    def clear_points(self, obj: TargetObject | None = None) -> None:
        """Remove all points of ``obj`` (default: the active object) and its template (one undoable edit)."""
        obj = self._obj(obj)
        with self.batch():
            obj.markups_node.RemoveAllControlPoints()

    def start_placing(self, obj: TargetObject | None = None, persistent: bool = True) -> None:
        """Put the scene's interaction node in (persistent) place mode for ``obj``'s markups node.

        This is what Slicer's "place" toolbar button does; views then add a point per click.
        """
        obj = self._obj(obj)
        selection = self.scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
        interaction = self._interaction_node()
        if selection is None:
            raise InputError("the scene has no selection node (create the scene with an application logic)")
        selection.SetReferenceActivePlaceNodeClassName("vtkMRMLMarkupsFiducialNode")
        selection.SetActivePlaceNodeID(obj.markups_node.GetID())
        interaction.SetPlaceModePersistence(1 if persistent else 0)
        interaction.SetCurrentInteractionMode(slicer.vtkMRMLInteractionNode.Place)
        self.active = obj

    def stop_placing(self) -> None:
        """Leave place mode (back to rotating/panning the views); the points stay."""
        interaction = self._interaction_node()
        interaction.SetCurrentInteractionMode(slicer.vtkMRMLInteractionNode.ViewTransform)

    def _interaction_node(self):
        node = self.scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
        if node is None:
            raise InputError("the scene has no interaction node (create the scene with an application logic)")
        return node

    @contextmanager
    def batch(self):
        """Suspend fitting while many points change at once; on exit every changed object is fitted from
        scratch (``ActiveSurface.fit``), exactly as ``weaknet.template.fit_template`` would (one undoable
        edit per object)."""
        self._batch += 1
        try:
            yield self
        finally:
            self._batch -= 1
            if self._batch == 0 and not self.closed:
                for obj in list(self.objects):
                    before = obj.fitted_points
                    if before is None or not np.array_equal(before, obj.points_lps):
                        self.refit(obj, full=True)

    @property
    def point_count(self) -> int:
        """Points currently placed over all objects."""
        return sum(o.point_count for o in self.objects)

    @property
    def effort(self) -> int:
        """Annotation effort: points clicked over all objects (including ones removed since)."""
        return sum(o.clicks for o in self.objects)

    # --------------------------------------------------------------------------------------- fitting
    def refit(self, obj: TargetObject, full: bool = False) -> bool:
        """Fit ``obj``'s template to its current points and update its segment; returns True when a new
        template was made. ``full`` fits from scratch, otherwise the last mesh is warm-started.

        Never raises for bad points: it sets :attr:`status` and keeps the points (and the last template,
        except with fewer than 4 points, when the template is removed).
        """
        if self.closed or obj not in self.objects:
            return False
        points = obj.points_lps
        unchanged = obj.fitted_points is not None and points.shape == obj.fitted_points.shape \
            and np.array_equal(points, obj.fitted_points)
        if unchanged and not full:
            return False  # an event that did not move a defined point (e.g. a placement preview)
        if not unchanged:
            self._record(obj)
        obj.fitted_points = points
        self._save_points(obj)
        if obj.proposal is not None:
            return self._correct_proposal(obj, points)
        try:
            validate_points(points, self.geometry)
        except InputError as exc:
            if len(points) < 4:
                self._show_surface(obj, None, points)
                self._save_templates()
            self._set_status(f"{obj.name}: {exc}", "warning")
            return False
        from weaknet.asm import ActiveSurface

        surface = obj.surface
        if full or surface is None:
            surface = ActiveSurface(**self.fit_options, **(obj.prior.surface_options() if obj.prior else {}))
            surface.fit(points)
        else:
            if obj.refine_stop is not None:
                obj.refine_stop.set()  # the refinement running is of older points
            surface.update(points, defer=self.later is not None)
        self._show_surface(obj, surface, points)
        self._save_templates()
        self._fitted_status(obj)
        return True

    def _fitted_status(self, obj: TargetObject) -> None:
        voxels = int(np.count_nonzero(obj.block)) if obj.block is not None else 0
        prior = f", from the shape prior of {obj.prior.meshes} earlier objects" if obj.prior is not None else ""
        self._set_status(f"{obj.name}: template fitted through {len(obj.template_points)} points ({voxels} voxels)"
                         f"{prior}", "info")

    def _refine_later(self, obj: TargetObject) -> None:
        """Refine ``obj``'s template (the fit of its points) once :attr:`later` runs (the front end showed the
        click): on a private copy in a worker thread, so that the clicks meanwhile are answered at once, shown
        (through :attr:`later` again) if the template is still the one copied; a newer click abandons it and
        the newest template is refined next. One refinement per object at a time; during a drag,
        none (its end starts one); after an undo or a fit afresh, none (the template is shown as it is)."""
        if obj.refining is not None or obj.dragging:
            return
        surface = obj.surface
        placeholder = obj.refining = Future()  # to be started
        candidate = None

        def start() -> None:
            nonlocal candidate
            if obj.refining is not placeholder:  # settled meanwhile (see settle)
                return
            if self.closed or obj not in self.objects or obj.surface is not surface or obj.dragging \
                    or not surface.needs_refine:
                obj.refining = None
                return
            candidate = snapshot(surface)
            obj.refine_stop = threading.Event()
            future = obj.refining = _refiner().submit(candidate.refine, obj.refine_stop)
            self.later(lambda: apply(future))

        def apply(done: Future) -> None:
            from weaknet.asm import Abandoned

            if obj.refining is not done:  # settled meanwhile (see settle)
                return
            if not done.done():
                self.later(lambda: apply(done))
                return
            obj.refining, obj.refine_stop = None, None
            if self.closed or obj not in self.objects or obj.dragging or obj.surface is not surface:
                return
            if not np.array_equal(surface.points, candidate.points) or isinstance(done.exception(), Abandoned):
                if surface.needs_refine:  # overtaken by a click: refine the newest
                    self._refine_later(obj)
                return
            try:
                done.result()
                self._show_surface(obj, candidate, obj.template_points)
                self._save_templates()
                self._fitted_status(obj)
            except Exception as exc:  # noqa: BLE001 - called from a GUI timer: report, never raise
                log.exception("WeakNet: refining %s failed", obj.name)
                self._set_status(f"{obj.name}: refining the template failed ({exc}); your points are kept", "error")

        self.later(start)

    def settle(self) -> None:
        """Finish every object's pending refinement now, on this thread (0.1–0.3 s each): what is saved,
        exported or added to a training set is then the fit of the points, as the template shown once the
        clicks pause, and not a quick follow that the worker replaces a moment later. A refinement running on
        the worker is abandoned and done again here; a dragged object is left as it is (its drag's end
        refines it)."""
        for obj in self.objects:
            running, stop = obj.refining, obj.refine_stop
            obj.refining, obj.refine_stop = None, None  # the callbacks queued through `later` see it and stop
            if stop is not None:
                stop.set()
            if running is not None and not running.cancel():
                wait([running])  # running on the worker: abandoned within one solver step
            surface = obj.surface
            if obj.dragging or surface is None or not getattr(surface, "needs_refine", False):
                continue
            candidate = snapshot(surface)
            candidate.refine()
            self._show_surface(obj, candidate, obj.template_points, refine=False)
            self._save_templates()

    def _correct_proposal(self, obj: TargetObject, points: np.ndarray) -> bool:
        """``obj``'s template from its proposal corrected by its points (N, 3) LPS, any number of them
        (:meth:`weaknet.proposal.Proposal.update`; none: the proposal itself). A point outside the image
        keeps the last template (status says which); returns True when a new template was made."""
        try:
            check_inside(points, self.geometry)
        except InputError as exc:
            self._set_status(f"{obj.name}: {exc}", "warning")
            return False
        self._show_surface(obj, obj.proposal.update(points), points)
        self._save_templates()
        voxels = int(np.count_nonzero(obj.block)) if obj.block is not None else 0
        self._set_status(f"{obj.name}: the model's proposal, corrected by {len(points)} point(s) ({voxels} voxels)",
                         "info")
        return True

    def set_proposal(self, obj: TargetObject, proposal, note: str = "") -> None:
        """Make a model's :class:`weaknet.proposal.Proposal` ``obj``'s template; its points (if any) and later
        ones correct it locally. One undoable edit (undo gives back the template before); autosaved as
        ``<stem>.proposal.npz`` beside the object's points. ``note``: added to the status as a warning (e.g.
        the model was trained on another modality)."""
        self._require_open()
        obj = self._obj(obj)
        self._record(obj)
        obj.proposal = proposal
        obj.fitted_points = obj.points_lps  # the points stay: refit fits again without a second undo entry
        self.active = obj
        if self.refit(obj, full=True) and note:
            self._set_status(f"{self.status} — {note}", "warning")

    def set_prior(self, obj: TargetObject, prior) -> None:
        """Fit ``obj`` with a :class:`weaknet.shape_prior.ShapePrior` (None: without one) from now on: its
        template is fitted afresh from the prior's shape through the points (once it has 4). One undoable
        edit; autosaved as ``<stem>.prior.npz``. InputError for an object started from a model's proposal or
        a prior of another mesh resolution."""
        self._require_open()
        obj = self._obj(obj)
        if prior is not None:
            check_prior_allowed(obj)
            self._check_prior(prior, obj)
        self._record(obj)
        obj.prior = prior
        obj.fitted_points = obj.points_lps
        self.active = obj
        if not self.refit(obj, full=True):
            self._set_status(f"{obj.name}: " + (f"shape prior of {prior.meshes} earlier objects; place at least "
                                                 "4 points" if prior is not None else "no shape prior"), "info")
        if prior is not None and prior.worse_than_plain:
            self._set_status(f"{self.status} — on the earlier objects, left out one at a time, it fitted worse "
                             f"than without a prior ({prior.tuning[prior.normal_pull]:.3f} vs "
                             f"{prior.tuning['plain']:.3f} RMS radii): turn it off if the template looks worse",
                             "warning")

    def _check_prior(self, prior, obj: TargetObject) -> None:
        """InputError unless ``prior`` fits this session's meshes (its ``subdivisions``)."""
        from weaknet.mesh import icosphere

        prior.check(icosphere(int(self.fit_options.get("subdivisions", 4)))[1], name=f"the prior of {obj.name!r}")

    def report(self, message: str, level: str = "info") -> None:
        """Show ``message`` as the session's status (``level``: info, warning, error) and tell listeners."""
        self._set_status(message, level)

    def _record(self, obj: TargetObject) -> None:
        """Put ``obj``'s state before a change of its points on the undo stack (a drag: once, at its start)."""
        if obj.dragging:
            if obj.drag_recorded:
                return
            obj.drag_recorded = True
        before = obj.fitted_points if obj.fitted_points is not None else np.zeros((0, 3))
        self.history.record(Edit(obj, before, snapshot(obj.surface), obj.proposal, obj.prior))

    def template_mask(self, obj: TargetObject | None = None) -> np.ndarray:
        """``obj``'s template as shown, exported by Slicer from its segment: uint8 (D, H, W) on the volume's
        grid (a refinement may still be pending: :meth:`settle`)."""
        return nodes.segment_mask(self.segmentation_node, self._obj(obj).segment_id, self.volume_node)

    # ------------------------------------------------------------------------------------- save/open
    def save(self, folder: str | Path | None = None) -> Path:
        """Write the session to ``folder`` (default: the autosave folder): session.json, one .mrk.json per
        object, templates.seg.nrrd and (when the volume has no file yet) volume.nrrd. Returns the folder."""
        target = Path(folder) if folder else self.autosave_dir
        if target is None:
            raise InputError("no folder to save the session to; choose an autosave folder")
        self.settle()
        for obj in self.objects:
            nodes.write_node(obj.markups_node, target / obj.points_file)
        try:
            write_seg_nrrd(target / TEMPLATES_FILE, self.geometry, self._snapshot())
        except OSError as exc:
            raise InputError(f"{target / TEMPLATES_FILE}: could not be written ({exc})") from exc
        self._write_session_file(target)
        return target

    def flush(self) -> None:
        """Settle the templates (:meth:`settle`), write the templates file now if a write is due (the autosave
        writes it at most once a second) and wait until it is on disk."""
        self.settle()
        if self.autosave_dir:
            self._writer.flush()

    @classmethod
    def reopen(cls, scene, folder: str | Path, volume_node=None, volumes_logic=None,
               fit_options: dict | None = None, autosave: bool = True) -> "AnnotationSession":
        """Reopen a saved session: loads the volume (unless ``volume_node`` is given; with ``volumes_logic``,
        Slicer's own by default), the templates and every object's points.

        The saved templates are shown as saved, except where they are older than the points (the clicks are
        saved at once, the templates up to a second later): those objects are re-fitted from their points.
        The next point change re-fits from the points.
        """
        folder = Path(folder)
        meta_path = folder / SESSION_FILE
        if not meta_path.is_file():
            raise InputError(f"{folder}: no {SESSION_FILE}; not a WeakNet session folder")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if volume_node is None:
            volume_file = folder / meta["volume_file"]
            volume_node = _load_volume(volumes_logic, volume_file, meta.get("volume", volume_file.stem))
        segmentation_node = None
        if (folder / TEMPLATES_FILE).is_file():
            segmentation_node = nodes.read_node(scene, "vtkMRMLSegmentationNode", folder / TEMPLATES_FILE,
                                                f"{volume_node.GetName()} templates")
        session = cls(scene, volume_node, segmentation_node, folder if autosave else None, fit_options)
        templates = folder / TEMPLATES_FILE
        stale = []
        with session._quiet():
            for entry in meta.get("objects", []):
                points_file = folder / entry["points"]
                markups = None
                if points_file.is_file():
                    markups = nodes.read_node(scene, "vtkMRMLMarkupsFiducialNode", points_file,
                                              f"{volume_node.GetName()} {entry['name']}")
                obj = session._adopt(markups, entry["name"], tuple(entry.get("color", COLORS[0])),
                                     entry.get("clicks"), Path(entry["points"]).name[: -len(POINTS_SUFFIX)])
                if entry.get("proposal"):
                    session._adopt_proposal(obj, folder / entry["proposal"])
                if entry.get("prior"):
                    session._adopt_prior(obj, folder / entry["prior"])
                newer = points_file.is_file() and (not templates.is_file()
                                                   or points_file.stat().st_mtime > templates.stat().st_mtime)
                if session._stale(obj, newer):
                    stale.append(obj)
        for obj in stale:
            session.refit(obj, full=True)
        session._set_status(f"reopened {len(session.objects)} object(s) with {session.point_count} points "
                            f"from {folder}", "info")
        return session

    @classmethod
    def from_scene(cls, scene, volume_node, autosave_dir: str | Path | None = None,
                   fit_options: dict | None = None) -> "AnnotationSession":
        """Resume the session whose nodes are already in the scene (e.g. a saved .mrml scene loaded again):
        the volume's template segmentation and every markups node referencing the volume."""
        segmentation_node = next((n for n in nodes.nodes_of_class(scene, "vtkMRMLSegmentationNode")
                                  if n.GetNodeReference(REF_VOLUME) is volume_node), None)
        session = cls(scene, volume_node, segmentation_node, autosave_dir, fit_options)
        stale = []
        with session._quiet():
            for markups in nodes.nodes_of_class(scene, "vtkMRMLMarkupsFiducialNode"):
                if markups.GetNodeReference(REF_VOLUME) is volume_node:
                    obj = session._adopt(markups, markups.GetAttribute(ATTR_OBJECT), None,
                                         markups.GetAttribute(ATTR_CLICKS), markups.GetAttribute(ATTR_STEM))
                    if markups.GetAttribute(ATTR_PROPOSAL):
                        session._adopt_proposal(obj, Path(markups.GetAttribute(ATTR_PROPOSAL)))
                    if markups.GetAttribute(ATTR_PRIOR):
                        session._adopt_prior(obj, Path(markups.GetAttribute(ATTR_PRIOR)))
                    if session._stale(obj, False):
                        stale.append(obj)
        for obj in stale:
            session.refit(obj, full=True)
        session._set_status(f"resumed {len(session.objects)} object(s) with {session.point_count} points", "info")
        return session

    def _adopt(self, markups, name: str | None, color, clicks, stem: str | None) -> TargetObject:
        """Add an object for existing points and template without re-fitting (call inside ``_quiet``)."""
        stem = stem or (unique_stem(name, [o.stem for o in self.objects]) if name else None)
        segment = self.segmentation_node.GetSegmentation().GetSegment(SEGMENT_PREFIX + stem) if stem else None
        if color is None and segment is not None:
            color = tuple(segment.GetColor())
        obj = self.add_object(name, markups, color, stem)
        obj.clicks = int(clicks) if clicks is not None else obj.point_count
        obj.fitted_points = obj.points_lps
        if segment is not None:
            obj.loaded = self.template_mask(obj)
            obj.template_points = obj.fitted_points
        return obj

    def _adopt_proposal(self, obj: TargetObject, path: Path) -> None:
        """Give a reopened object its saved proposal (``<stem>.proposal.npz``); a missing or unreadable file
        leaves it an ordinary object, with a warning in the log."""
        from weaknet.proposal import Proposal

        try:
            with np.load(path, allow_pickle=False) as saved:
                obj.proposal = Proposal.restore(saved["anchors"], saved["vertices"], float(saved["radius_mm"]),
                                                float(saved["reach"]), **self.fit_options)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, InputError) as exc:
            log.warning("WeakNet: %s: the proposal of %s cannot be read (%s); its points are fitted alone",
                        path, obj.name, exc)
            return
        self._mark_written(obj, "proposal", path)

    def _adopt_prior(self, obj: TargetObject, path: Path) -> None:
        """Give a reopened object its saved shape prior (``<stem>.prior.npz``); a missing or unreadable file
        leaves it an object without one, with a warning in the log."""
        from weaknet.shape_prior import ShapePrior

        try:
            prior = ShapePrior.load(path)
            self._check_prior(prior, obj)
            obj.prior = prior
        except InputError as exc:
            log.warning("WeakNet: the shape prior of %s cannot be read (%s); it is fitted without one", obj.name, exc)
            return
        self._mark_written(obj, "prior", path)

    def _mark_written(self, obj: TargetObject, kind: str, path: Path) -> None:
        """Note that ``obj``'s ``kind`` ("proposal" or "prior") read from ``path`` is already in the autosave."""
        if self.autosave_dir is not None and path.resolve() == (self.autosave_dir / _ATTACHED[kind][0](obj)).resolve():
            self._attachments_written[kind, obj.stem] = getattr(obj, kind)

    def _write_attachments(self, folder: Path, autosave: bool) -> None:
        """Write each object's proposal and prior to ``<stem>.proposal.npz`` / ``<stem>.prior.npz`` in ``folder``
        (the autosave folder: only one not written there yet, and each points node told where its file is, for
        a saved scene)."""
        for o in self.objects:
            for kind, (file_of, attribute) in _ATTACHED.items():
                value = getattr(o, kind)
                if value is None:
                    if autosave and o.markups_node.GetAttribute(attribute):
                        o.markups_node.RemoveAttribute(attribute)
                    continue
                path = folder / file_of(o)
                if autosave and self._attachments_written.get((kind, o.stem)) is value:
                    continue
                tmp = folder / (file_of(o) + ".tmp")
                with open(tmp, "wb") as f:
                    np.savez(f, **value.arrays())
                tmp.replace(path)
                if autosave:
                    self._attachments_written[kind, o.stem] = value
                    o.markups_node.SetAttribute(attribute, str(path.resolve()))

    def _stale(self, obj: TargetObject, points_newer: bool) -> bool:
        """Whether ``obj``'s template (as read) is older than its points: no segment for 4 or more points (or
        for a proposal), a segment fitted through other points (its fingerprint tag), or, without a tag (a
        file Slicer wrote), ``points_newer`` (the points file is newer than the templates file)."""
        segment = self.segmentation_node.GetSegmentation().GetSegment(obj.segment_id)
        if segment is None:
            return obj.point_count >= 4 or obj.proposal is not None
        saved = nodes.segment_tag(segment, POINTS_TAG)
        if saved is not None:
            return saved != points_fingerprint(obj.points_lps)
        return points_newer

    # -------------------------------------------------------------------------------------- listeners
    def add_listener(self, callback: Callable[["AnnotationSession"], None]) -> None:
        """Call ``callback(session)`` after every change: a fit, a warning, a counted click, the end of a drag,
        an undo, a deleted node..."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[["AnnotationSession"], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def close(self, settle: bool = True) -> None:
        """Stop observing the scene and the markups nodes (nodes and files stay); ``settle``: the pending
        refinements first (:meth:`settle`; not when the scene's nodes are going)."""
        if self.closed:
            return
        if settle:
            self.settle()
        self._writer.close()  # the last templates reach the disk
        for obj in self.objects:
            self._detach(obj)
        for tag in self._scene_tags:
            self.scene.RemoveObserver(tag)
        self.closed = True

    # -------------------------------------------------------------------------------------- internals
    def _on_points(self, obj: TargetObject, event: str, caller=None, vtk_event=None) -> None:
        try:
            if self._batch:
                return
            if (self.drop_outside_clicks or self.drop_placements) and self._drop_outside(obj):
                # a point taken back is no click: its PointPositionDefinedEvent, when still to come, is skipped
                self._dropped_placement = event != "PointPositionDefinedEvent"
                return
            if event == "PointPositionDefinedEvent" and self._dropped_placement:
                self._dropped_placement = False
                return
            self._session_dirty = None  # collect: session.json is written once, below
            try:
                self.refit(obj)
                if event == "PointPositionDefinedEvent":
                    obj.clicks += 1
                    obj.markups_node.SetAttribute(ATTR_CLICKS, str(obj.clicks))  # saved with the scene
                    self._session_dirty = True
            finally:
                dirty, self._session_dirty = self._session_dirty, False
            if dirty and self.autosave_dir and not (event == "PointAddedEvent" and _last_defined(caller)):
                self._autosave(self._write_session_file)  # (a point added defined: at its PositionDefined)
            if event == "PointPositionDefinedEvent":
                self._notify()
        except Exception as exc:  # noqa: BLE001 - an observer must never raise into Slicer's event loop
            log.exception("WeakNet: re-fitting %s failed", obj.name)
            message = str(exc) if isinstance(exc, WeakNetError) else f"{type(exc).__name__}: {exc}"
            self._set_status(f"{obj.name}: fit failed ({message}); your points are kept", "error")

    def _drop_outside(self, obj: TargetObject) -> bool:
        """Remove the points added since the last fit that lie outside the image (voxel centres ± ½ voxel), or
        all of them while :attr:`drop_placements` is set; True (status says so) when there were any. Moved
        points are never removed (their count is unchanged)."""
        node = obj.markups_node
        before = 0 if obj.fitted_points is None else len(obj.fitted_points)
        defined = [i for i in range(node.GetNumberOfControlPoints())
                   if node.GetNthControlPointPositionStatus(i) == node.PositionDefined]
        if len(defined) <= before:
            return False
        points = obj.points_lps
        fitted = obj.fitted_points if obj.fitted_points is not None else np.zeros((0, 3))
        new = np.array([not np.any(np.all(np.abs(fitted - p) < 1e-6, axis=1)) for p in points], bool)
        keep = np.zeros(len(points), bool) if self.drop_placements else self.geometry.contains(points)
        dropped = [i for i, fresh, ok in zip(defined, new, keep) if fresh and not ok]
        if not dropped:
            return False
        with self._quiet():
            for i in reversed(dropped):
                node.RemoveNthControlPoint(i)
        why = "a drag is not a click" if self.drop_placements else "a click outside the image was ignored; " \
            "click on the volume"
        self._set_status(f"{obj.name}: {why}", "warning")
        return True

    def _on_drag(self, obj: TargetObject, dragging: bool, caller=None, vtk_event=None) -> None:
        obj.dragging, obj.drag_recorded = dragging, False
        if not dragging:
            if self.later is not None and getattr(obj.surface, "needs_refine", False):
                self._refine_later(obj)
            self._save_templates(now=True)
            self._notify()

    def _on_scene_close(self, caller, event) -> None:
        self.close(settle=False)  # File > Close scene: its nodes go, so does the session (files in the folder stay)

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def _on_node_removed(self, caller, event, node) -> None:
        if self.closed:
            return
        try:
            if node is self.volume_node:
                self._set_status(f"volume '{node.GetName()}' was deleted: the session is closed; points and "
                                 "templates stay in the scene" + (f" and in {self.autosave_dir}"
                                                                   if self.autosave_dir else ""), "error")
                self.close()
            elif node is self.segmentation_node:
                self.segmentation_node = self._new_segmentation_node()
                self._tag_segmentation()
                for obj in self.objects:
                    obj.fitted_points = None
                self._set_status("the templates' segmentation was deleted: a new one is made at the next "
                                 "point change", "warning")
            else:
                for obj in list(self.objects):
                    if node is obj.markups_node:
                        self._detach(obj)
                        self.history.forget(obj)
                        self.objects.remove(obj)
                        if self.active is obj:
                            self.active = self.objects[-1] if self.objects else None
                        self._set_status(f"{obj.name}: its points node was deleted; the object is closed and "
                                         "its template segment kept", "warning")
        except Exception:  # noqa: BLE001 - never raise into the scene's event loop
            log.exception("WeakNet: handling a deleted node failed")

    def _write_segment(self, obj: TargetObject, block: np.ndarray | None, surface) -> None:
        """Give ``obj``'s segment the labelmap ``block`` (its box from ``obj.offset``, or None: empty)."""
        if not self.scene.IsNodePresent(self.segmentation_node):
            self.segmentation_node = self._new_segmentation_node()
            self._tag_segmentation()
        nodes.set_segment(self.segmentation_node, obj.segment_id, obj.name, obj.color, block, self.geometry,
                          surface, obj.offset)

    def _save_points(self, obj: TargetObject) -> None:
        """Write ``obj``'s clicks (.mrk.json) and session.json now (small files: a click is never lost)."""
        if self.autosave_dir and not self._batch:
            self._autosave(self._write_points, obj)
            if self._session_dirty is False:
                self._autosave(self._write_session_file)
            else:  # inside a point event: written once at its end
                self._session_dirty = True

    def _save_templates(self, now: bool = False) -> None:
        """Hand the templates to the background writer (written within a second; ``now``: at once)."""
        if not self.autosave_dir or self._batch or not self.scene.IsNodePresent(self.segmentation_node):
            return
        path = self.autosave_dir / TEMPLATES_FILE
        storage = self.segmentation_node.GetStorageNode()
        if storage is None:  # a saved scene (.mrml) then refers to the autosaved file
            self.segmentation_node.AddDefaultStorageNode()
            storage = self.segmentation_node.GetStorageNode()
        if storage.GetFileName() != str(path):
            storage.SetFileName(str(path))
        self._writer.request(path, self.geometry, self._snapshot(), now)

    def _snapshot(self) -> list[SegmentBlock]:
        """Every object's template as written: its box and block (no copy: blocks are never changed) and the
        fingerprint of the points it was fitted through."""
        out = []
        for o in self.objects:
            if o.block is None and o.loaded is not None:  # a template read from a file: its box, once
                o.offset, o.block = _crop(o.loaded)
            tags = {POINTS_TAG: points_fingerprint(o.template_points)} if o.template_points is not None else {}
            out.append(SegmentBlock(o.segment_id, o.name, tuple(o.color), o.block, o.offset, tags))
        return out

    def _on_write_error(self, message: str | None) -> None:
        """The template writer's report (from its thread): shown with the next status."""
        self.autosave_error = None if message is None else \
            f"autosave to {self.autosave_dir} failed ({message}); your points are kept in the scene: choose " \
            "another autosave folder or save the scene"

    def _autosave(self, write, *args) -> None:
        """Run one autosave write; a failure (full disk, no permission...) never stops fitting and never
        loses a point (they stay in the scene): it is reported in :attr:`autosave_error` and the status."""
        try:
            write(*args)
            self.autosave_error = None
        except (WeakNetError, OSError) as exc:
            self.autosave_error = f"autosave to {self.autosave_dir} failed ({exc}); your points are kept in the " \
                                  "scene: choose another autosave folder or save the scene"

    def _write_points(self, obj: TargetObject) -> None:
        """Write ``obj``'s clicks to its ``.mrk.json`` in the autosave folder."""
        nodes.write_node(obj.markups_node, self.autosave_dir / obj.points_file)

    def _write_session_file(self, folder: Path | None = None) -> None:
        """Write session.json to ``folder``, or to the autosave folder when its content changed."""
        autosave = folder is None
        folder = folder or self.autosave_dir
        folder.mkdir(parents=True, exist_ok=True)
        volume_file = self._volume_file(folder)
        meta = {"volume": self.volume_node.GetName(), "volume_file": volume_file,
                "objects": [{"name": o.name, "segment_id": o.segment_id, "points": o.points_file,
                             "color": list(o.color), "clicks": o.clicks, "point_count": o.point_count,
                             **({"proposal": o.proposal_file} if o.proposal is not None else {}),
                             **({"prior": o.prior_file} if o.prior is not None else {})}
                            for o in self.objects],
                "templates": TEMPLATES_FILE, "effort": self.effort}
        self._write_attachments(folder, autosave)  # before session.json refers to them
        text = json.dumps(meta, indent=2)
        if autosave and text == self._session_text:
            return
        tmp = folder / (SESSION_FILE + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(folder / SESSION_FILE)
        if autosave:
            self._session_text = text

    def _volume_file(self, folder: Path) -> str:
        """The volume's file relative to ``folder`` (written there as volume.nrrd once if it has none)."""
        source = nodes.node_file(self.volume_node)
        if source is not None:
            try:
                return str(source.relative_to(folder.resolve()))
            except ValueError:
                return str(source)
        target = folder / VOLUME_FILE
        if not target.is_file():
            from weaknet.volume import write_volume

            write_volume(nodes.node_volume(self.volume_node), target)
        return target.name

    def _new_segmentation_node(self):
        node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{self.volume_node.GetName()} templates")
        node.CreateDefaultDisplayNodes()
        node.SetReferenceImageGeometryParameterFromVolumeNode(self.volume_node)
        node.SetSourceRepresentationToBinaryLabelmap()
        node.SetSelectable(False)  # not pickable: a click in 3D lands on the organ, not on the template over it
        display = node.GetDisplayNode()
        if display is not None:  # slice views: the rasterised template; 3D: the fitted mesh
            display.SetPreferredDisplayRepresentationName2D(nodes.LABELMAP)
            display.SetPreferredDisplayRepresentationName3D(nodes.CLOSED_SURFACE)
        return node

    def _tag_segmentation(self) -> None:
        self.segmentation_node.SetNodeReferenceID(REF_VOLUME, self.volume_node.GetID())
        self.segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(self.volume_node)

    def _detach(self, obj: TargetObject) -> None:
        for tag in obj.tags:
            obj.markups_node.RemoveObserver(tag)
        obj.tags.clear()

    def _obj(self, obj: TargetObject | None) -> TargetObject:
        obj = obj or self.active
        if obj is None:
            raise InputError("add an object first (Add object), then place points on its surface")
        return obj

    def _require_open(self) -> None:
        if self.closed:
            raise InputError("this session is closed (its volume was deleted); start a new one")

    @contextmanager
    def _quiet(self):
        """Suspend fitting without re-fitting on exit (used when templates come from files)."""
        self._batch += 1
        try:
            yield
        finally:
            self._batch -= 1

    def _set_status(self, message: str, level: str) -> None:
        if self.autosave_error and level != "error":
            message, level = f"{message} — {self.autosave_error}", "warning"
        self.status, self.status_level = message, level
        (log.warning if level != "info" else log.info)("WeakNet: %s", message)
        self._notify()

    def _notify(self) -> None:
        for callback in list(self._listeners):
            try:
                callback(self)
            except Exception:  # noqa: BLE001 - a broken listener must not break the session
                log.exception("WeakNet: a session listener failed")


_ATTACHED = {"proposal": (lambda o: o.proposal_file, ATTR_PROPOSAL), "prior": (lambda o: o.prior_file, ATTR_PRIOR)}
"""What an object may carry besides its points, saved beside them (its ``arrays()`` with ``np.savez``): kind →
(its file name, the points node's attribute naming the file)."""


def check_prior_allowed(obj: TargetObject) -> None:
    """InputError when ``obj`` cannot take a shape prior: it starts from a model's proposal."""
    if obj.proposal is not None:
        raise InputError(f"{obj.name} starts from the model's proposal; a shape prior is for objects fitted "
                         "through their points")


def _last_defined(markups_node) -> bool:
    """Whether the node's last control point is defined: a point added so (``AddControlPoint``) is followed,
    in the same call, by its PointPositionDefinedEvent, which counts the click."""
    n = markups_node.GetNumberOfControlPoints() if markups_node is not None else 0
    return n > 0 and markups_node.GetNthControlPointPositionStatus(n - 1) == markups_node.PositionDefined


def _weak(method, *bound):
    """An observer callback calling ``method(*bound, *vtk_args)`` while its object lives.

    Scenes and nodes outlive sessions: a weak reference keeps observers from holding a session alive (and
    from calling into one that Python is tearing down). Keep a reference to the session (the Logic does).
    """
    ref = weakref.WeakMethod(method)

    def call(*args):
        live = ref()
        if live is not None:
            live(*bound, *args)

    if hasattr(method, "CallDataType"):
        call.CallDataType = method.CallDataType
    return call


@lru_cache(maxsize=1)
def _refiner() -> ThreadPoolExecutor:
    """The one worker thread that refines templates (``ActiveSurface.refine`` on private copies)."""
    return ThreadPoolExecutor(1, thread_name_prefix="weaknet-refine")


def _prepare_fits(fit_options: dict) -> None:
    """Factorise the ASM's systems for these options now (≈ 1 s once per process, shared by every surface),
    not at the 4th click."""
    from weaknet.asm import ActiveSurface

    try:
        ActiveSurface(**fit_options)
    except Exception:  # noqa: BLE001 - bad options are reported by the first fit, with the points kept
        log.debug("WeakNet: preparing the ASM failed", exc_info=True)


def _crop(mask: np.ndarray) -> tuple[tuple[int, int, int], np.ndarray | None]:
    """The bounding box of a (D, H, W) mask's non-zero voxels: its first voxel (k, j, i) and a copy of the
    block (None when the mask is empty)."""
    nonzero = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    if not all(len(n) for n in nonzero):
        return (0, 0, 0), None
    box = tuple(slice(int(n[0]), int(n[-1]) + 1) for n in nonzero)
    return tuple(b.start for b in box), np.ascontiguousarray(mask[box], dtype=np.uint8)


def _load_volume(volumes_logic, path: Path, name: str):
    """Load a volume file with the Volumes logic (Slicer's own when none is given)."""
    if not path.is_file():
        raise InputError(f"{path}: the session's volume file is missing; load the volume and pass it in")
    if volumes_logic is None:
        modules = getattr(slicer, "modules", None)
        if modules is None or not hasattr(modules, "volumes"):
            raise InputError("no Volumes logic to load the session's volume: pass volume_node or volumes_logic")
        volumes_logic = modules.volumes.logic()
    node = volumes_logic.AddArchetypeVolume(str(path), name, 0)
    if node is None:
        raise InputError(f"{path}: could not be read as a volume")
    return node
