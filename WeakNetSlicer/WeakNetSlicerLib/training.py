"""From annotated volumes in a Slicer scene to a trained Weak-Net and back.

- :class:`TrainingSet` / :func:`build_training_set`: the templates of annotated volumes (the segmentation
  nodes an :class:`~WeakNetSlicerLib.session.AnnotationSession` tagged) → images + template masks on disk and
  a DATASET.json written with :func:`weaknet.dataset.write_dataset`.
- :class:`TrainingController`: the settings (TrainConfig defaults + overrides), one run at a time through a
  small job interface (:class:`TrainingJobLike`: a background process or an out-of-process runner), its
  progress for a GUI timer (:meth:`TrainingController.poll`), cancel, and applying a model.
- :func:`apply_model`: a trained model on a volume node → a new segmentation node, with warnings when the
  model was trained on another modality or a very different voxel spacing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from weaknet.config import TrainConfig, parse_setting
from weaknet.dataset import MODALITIES, Case, normalize_modality, read_dataset, write_dataset
from weaknet.errors import InputError
from weaknet.filenames import safe_stem, split_suffix, unique_stem
from weaknet.progress import TrainingState, state_after, steps_done, total_steps
from weaknet.volume import Volume, write_volume

from . import nodes
from .session import REF_VOLUME, AnnotationSession

DATASET_FILE = "DATASET.json"
FORM_FIELDS = {"lambda_": "λ", "gamma": "γ", "boundary_distance": "d (mm)", "epochs": "epochs",
               "steps_per_epoch": "steps/epoch", "patch": "patch", "device": "device"}
"""The :class:`TrainConfig` fields both front ends show, with their short labels, in order (every other
field keeps its default)."""
SPACING_TOLERANCE = 1.5
"""A model is flagged when a volume's spacing differs from its training spacing by more than this factor."""


def annotated_volumes(scene) -> list[tuple[object, object]]:
    """(volume node, segmentation node) of every WeakNet template segmentation in the scene whose volume
    is still there and which holds at least one segment."""
    out = []
    for seg in nodes.nodes_of_class(scene, "vtkMRMLSegmentationNode"):
        volume = seg.GetNodeReference(REF_VOLUME)
        if volume is not None and seg.GetSegmentation().GetNumberOfSegments() > 0:
            out.append((volume, seg))
    return out


class TrainingSet:
    """A training set folder: ``images/``, ``templates/`` and DATASET.json (existing entries are kept).

    modality: CT, MRI or EM (the model remembers it, and :func:`apply_model` warns on a mismatch).
    """

    def __init__(self, folder: str | Path, modality: str, name: str = "weaknet"):
        self.folder = Path(folder)
        self.name = name
        self.modality = normalize_modality(modality)
        self.cases: list[Case] = []
        existing = self.folder / DATASET_FILE
        if existing.is_file():
            ds = read_dataset(existing)
            if ds.modality != self.modality:
                raise InputError(f"{existing}: holds {ds.modality} images; this set is {self.modality}. Use a new "
                                 "folder for another modality")
            self.cases = list(ds.training)

    def add(self, volume_node, segmentation_node, segment_ids: list[str] | None = None,
            stem: str | None = None) -> Case:
        """Add (or replace) one volume: its image and the union of its template segments (all, or
        ``segment_ids``) as a template mask, in ``images/<stem>.nrrd`` and ``templates/<stem>.nrrd``.
        ``stem`` (default :func:`volume_stem`) is stable across sessions, so adding the same volume again
        (after the scene or the server was restarted) replaces its case. Raises :class:`InputError` when the
        templates are empty."""
        ids = segment_ids or list(segmentation_node.GetSegmentation().GetSegmentIDs())
        mask = np.zeros(nodes.volume_geometry(volume_node).shape, np.uint8)
        for sid in ids:
            if segmentation_node.GetSegmentation().GetSegment(sid) is None:
                raise InputError(f"no segment '{sid}' in '{segmentation_node.GetName()}'")
            mask |= nodes.segment_mask(segmentation_node, sid, volume_node)
        if not mask.any():
            raise InputError(f"volume '{volume_node.GetName()}' has no template yet: place at least 4 points on "
                             "the object's surface first")
        image = nodes.node_volume(volume_node)
        stem = stem or volume_stem(volume_node)
        image_path = write_volume(image, self.folder / "images" / f"{stem}.nrrd")
        template_path = write_volume(Volume(mask, image.geometry), self.folder / "templates" / f"{stem}.nrrd")
        case = Case(image=image_path.resolve(), template=template_path.resolve())
        self.cases = [c for c in self.cases if c.image.resolve() != case.image] + [case]
        return case

    def add_session(self, session: AnnotationSession, object_names: list[str] | None = None) -> Case:
        """Add a session's volume with the templates of all (or the named) objects."""
        session.settle()  # the fit of the points, as shown once the clicks pause
        objects = [session.object(n) for n in object_names] if object_names else session.objects
        stem = session.autosave_dir.name if session.autosave_dir is not None else None  # one per volume file
        return self.add(session.volume_node, session.segmentation_node, [o.segment_id for o in objects], stem)

    def write(self) -> Path:
        """Write DATASET.json; raises :class:`InputError` when no volume was added."""
        if not self.cases:
            raise InputError("the training set is empty: annotate a volume (at least 4 points on an object) and "
                             "add it to the training set first")
        return write_dataset(self.folder / DATASET_FILE, name=self.name, modality=self.modality,
                             training=self.cases)


