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
from weaknet.dataset import MODALITIES, normalize_modality
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
    field), ``train_modality`` (guessed from each opened volume, ``train_modality_hint`` says why), ``train_set``
    (the set's folder, ``training`` or under it) with ``train_sets``, ``train_set_info`` and ``train_cases``,
    ``modality_conflict(_visible)`` (the dialog when the set holds another modality), ``train_state``
    (idle|running|done|cancelled|failed), ``train_progress`` (0–100), ``train_message``, ``loss_curve``,
    ``models`` (model folders under the data root), ``model_choice``; of applying a model: ``prediction_state``
    (idle|running|done|cancelled|failed), ``prediction_message``, ``prediction_present``, ``prediction_visible``;
    of starting an object from the model: ``proposal_state`` (the same states) and ``proposal_message``."""

    def __init__(self, app):
        from WeakNetSlicerLib.training import TrainingController

        self.app = app
        self.state = app.state
        self.controller = TrainingController()
        s = self.state
        s.train_modality = None
        s.train_modality_hint = ""
        s.train_modalities = list(MODALITIES)
        s.train_set = TRAINING
        s.train_sets = self.list_sets()
        s.modality_conflict = ""  # why the chosen modality does not fit the chosen set (a dialog asks)
        s.modality_conflict_visible = False
        s.train_placeholders = self.controller.placeholders()
        for name in s.train_placeholders:
            s[form_key(name)] = ""
        s.train_devices = list(DEVICES)
        s.train_cases = 0
        s.train_set_info = ""
        self.set_changed()
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
        s.proposal_state = "idle"
        s.proposal_message = ""
        self.proposal_run = None
        self._started = 0.0
        self._proposal_started = 0.0

    def folder(self):
        """The chosen training set's folder: ``training/`` or a folder under it (``state.train_set``)."""
        relative = str(self.state.train_set or TRAINING).strip().strip("/")
        if relative.split("/", 1)[0] != TRAINING:
            raise InputError(f"{relative!r}: a training set lives in {TRAINING}/ or a folder under it, "
                             f"e.g. {TRAINING}/MRI")
        return self.app.data_root.resolve(relative)

    def list_sets(self) -> list[str]:
        """``training`` and the folders under it that hold a training set (relative to the data root)."""
        root = self.app.data_root.resolve(TRAINING)
        found = [TRAINING] + [self.app.data_root.relative(p.parent) for p in sorted(root.glob("*/DATASET.json"))]
        return list(dict.fromkeys(found))

    def set_changed(self) -> None:
        """Show the chosen set's size and modality (``train_cases``, ``train_set_info``)."""
        from WeakNetSlicerLib.training import dataset_modality

        try:
            modality, count = dataset_modality(self.folder())
        except InputError as exc:
            modality, count = None, 0
            self.state.train_set_info = str(exc)
        else:
            self.state.train_set_info = f"{count} volume(s), {modality}" if modality else "new (empty)"
        self.state.train_cases = count

    def volume_opened(self, volume_node) -> None:
        """Pre-select the modality guessed from the newly opened volume (the user can change it)."""
        from WeakNetSlicerLib.training import suggest_modality

        modality, why = suggest_modality(volume_node)
        with self.state:
            self.state.train_modality = modality
            self.state.train_modality_hint = f"{modality} guessed: {why}; change it if wrong"

    def overrides(self) -> dict:
        """The form's values as TrainConfig overrides (an empty field: the default)."""
        return {name: self.state[form_key(name)] for name in self.state.train_placeholders}

    def add_to_training_set(self) -> None:
        """Add the open volume with its templates (all objects) to the chosen set; when the set holds another
        modality, ask first (``modality_conflict_visible``): relabel the set, or start a new one."""
        from WeakNetSlicerLib.training import dataset_modality

        folder, chosen = self.folder(), self.state.train_modality
        existing, count = dataset_modality(folder)
        if chosen and existing and normalize_modality(chosen) != existing:
            name = self.app.data_root.relative(folder)
            with self.state:
                self.state.modality_conflict = (f"{name}/ holds {count} {existing} volume(s); this one is "
                                                f"{normalize_modality(chosen)}.")
                self.state.modality_conflict_visible = True
            return
        self._add(folder)

    def _add(self, folder) -> None:
        count = self.controller.add_to_training_set(folder, self.app.annotation.require(), self.state.train_modality)
        name = self.app.data_root.relative(folder)
        with self.state:
            self.state.train_sets = self.list_sets()
            self.set_changed()
        self.app.inform(f"training set: {count} volume(s) in {name}/")

    def resolve_conflict(self, how: str) -> None:
        """The user's answer to the modality dialog: ``relabel`` (the set's images were of the chosen modality
        all along) or ``new`` (add to ``training/<modality>`` instead)."""
        from WeakNetSlicerLib.training import relabel_modality

        self.state.modality_conflict_visible = False
        modality = normalize_modality(self.state.train_modality)
        if how == "relabel":
            relabel_modality(self.folder(), modality)
        else:
            self.state.train_set = f"{TRAINING}/{modality}"
        self._add(self.folder())

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
        """Model folders under ``<data root>/models`` that can be applied (model.json and weights: a run
        cancelled before its first epoch ended leaves only model.json), oldest first."""
        from weaknet.checkpoint import MODEL_JSON, WEIGHTS

        folder = self.app.data_root.resolve(MODELS)
        if not folder.is_dir():
            return []
        found = []
        for p in sorted(q for q in folder.glob(f"*/{MODEL_JSON}") if (q.parent / WEIGHTS).is_file()):
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

    def start_from_model(self) -> None:
        """Run the chosen model on the open volume in a child process and start an object from its proposal
        (:meth:`~WeakNetSlicerLib.annotation.AnnotationController.start_from_model`; the active object while it
        is empty, else a new one): returns at once, the run is polled, and once done the object's template
        shows; the points clicked on it then correct it."""
        if self.proposal_running:
            raise InputError("the model is already proposing an object; wait until it is done")
        model = self.state.model_choice
        model_dir = self.app.data_root.resolve(model, must_exist=True) if model else None
        chosen = self.controller.parse({"gamma": self.state[form_key("gamma")],
                                        "device": self.state[form_key("device")]})
        self.proposal_run = self.app.annotation.controller.start_from_model(
            model_dir, gamma=chosen["gamma"], device=chosen["device"], modality=self.state.train_modality)
        self._proposal_started = time.monotonic()
        self._show_proposal()
        from trame.app import asynchronous

        asynchronous.create_task(self._follow_proposal())

    def cancel_proposal(self) -> None:
        """Stop a running Start from model: its child process ends and no object is proposed (the objects and
        their points stay as they were)."""
        if not self.proposal_running:
            raise InputError("the model is not proposing an object")
        self.proposal_run.cancel()
        self._show_proposal()

    @property
    def proposal_running(self) -> bool:
        return self.proposal_run is not None and not self.proposal_run.finished

    def stop(self) -> None:
        """End every model process (a training, an apply, a proposal) before the server exits."""
        self.controller.stop()
        if self.proposal_running:
            self.proposal_run.cancel()

    async def _follow_proposal(self) -> None:
        run = self.proposal_run
        while run is self.proposal_run and not run.finished:
            await asyncio.sleep(POLL_S)
            run.poll()  # once done, the object is proposed here (on the server's event loop)
            self._show_proposal()
        self.app.changed()

    def _show_proposal(self) -> None:
        """Mirror the proposal run into ``proposal_state`` and ``proposal_message``."""
        run, name = self.proposal_run, self.state.model_choice
        elapsed = time.monotonic() - self._proposal_started
        with self.state:
            self.state.proposal_state = str(run.state)
            if run.state == "running":
                self.state.proposal_message = f"{name} is proposing an object: {run.message} ({elapsed:.0f} s)"
            elif run.state == "done":
                self.state.proposal_message = (f"{run.output.name} started from {name} in {elapsed:.0f} s: click "
                                               "its surface where it is wrong to correct it")
            else:
                self.state.proposal_message = f"start from model {run.state}: {run.error or run.message}"

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
