"""From annotated volumes in a Slicer scene to a trained Weak-Net and back.

- :class:`TrainingSet` / :func:`build_training_set`: the templates of annotated volumes (the segmentation
  nodes an :class:`~WeakNetSlicerLib.session.AnnotationSession` tagged) → images + template masks on disk and
  a DATASET.json written with :func:`weaknet.dataset.write_dataset`.
- :class:`TrainingRun`: training in a background process (:class:`weaknet.background.TrainingJob`), polled
  for progress (a GUI timer calls :meth:`TrainingRun.poll`) and cancellable.
- :func:`apply_model`: a trained model on a volume node → a new segmentation node, with warnings when the
  model was trained on another modality or a very different voxel spacing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from weaknet.dataset import Case, normalize_modality, read_dataset, write_dataset
from weaknet.errors import InputError
from weaknet.volume import Volume, write_volume

from . import nodes
from .session import REF_VOLUME, AnnotationSession

DATASET_FILE = "DATASET.json"
SPACING_TOLERANCE = 1.5
"""A model is flagged when a volume's spacing differs from its training spacing by more than this factor."""


def annotated_volumes(scene) -> list[tuple[object, object]]:
    """(volume node, segmentation node) of every WeakNet template segmentation in the scene whose volume
    is still there and which holds at least one segment."""
    out = []
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")):
        seg = scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
        volume = seg.GetNodeReference(REF_VOLUME)
        if volume is not None and seg.GetSegmentation().GetNumberOfSegments() > 0:
            out.append((volume, seg))
    return out


class TrainingSet:
    """A training set folder: ``images/``, ``templates/`` and DATASET.json (existing entries are kept).

    modality: CT, MRI or EM (the model remembers it, and :func:`apply_model` warns on a mismatch).
    """

    def __init__(self, folder: str | Path, name: str = "weaknet", modality: str = "CT"):
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

    def add(self, volume_node, segmentation_node, segment_ids: list[str] | None = None) -> Case:
        """Add (or replace) one volume: its image and the union of its template segments (all, or
        ``segment_ids``) as a template mask. Raises :class:`InputError` when the templates are empty."""
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
        stem = _file_stem(volume_node)
        image_path = write_volume(image, self.folder / "images" / f"{stem}.nrrd")
        template_path = write_volume(Volume(mask, image.geometry), self.folder / "templates" / f"{stem}.nrrd")
        case = Case(image=image_path.resolve(), template=template_path.resolve())
        self.cases = [c for c in self.cases if c.image.resolve() != case.image] + [case]
        return case

    def add_session(self, session: AnnotationSession, object_names: list[str] | None = None) -> Case:
        """Add a session's volume with the templates of all (or the named) objects."""
        objects = [session.object(n) for n in object_names] if object_names else session.objects
        return self.add(session.volume_node, session.segmentation_node, [o.segment_id for o in objects])

    def write(self) -> Path:
        """Write DATASET.json; raises :class:`InputError` when no volume was added."""
        if not self.cases:
            raise InputError("the training set is empty: annotate a volume (at least 4 points on an object) and "
                             "add it to the training set first")
        return write_dataset(self.folder / DATASET_FILE, name=self.name, modality=self.modality,
                             training=self.cases)


def build_training_set(scene, folder: str | Path, modality: str = "CT", name: str = "weaknet") -> Path:
    """Write a training set of every annotated volume in the scene; returns the DATASET.json path.

    Raises :class:`InputError` when the scene has no annotated volume (no template with voxels).
    """
    training = TrainingSet(folder, name, modality)
    skipped = []
    for volume, seg in annotated_volumes(scene):
        try:
            training.add(volume, seg)
        except InputError as exc:
            skipped.append(str(exc))
    if not training.cases:
        raise InputError("no annotated volume in the scene: add an object and place at least 4 points on its "
                         "surface before training" + (f" ({'; '.join(skipped)})" if skipped else ""))
    return training.write()