def build_training_set(scene, folder: str | Path, modality: str, name: str = "weaknet") -> Path:
    """Write a training set of every annotated volume in the scene; returns the DATASET.json path.

    Raises :class:`InputError` when the scene has no annotated volume (no template with voxels).
    """
    training = TrainingSet(folder, modality, name)
    skipped, stems = [], []
    for volume, seg in annotated_volumes(scene):
        stems.append(unique_stem(volume_stem(volume), stems))
        try:
            training.add(volume, seg, stem=stems[-1])
        except InputError as exc:
            skipped.append(str(exc))
    if not training.cases:
        raise InputError("no annotated volume in the scene: add an object and place at least 4 points on its "
                         "surface before training" + (f" ({'; '.join(skipped)})" if skipped else ""))
    return training.write()


class TrainingJobLike(Protocol):
    """What the controller needs of a training run: :class:`WeakNetSlicerLib.process.ProcessRun` (``weaknet
    train --progress-lines`` in a child process) or any other runner with these members. ``poll`` never
    blocks and returns the progress events (dicts, see :mod:`weaknet.progress`) that arrived since the last
    call; ``state`` follows :func:`weaknet.progress.state_after`; ``error`` says why a failed run failed."""

    state: TrainingState
    error: str | None

    def start(self) -> "TrainingJobLike": ...

    def poll(self) -> list[dict]: ...

    def cancel(self) -> None: ...


JobFactory = Callable[[Path, Path, TrainConfig], TrainingJobLike]


@dataclass
class TrainingProgress:
    """What a panel shows of a run: ``state``, ``fraction`` 0–1, one-line ``message``, the step ``losses``
    so far, ``model_dir`` once done."""

    state: TrainingState = TrainingState.IDLE
    fraction: float = 0.0
    message: str = ""
    losses: list[float] = field(default_factory=list)
    model_dir: Path | None = None

    @property
    def running(self) -> bool:
        return self.state == TrainingState.RUNNING


