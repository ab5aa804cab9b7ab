"""The page's training panel: training set, background training with live progress, applying a model.

Everything goes through WeakNetSlicerLib.training (the same code as the desktop module): ``TrainingSet``
(``<data root>/training/DATASET.json``), ``start_training`` (a :class:`weaknet.background.TrainingJob`
process, polled here every 0.5 s) and ``apply_model`` (a new segmentation node beside the templates).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from weaknet.errors import InputError

TRAINING = "training"
MODELS = "models"
POLL_S = 0.5
LOSS_POINTS = 200  # the loss curve keeps at most this many (evenly thinned) values


class TrainingPanel:
    """State it writes: ``train_cases``, ``train_state`` (idle|running|done|cancelled|failed),
    ``train_progress`` (0–100), ``train_message``, ``loss_curve`` (losses of the training steps),
    ``models`` (model folders under the data root), ``model_choice``, ``prediction_message``."""

    def __init__(self, app):
        self.app = app
        self.state = app.state
        self.run = None
        self.prediction_node = None
        s = self.state
        s.train_modality = "CT"
        s.train_modalities = ["CT", "MRI", "EM"]
        s.train_lambda = 1e-4
        s.train_gamma = 0.5
        s.train_epochs = 10
        s.train_steps = 20
        s.train_patch = 48
        s.train_device = "auto"
        s.train_devices = ["auto", "cpu", "cuda"]
        s.train_cases = self._count_cases()
        s.train_state = "idle"
        s.train_progress = 0
        s.train_message = ""
        s.loss_curve = []
        s.models = self.list_models()
        s.model_choice = s.models[-1] if s.models else None
        s.prediction_message = ""

    # ------------------------------------------------------------------------------------ training set
    def dataset_path(self) -> Path:
        return self.app.data_root.resolve(f"{TRAINING}/DATASET.json")

    def _count_cases(self) -> int:
        from weaknet.dataset import read_dataset

        path = self.dataset_path()
        try:
            return len(read_dataset(path).training) if path.is_file() else 0
        except InputError:
            return 0

    def add_to_training_set(self) -> None:
        """Add the open volume with its templates (all objects) to ``<data root>/training``."""
        from WeakNetSlicerLib.training import TrainingSet

        session = self.app.annotation.require()
        training = TrainingSet(self.dataset_path().parent, modality=self.state.train_modality)
        training.add_session(session)
        training.write()
        self.state.train_cases = len(training.cases)
        self.app.inform(f"training set: {len(training.cases)} volume(s) in {TRAINING}/")

    # --------------------------------------------------------------------------------------- training
    def start(self) -> None:
        """Train on the training set in a background process; progress arrives by polling."""
        from WeakNetSlicerLib.training import start_training

        if self.run is not None and not self.run.finished:
            raise InputError("a training is already running; cancel it first")
        if not self.dataset_path().is_file():
            raise InputError("the training set is empty: annotate a volume and press 'Add to training set'")
        s = self.state
        output = self.app.data_root.resolve(f"{MODELS}/model-{time.strftime('%Y%m%d-%H%M%S')}")
        patch = int(s.train_patch)
        self.run = start_training(self.dataset_path(), output, lambda_=float(s.train_lambda),
                                  gamma=float(s.train_gamma), epochs=int(s.train_epochs),
                                  steps_per_epoch=int(s.train_steps), patch=(patch, patch, patch),
                                  device=str(s.train_device))
        with self.state:
            s.train_state, s.train_progress, s.loss_curve = "running", 0, []
            s.train_message = self.run.message
        from trame.app import asynchronous

        asynchronous.create_task(self._follow(self.run))

    def cancel(self) -> None:
        if self.run is None or self.run.finished:
            raise InputError("no training is running")
        self.run.cancel()
        self.state.train_message = self.run.message

    async def _follow(self, run) -> None:
        """Poll the training process and mirror it into the page until it ends."""
        losses: list[float] = []
        while True:
            await asyncio.sleep(POLL_S)
            try:
                events = run.poll()
            except Exception as exc:  # noqa: BLE001 - a dead child must not kill the poller silently
                run.state, run.message = "failed", f"training failed: {exc}"
                events = []
            losses += [float(e["loss"]) for e in events if e.get("event") == "step" and "loss" in e]
            with self.state:
                s = self.state
                s.train_state = run.state
                s.train_progress = round(100 * run.fraction, 1)
                s.train_message = run.message
                stride = max(1, len(losses) // LOSS_POINTS)
                s.loss_curve = losses[::stride]
                if run.finished:
                    s.models = self.list_models()
                    if run.state == "done" and run.model_dir is not None:
                        s.model_choice = self.app.data_root.relative(run.model_dir)
            if run.finished:
                return

    # ------------------------------------------------------------------------------------------ models
    def list_models(self) -> list[str]:
        """Model folders (holding model.json) under ``<data root>/models``, oldest first."""
        folder = self.app.data_root.resolve(MODELS)
        if not folder.is_dir():
            return []
        found = []
        for p in sorted(folder.glob("*/model.json")):
            try:
                found.append(self.app.data_root.relative(p.parent))  # resolves: a link out raises
            except ValueError:
                continue
        return found

    def apply(self) -> None:
        """Segment the open volume with the chosen model; shown beside the template (green)."""
        from WeakNetSlicerLib.training import apply_model

        session = self.app.annotation.require()
        if not self.state.model_choice:
            raise InputError("no model chosen: train one first (or copy one under models/)")
        model_dir = self.app.data_root.resolve(self.state.model_choice, must_exist=True)
        scene = self.app.slicer.scene
        self.remove_prediction()
        self.prediction_node, warnings = apply_model(scene, model_dir, session.volume_node,
                                                     gamma=float(self.state.train_gamma),
                                                     modality=self.state.train_modality)
        message = f"model {self.state.model_choice} applied (green)"
        self.state.prediction_message = "; ".join([message] + warnings)
        self.app.changed()

    def remove_prediction(self) -> None:
        node, self.prediction_node = self.prediction_node, None
        if node is not None and self.app.slicer.scene.IsNodePresent(node):
            self.app.slicer.scene.RemoveNode(node)