@dataclass
class TrainingRun:
    """Background training of a DATASET.json into ``output_dir``; call :meth:`poll` from a GUI timer.

    ``state``: "running" | "done" | "cancelled" | "failed"; ``fraction`` 0–1; ``message`` one line for the
    panel; ``model_dir`` once done; ``events`` every progress dict received so far.
    """

    dataset: Path
    output_dir: Path
    config: object = None
    job: object = None
    state: str = "starting"
    fraction: float = 0.0
    message: str = "starting training..."
    model_dir: Path | None = None
    events: list[dict] = field(default_factory=list)
    _total_steps: int = 0

    def start(self) -> "TrainingRun":
        """Start the training process (returns at once)."""
        from weaknet.background import TrainingJob

        self.job = TrainingJob(self.dataset, self.output_dir, self.config)
        self.job.start()
        self.state = "running"
        return self

    def poll(self) -> list[dict]:
        """Read the events that arrived since the last poll and update state/fraction/message."""
        if self.job is None:
            return []
        new = list(self.job.poll())
        for event in new:
            self._apply(event)
        self.events += new
        ended = {"finished": "done", "cancelled": "cancelled", "failed": "failed"}.get(self.job.state)
        if self.state == "running" and ended:  # the process ended without its final event
            self._apply({"event": {"done": "done", "cancelled": "cancelled"}.get(ended, "error"),
                         "model_dir": str(self.output_dir), "message": self.job.error or "see the log"})
        return new

    def cancel(self) -> None:
        """Ask the training process to stop (it stops within one step; :meth:`poll` reports "cancelled")."""
        if self.job is not None and self.state == "running":
            self.job.cancel()
            self.message = "cancelling..."

    @property
    def finished(self) -> bool:
        return self.state in ("done", "cancelled", "failed")

    def _apply(self, e: dict) -> None:
        kind = e.get("event")
        if kind == "start":
            self._total_steps = max(1, int(e.get("epochs", 1)) * int(e.get("steps_per_epoch", 1)))
            self.message = f"training: {e.get('epochs')} epochs of {e.get('steps_per_epoch')} steps"
        elif kind == "step" and self._total_steps:
            done = (int(e.get("epoch", 1)) - 1) * int(e.get("steps", 1)) + int(e.get("step", 0))
            self.fraction = min(1.0, done / self._total_steps)
            self.message = f"epoch {e.get('epoch')} step {e.get('step')}/{e.get('steps')}: loss {e.get('loss', 0):.4g}"
        elif kind == "epoch":
            iou = e.get("val_iou")
            self.message = f"epoch {e.get('epoch')} done: loss {e.get('loss', 0):.4g}" + \
                (f", validation IoU {iou:.3f}" if iou is not None else "")
        elif kind == "done":
            self.state, self.fraction = "done", 1.0
            self.model_dir = Path(e.get("model_dir", self.output_dir))
            self.message = f"model ready: {self.model_dir}"
        elif kind == "cancelled":
            self.state = "cancelled"
            self.message = f"training cancelled (after epoch {e.get('epoch', '?')})"
        elif kind in ("error", "failed"):
            self.state = "failed"
            self.message = "training failed: " + str(e.get("message") or e.get("error") or "see the log")


def start_training(dataset: str | Path, output_dir: str | Path, **config) -> TrainingRun:
    """Start background training; ``config`` are :class:`weaknet.train.TrainConfig` fields (lambda_, gamma,
    boundary_distance, epochs, device, ...). Raises :class:`InputError` for a missing/empty dataset, a bad
    setting or an absent device (e.g. cuda without a GPU) before any process starts."""
    from weaknet.device import resolve_device
    from weaknet.train import TrainConfig

    ds_path = Path(dataset)
    read_dataset(ds_path)  # clear errors now rather than later in the background process
    cfg = TrainConfig(**config)
    cfg.validate()
    resolve_device(cfg.device)
    return TrainingRun(ds_path, Path(output_dir), cfg).start()


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
    from weaknet.checkpoint import read_model_json
    from weaknet.predict import predict_volume

    warnings = model_warnings(model_dir, volume_node, modality)
    volume = nodes.node_volume(volume_node)
    mask, _ = predict_volume(model_dir, volume, gamma=gamma, device=device)
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or f"{volume_node.GetName()} WeakNet")
    seg.CreateDefaultDisplayNodes()
    seg.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    label = read_model_json(Path(model_dir)).get("labels", {}).get("1", "foreground")
    nodes.set_segment(seg, "weaknet_prediction", label, (0.3, 0.8, 0.4), mask.array, volume.geometry)
    seg.CreateClosedSurfaceRepresentation()  # shown in 3D too
    seg.SetAttribute("WeakNet.Model", str(Path(model_dir).resolve()))
    return seg, warnings


def _file_stem(volume_node) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", volume_node.GetName()).strip("_") or "volume"
    return f"{base}_{re.sub(r'[^A-Za-z0-9]+', '', volume_node.GetID())}"