class TrainingController:
    """The training workflow of both front ends: the settings (:class:`TrainConfig` defaults + the user's
    overrides), the training set, one run at a time (start, :meth:`poll` from a GUI timer, cancel), and
    applying a model to a volume (the result imported as a segment).

    ``job_factory(dataset, output_dir, config)`` makes the run; the default,
    :func:`WeakNetSlicerLib.process.train_job`, runs ``python -m weaknet train --progress-lines`` as a child
    process — in desktop Slicer (PythonSlicer), in the web app and headless alike.
    """

    def __init__(self, job_factory: JobFactory | None = None):
        if job_factory is None:
            from .process import train_job as job_factory
        self.job_factory = job_factory
        self.job: TrainingJobLike | None = None
        self.progress = TrainingProgress()
        self.prediction = None
        self.apply_run = None
        self._total_steps = 0

    # ------------------------------------------------------------------------------------- settings
    @staticmethod
    def placeholders(names=tuple(FORM_FIELDS)) -> dict[str, str]:
        """Each setting's :class:`TrainConfig` default as a form shows it in an empty field: ``"auto"`` for a
        planned one (None), ``D,H,W`` for a tuple."""
        defaults = TrainConfig()
        return {name: shown(getattr(defaults, name)) for name in names}

    @staticmethod
    def settings(overrides: dict | None = None) -> TrainConfig:
        """:class:`TrainConfig` defaults with the non-None ``overrides`` applied, validated (InputError for an
        unknown name or a value out of the command line's bounds)."""
        config = TrainConfig().with_overrides(**(overrides or {}))
        config.validate()
        return config

    @staticmethod
    def parse(values: dict) -> dict:
        """A form's values (text or numbers, by TrainConfig field name) → typed overrides with the command
        line's bounds (:func:`weaknet.config.parse_setting`); an empty field or "auto" is None: the default."""
        return {name: parse_setting(name, "" if raw is None else raw) for name, raw in values.items()}

    # --------------------------------------------------------------------------------- training set
    @staticmethod
    def add_to_training_set(folder: str | Path, session: AnnotationSession, modality: str | None) -> int:
        """Add a session's volume with all its templates to the training set in ``folder``; returns the number
        of volumes in it. ``modality`` (one of :data:`weaknet.dataset.MODALITIES`) may be left out only when the
        set exists (it keeps its own)."""
        existing = Path(folder) / DATASET_FILE
        if not modality:
            if not existing.is_file():
                raise InputError(f"choose the modality of the training set ({', '.join(MODALITIES)})")
            modality = read_dataset(existing).modality
        training = TrainingSet(folder, modality=modality)
        training.add_session(session)
        training.write()
        return len(training.cases)

    # -------------------------------------------------------------------------------------- the run
    @property
    def running(self) -> bool:
        return self.job is not None and self.progress.running

    def start(self, folder: str | Path, output_dir: str | Path, overrides: dict | None = None) -> TrainingProgress:
        """Train on the training set in ``folder`` into ``output_dir`` (or ``<output_dir>-2``... when it already
        holds files: a new run never overwrites a model). Returns at once; bad settings, a missing or empty
        training set or an absent device raise InputError before anything starts."""
        from weaknet.device import resolve_device

        if self.running:
            raise InputError("a training is already running; cancel it first")
        dataset = Path(folder) / DATASET_FILE
        if not dataset.is_file():
            raise InputError(f"no training set in {folder}: annotate a volume and add it to the training set first")
        read_dataset(dataset)  # clear errors now rather than later in the background
        config = self.settings(overrides)
        resolve_device(config.device)
        self.job = self.job_factory(dataset, free_folder(Path(output_dir)), config).start()
        self.progress = TrainingProgress(TrainingState.RUNNING, message="starting training...")
        self._total_steps = 0
        return self.progress

    def poll(self) -> TrainingProgress:
        """Take the events that arrived since the last poll into :attr:`progress` (never blocks)."""
        job = self.job
        if job is None or self.progress.state.finished:
            return self.progress
        try:
            events = job.poll()
        except Exception as exc:  # noqa: BLE001 - a dead runner must end the run, not the poller
            events = [{"event": "error", "message": f"{type(exc).__name__}: {exc}"}]
        for event in events:
            self._apply(event)
        ended = TrainingState(job.state)
        if not self.progress.state.finished and ended.finished:  # the run ended without its final event
            self._apply({"event": "error" if ended == TrainingState.FAILED else ended.value,
                         "model_dir": str(getattr(job, "output_dir", "")), "message": job.error or "see the log"})
        return self.progress

    def cancel(self) -> None:
        """Ask the run to stop (within one step; :meth:`poll` then reports "cancelled")."""
        if not self.running:
            raise InputError("no training is running")
        self.job.cancel()
        self.progress.message = "cancelling..."

    def stop(self) -> None:
        """End a running training and a running apply (the process ends: before the application exits, so
        that no child outlives it; a cancelled training keeps its last checkpoint for ``--resume``)."""
        if self.running:
            self.job.cancel()
        if self.applying:
            self.apply_run.cancel()

    def _apply(self, e: dict) -> None:
        p, kind = self.progress, e.get("event")
        p.state = state_after(p.state, e)
        if kind == "start":
            self._total_steps = total_steps(e)
            p.message = f"training: {e.get('epochs')} epochs of {e.get('steps_per_epoch')} steps"
        elif kind == "step" and self._total_steps:
            p.fraction = min(1.0, steps_done(e) / self._total_steps)
            if "loss" in e:
                p.losses.append(float(e["loss"]))
            p.message = f"epoch {e.get('epoch')} step {e.get('step')}/{e.get('steps')}: loss {e.get('loss', 0):.4g}"
        elif kind == "epoch":
            iou = e.get("val_iou")
            p.message = f"epoch {e.get('epoch')} done: loss {e.get('loss', 0):.4g}" + \
                (f", validation IoU {iou:.3f}" if iou is not None else "")
        elif kind == "warning":
            p.message = f"warning: {e.get('message', '')}"
        elif kind == "done":
            p.fraction = 1.0
            p.model_dir = Path(e["model_dir"]) if e.get("model_dir") else None
            p.message = f"model ready: {p.model_dir}"
        elif kind == "cancelled":
            p.message = f"training cancelled (after epoch {e.get('epoch', '?')})"
        elif kind in ("error", "failed"):
            p.message = "training failed: " + str(e.get("message") or e.get("error") or "see the log")

    # ------------------------------------------------------------------------------------ the model
    def start_apply(self, scene, model_dir: str | Path, volume_node, gamma: float | None = None,
                    device: str | None = None, modality: str | None = None, surface: bool = True):
        """Segment a volume with a model out of process (``weaknet predict --progress-lines`` in a child, see
        :func:`~WeakNetSlicerLib.process.apply_model_process`); returns the run at once. ``gamma`` None: the
        model's, ``device`` None: TrainConfig's; ``surface`` False: the result is shown in the slice views only
        (a big segment's closed surface costs seconds a frame on a software renderer). The previous
        prediction (or a running one) is removed first; :meth:`poll_apply` takes the result in."""
        from .process import apply_model_process

        self.remove_prediction()
        self.apply_run = apply_model_process(scene, model_dir, volume_node, gamma=gamma,
                                             device=device or TrainConfig().device, modality=modality,
                                             surface=surface)
        return self.apply_run

    def poll_apply(self):
        """The running (or last) apply run after reading its new events, or None; once it is done its
        segmentation node is :attr:`prediction` (``run.output`` = (node, warnings))."""
        run = self.apply_run
        if run is not None:
            run.poll()
            if run.state == TrainingState.DONE and run.output is not None and self.prediction is None:
                self.prediction = run.output[0]
        return run

    @property
    def applying(self) -> bool:
        return self.apply_run is not None and not self.apply_run.finished

    def remove_prediction(self) -> None:
        """Cancel a running apply and take the last prediction's segmentation node out of its scene."""
        if self.applying:
            self.apply_run.cancel()
        self.apply_run = None
        node, self.prediction = self.prediction, None
        scene = node.GetScene() if node is not None else None
        if scene is not None and scene.IsNodePresent(node):
            scene.RemoveNode(node)


