"""The page's training panel over WeakNetSlicerLib's :class:`TrainingController` (the desktop module's too).

The form holds the text typed for each of :data:`~WeakNetSlicerLib.training.FORM_FIELDS` (``train_<field>``);
an empty field means :class:`weaknet.config.TrainConfig`'s default, shown as its placeholder — as in the
desktop panel. The training set is ``<data root>/training/``, models go to ``<data root>/models/model-<time>``;
the run is polled every 0.5 s.
"""

from __future__ import annotations

import asyncio
import time

from weaknet.config import DEVICES
from weaknet.dataset import MODALITIES
from weaknet.errors import InputError

TRAINING = "training"
MODELS = "models"
POLL_S = 0.5
LOSS_POINTS = 200  # the loss curve keeps at most this many (evenly thinned) values


def form_key(name: str) -> str:
    """The trame state key of a TrainConfig field in the form: ``train_<name>`` (``lambda_`` → train_lambda)."""
    return "train_" + name.rstrip("_")


class TrainingPanel:
    """State it writes: ``train_<field>`` (the form, "" = default), ``train_placeholders`` (the defaults by
    field), ``train_modality`` (None until chosen), ``train_cases``, ``train_state``
    (idle|running|done|cancelled|failed), ``train_progress`` (0–100), ``train_message``, ``loss_curve``,
    ``models`` (model folders under the data root), ``model_choice``; of applying a model: ``prediction_state``
    (idle|running|done|cancelled|failed), ``prediction_message``, ``prediction_present``, ``prediction_visible``."""

    def __init__(self, app):
        from WeakNetSlicerLib.training import TrainingController

        self.app = app
        self.state = app.state
        self.controller = TrainingController()
        s = self.state
        s.train_modality = None
        s.train_modalities = list(MODALITIES)
        s.train_placeholders = self.controller.placeholders()
        for name in s.train_placeholders:
            s[form_key(name)] = ""
        s.train_devices = list(DEVICES)
        s.train_cases = self.controller.count_cases(self.folder())
        s.train_state = str(self.controller.progress.state)
        s.train_progress = 0
        s.train_message = ""
        s.loss_curve = []
        s.models = self.list_models()
        s.model_choice = s.models[-1] if s.models else None
        s.prediction_message = ""
        s.prediction_state = "idle"
        s.prediction_present = False
        s.prediction_visible = True
        self._started = 0.0

    def folder(self):
        return self.app.data_root.resolve(TRAINING)

    def overrides(self) -> dict:
        """The form's values as TrainConfig overrides (an empty field: the default)."""
        return {name: self.state[form_key(name)] for name in self.state.train_placeholders}

    def add_to_training_set(self) -> None:
        """Add the open volume with its templates (all objects) to ``<data root>/training``."""
        count = self.controller.add_to_training_set(self.folder(), self.app.annotation.require(),
                                                    self.state.train_modality)
        self.state.train_cases = count
        self.app.inform(f"training set: {count} volume(s) in {TRAINING}/")

    def start(self) -> None:
        """Train on the training set in the background; progress arrives by polling."""
        output = self.app.data_root.resolve(f"{MODELS}/model-{time.strftime('%Y%m%d-%H%M%S')}")
        progress = self.controller.start(self.folder(), output, self.controller.parse(self.overrides()))
        self._show(progress)
        from trame.app import asynchronous

        asynchronous.create_task(self._follow())

    def cancel(self) -> None:
        self.controller.cancel()
        self.state.train_message = self.controller.progress.message

    async def _follow(self) -> None:
        """Poll the run and mirror it into the page until it ends."""
        while True:
            await asyncio.sleep(POLL_S)
            progress = self.controller.poll()
            self._show(progress)
            if progress.state.finished:
                return

    def _show(self, progress) -> None:
        with self.state:
            s = self.state
            s.train_state = str(progress.state)
            s.train_progress = round(100 * progress.fraction, 1)
            s.train_message = progress.message
            stride = max(1, len(progress.losses) // LOSS_POINTS)
            s.loss_curve = progress.losses[::stride]
            if progress.state.finished:
                s.models = self.list_models()
                if progress.model_dir is not None and progress.state == "done":
                    s.model_choice = self.app.data_root.relative(progress.model_dir)

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
        """Segment the open volume with the chosen model in a child process (``weaknet predict``): returns at
        once, the page stays responsive; the run is polled and the result shown in the slice views (green,
        no 3D surface: a big segment's surface costs seconds a frame on a software renderer)."""
        session = self.app.annotation.require()
        if not self.state.model_choice:
            raise InputError("no model chosen: train one first (or copy one under models/)")
        if self.controller.applying:
            raise InputError("a model is already being applied; cancel it first")
        model_dir = self.app.data_root.resolve(self.state.model_choice, must_exist=True)
        chosen = self.controller.parse({"gamma": self.state[form_key("gamma")],
                                        "device": self.state[form_key("device")]})
        self.controller.start_apply(self.app.slicer.scene, model_dir, session.volume_node, gamma=chosen["gamma"],
                                    device=chosen["device"], modality=self.state.train_modality, surface=False)
        self._started = time.monotonic()
        self._show_apply()
        from trame.app import asynchronous

        asynchronous.create_task(self._follow_apply())

    def cancel_apply(self) -> None:
        if not self.controller.applying:
            raise InputError("no model is being applied")
        self.remove_prediction()

    async def _follow_apply(self) -> None:
        run = self.controller.apply_run
        while run is self.controller.apply_run and run is not None:
            await asyncio.sleep(POLL_S)
            if run is not self.controller.apply_run:
                return
            self.controller.poll_apply()
            self._show_apply()
            if run.finished:
                self.app.changed()
                return

    def _show_apply(self) -> None:
        """Mirror the apply run into ``prediction_state``, ``prediction_message`` and ``prediction_present``."""
        run, node = self.controller.apply_run, self.controller.prediction
        with self.state:
            s = self.state
            s.prediction_state = str(run.state) if run is not None else "idle"
            s.prediction_present = node is not None
            if node is not None:
                self.set_prediction_visible(s.prediction_visible)
            name = self.state.model_choice
            if run is None:
                s.prediction_message = ""
            elif run.state == "running":
                s.prediction_message = f"applying {name}: {run.message} ({time.monotonic() - self._started:.0f} s)"
            elif run.state == "done":
                warnings = run.output[1] if run.output else []
                s.prediction_message = "; ".join([f"model {name} applied (green) in "
                                                  f"{time.monotonic() - self._started:.0f} s"] + list(warnings))
            else:
                s.prediction_message = f"apply {run.state}: {run.error or run.message}"

    def set_prediction_visible(self, visible: bool) -> None:
        """Show or hide the prediction in the views (it stays in the scene)."""
        node = self.controller.prediction
        display = node.GetDisplayNode() if node is not None else None
        if display is not None and bool(display.GetVisibility()) != bool(visible):
            display.SetVisibility(bool(visible))
            self.app.changed()

    def remove_prediction(self) -> None:
        """Cancel a running apply and take the prediction out of the scene."""
        had = self.controller.prediction is not None or self.controller.applying
        self.controller.remove_prediction()
        self.state.prediction_present = False
        if had:
            self.state.prediction_state = "idle"
            self.state.prediction_message = ""
            self.app.changed()