def shown(value) -> str:
    """A setting's value as a form shows it: ``"auto"`` for None (planned), ``D,H,W`` for a tuple."""
    if value is None:
        return "auto"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def free_folder(folder: Path) -> Path:
    """``folder`` if it is missing or empty, else the first free ``<folder>-2``, ``-3``...: a new training
    never overwrites (or refuses because of) an earlier model."""
    candidate, n = folder, 2
    while candidate.exists() and any(candidate.iterdir()):
        candidate, n = folder.with_name(f"{folder.name}-{n}"), n + 1
    return candidate


def model_warnings(model_dir: str | Path, volume_node, modality: str | None = None) -> list[str]:
    """Reasons to distrust a model on this volume: another modality, or a spacing far from the one it was
    trained at (model.json's ``training_spacing``, median over the training cases)."""
    from weaknet.checkpoint import read_model_json

    info = read_model_json(Path(model_dir))
    out = []
    trained = info.get("modality")
    if modality and trained and normalize_modality(modality) != trained:
        out.append(f"the model was trained on {trained} images, this volume is {normalize_modality(modality)}: "
                   "expect a poor segmentation")
    model_spacing = info.get("training_spacing") or info.get("spacing")
    if model_spacing:
        spacing = np.asarray(nodes.volume_geometry(volume_node).spacing)
        ratio = spacing / np.asarray(model_spacing, dtype=float)
        if np.any(ratio > SPACING_TOLERANCE) or np.any(ratio < 1 / SPACING_TOLERANCE):
            out.append("the model was trained at spacing (" + ", ".join(f"{s:.2f}" for s in model_spacing) +
                       ") mm, this volume has (" + ", ".join(f"{s:.2f}" for s in spacing) +
                       ") mm: it is resampled, expect a coarser result")
    return out


def apply_model(scene, model_dir: str | Path, volume_node, gamma: float | None = None, device: str = "auto",
                modality: str | None = None, name: str | None = None):
    """Segment a volume node with a trained model → (new segmentation node, warnings).

    The segmentation holds one segment: U-Net 1's foreground probability thresholded at ``gamma`` (default:
    the model's), on the volume's own grid. Raises :class:`InputError` for a missing or unreadable model.
    """
    from weaknet.predict import predict_volume

    warnings = model_warnings(model_dir, volume_node, modality)
    mask, _ = predict_volume(model_dir, nodes.node_volume(volume_node), gamma=gamma, device=device)
    return add_prediction(scene, model_dir, volume_node, mask, name), warnings


def add_prediction(scene, model_dir: str | Path, volume_node, mask: Volume, name: str | None = None,
                   segmentation_node=None, segment_name: str | None = None, surface: bool = True):
    """A model's mask (on the volume's grid) as a segment, shown in 3D too (``surface``; False: the slice views
    only, no closed surface is built): by default in a new segmentation
    node, in one segment named after the model's label. With ``segmentation_node`` (the user's own) the mask
    goes into its segment called ``segment_name`` (default: the label): an existing one keeps its ID, colour
    and terminology and only its voxels are replaced; other segments are untouched. Returns the node."""
    from weaknet.checkpoint import read_model_json

    seg = segmentation_node
    if seg is None:
        seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or f"{volume_node.GetName()} WeakNet")
        seg.CreateDefaultDisplayNodes()
        seg.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    label = segment_name or read_model_json(Path(model_dir)).get("labels", {}).get("1", "foreground")
    existing = seg.GetSegmentation().GetSegmentIdBySegmentName(label)
    nodes.set_segment(seg, existing or _free_segment_id(seg, "weaknet_prediction"), label, (0.3, 0.8, 0.4),
                      mask.array, mask.geometry)
    if surface:
        seg.CreateClosedSurfaceRepresentation()  # shown in 3D too
    elif seg.GetDisplayNode() is not None:
        seg.GetDisplayNode().SetVisibility3D(False)
    seg.SetAttribute("WeakNet.Model", str(Path(model_dir).resolve()))
    return seg


def _free_segment_id(segmentation_node, base: str) -> str:
    segmentation = segmentation_node.GetSegmentation()
    candidate, n = base, 2
    while segmentation.GetSegment(candidate) is not None:
        candidate, n = f"{base}_{n}", n + 1
    return candidate


def volume_stem(volume_node) -> str:
    """A volume's name in a training set: its file's stem (else its node name) made safe; the same after the
    volume is loaded again (an MRML node id is not)."""
    source = nodes.node_file(volume_node)
    return safe_stem(split_suffix(source.name)[0] if source is not None else volume_node.GetName(), "volume")


def suggest_modality(volume_node) -> tuple[str, str]:
    """A guess of a volume's modality, one of :data:`weaknet.dataset.MODALITIES`, and why (for the panel to
    show beside a choice the user can change): a TIFF file is microscopy (EM); intensities below −100 are
    CT's Hounsfield units (air is −1000); anything else is taken for MRI (non-negative intensities)."""
    source = nodes.node_file(volume_node)
    if source is not None and source.name.lower().endswith((".tif", ".tiff")):
        return "EM", "a TIFF file (microscopy)"
    lowest = float(np.min(nodes.volume_array(volume_node)))
    if lowest < -100:
        return "CT", f"intensities down to {lowest:.0f}, as CT's Hounsfield units"
    return "MRI", f"no intensity below {max(lowest, 0):.0f} (not Hounsfield units)"


def dataset_modality(folder: str | Path) -> tuple[str | None, int]:
    """(modality, number of volumes) of the training set in ``folder``; (None, 0) when there is none."""
    path = Path(folder) / DATASET_FILE
    if not path.is_file():
        return None, 0
    ds = read_dataset(path)
    return ds.modality, len(ds.training)


def relabel_modality(folder: str | Path, modality: str) -> int:
    """Change the modality recorded in the training set in ``folder`` (its images were of another one than
    chosen when it was made); returns its number of volumes. Raises :class:`InputError` when there is none."""
    path = Path(folder) / DATASET_FILE
    if not path.is_file():
        raise InputError(f"no training set in {Path(folder).name}/ to relabel")
    ds = read_dataset(path)
    write_dataset(path, replace(ds, modality=normalize_modality(modality)))
    return len(ds.training)
