"""WeakNet for 3D Slicer: click sparse points on an organ's surface, watch an Active Surface template follow
them live, collect templates into a training set, train Weak-Net in a separate process and apply the model.

Module (Slicer's scripted-module pattern): parameter node (typed, saved with the scene), a thin Widget that
only wires the .ui to the Logic, a Logic that delegates to the MRML bridge ``WeakNetSlicerLib`` (the same
code the browser app and the headless tests drive), and a ScriptedLoadableModuleTest.
Python dependencies (torch, weaknet, MONAI) are installed on first use, never vtk or SimpleITK. Training
and inference run as ``PythonSlicer -m weaknet train|predict`` child processes (``WeakNetSlicerLib.process``),
polled by a QTimer; Slicer 5.10 or later (Python 3.12, numpy 2.0).
"""

import importlib
import importlib.util
import pathlib

import qt
import vtk

import slicer
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

MODULE_DIR = pathlib.Path(__file__).resolve().parent
SAMPLE_NAME = "WeakNetPhantom"
TORCH_REQUIREMENT = ">=2.8"
"""The torch PyTorch Utils installs: what the MONAI release WeakNet is tested with (1.6) requires."""
POLL_INTERVAL_MS = 500
REFINE_DELAY_MS = 30
"""A template's refinement after a click (``AnnotationSession.later``) is polled this often on the GUI thread;
it runs on a worker thread meanwhile."""


#
# WeakNetSlicer
#


class WeakNetSlicer(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("WeakNet")
        self.parent.categories = [_("Segmentation")]
        self.parent.dependencies = ["Markups", "Segmentations"]
        self.parent.contributors = ["WeakNet developers"]
        self.parent.helpText = _("""
Truly weakly-supervised 3D segmentation. Pick a volume, add an object and click points on its surface:
an Active Surface template follows your clicks in the slice views and in 3D. Add annotated volumes to a
training set, train Weak-Net in the background, then apply the model to new volumes.
""")
        self.parent.acknowledgementText = _("""
Built on 3D Slicer's scripted module template, MONAI and PyTorch.
""")
        slicer.app.connect("startupCompleted()", registerSampleData)


#
# Sample data: a phantom built on first use (nothing is downloaded)
#


def registerSampleData():
    """Register the WeakNet phantom in the Sample Data module. Nothing is downloaded: the source has no URIs
    (empty lists of equal length, as SampleDataSource requires) and a custom downloader builds the phantom."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="WeakNet",
        sampleName=SAMPLE_NAME,
        uris=[],
        fileNames=[],
        nodeNames=[],
        thumbnailFileName=str(MODULE_DIR / "Resources" / "Icons" / "WeakNetSlicer.png"),
        customDownloader=loadSamplePhantom,
    )


def loadSamplePhantom(source=None):
    """Sample Data's custom downloader: the phantom volume node (``source``, the SampleDataSource, unused)."""
    return WeakNetSlicerLogic().loadSamplePhantom()


#
# WeakNetSlicerParameterNode
#


@parameterNodeWrapper
class WeakNetSlicerParameterNode:
    """What the panel shows, saved with the scene.

    inputVolume - volume being annotated; points - the current object's clicked points;
    templates - the volume's template segmentation; objectName - name for the next new object;
    autosaveDirectory - clicks (.mrk.json) and templates (.seg.nrrd) go to <folder>/<volume stem>/;
    modality, trainingDirectory - the training set (modality: one of weaknet.dataset.MODALITIES, "" until
    chosen); modelPath - a trained model folder (with model.json); outputSegmentation, outputSegmentName -
    where "Apply model" writes (none: a new segmentation node; empty name: the model's label).
    The training settings are named as weaknet.config.TrainConfig's fields and hold the text typed; empty
    means TrainConfig's default (shown as the field's placeholder), so no default is repeated here.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    points: vtkMRMLMarkupsFiducialNode
    templates: vtkMRMLSegmentationNode
    objectName: str = "Object 1"
    autosaveDirectory: pathlib.Path = pathlib.Path.home() / "WeakNet" / "sessions"
    modality: str = ""
    trainingDirectory: pathlib.Path = pathlib.Path.home() / "WeakNet" / "training"
    lambda_: str = ""
    gamma: str = ""
    boundary_distance: str = ""
    epochs: str = ""
    steps_per_epoch: str = ""
    patch: str = ""
    device: str = ""
    modelPath: pathlib.Path = pathlib.Path.home() / "WeakNet" / "model"
    outputSegmentation: vtkMRMLSegmentationNode
    outputSegmentName: str = ""


#
# WeakNetSlicerWidget
#


class WeakNetSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: wiring between the .ui widgets, the parameter node and the Logic; no processing here.

    Every action runs inside ``slicer.util.tryWithErrorDisplay``, which shows the error and re-raises: what
    follows an action inside its ``with`` block happens only on success, and what must happen either way
    (button states) sits in ``finally``.
    """

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.processTimer = None
        self._reportedApplyRun = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/WeakNetSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = WeakNetSlicerLogic()
        WeakNetSlicerLogic.statusChanged = self.updateAnnotationStatus  # also when Esc or the toolbar end placing

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.addObjectButton.connect("clicked(bool)", self.onAddObject)
        self.ui.placeButton.connect("toggled(bool)", self.onPlaceToggled)
        self.ui.undoButton.connect("clicked(bool)", self.onUndoPoint)
        self.ui.redoButton.connect("clicked(bool)", self.onRedoPoint)
        self.ui.deletePointButton.connect("clicked(bool)", self.onDeletePoint)
        self.ui.suggestButton.connect("clicked(bool)", self.onSuggest)
        self.ui.clearButton.connect("clicked(bool)", self.onClearPoints)
        self.ui.priorButton.connect("toggled(bool)", self.onPriorToggled)
        # the current object's points: selecting a row jumps the slice views to it (Slicer's own list widget)
        self.pointList = slicer.qSlicerSimpleMarkupsWidget()
        self.pointList.setMRMLScene(slicer.mrmlScene)
        self.pointList.nodeSelectorVisible = False
        self.pointList.optionsVisible = False
        self.pointList.enterPlaceModeOnNodeChange = False
        self.pointList.jumpToSliceEnabled = True
        self.pointList.markupsPlaceWidget().setVisible(False)  # placing is the panel's own button (key P)
        self.ui.annotateCollapsibleButton.layout().addRow(self.pointList)
        self.ui.addToTrainingSetButton.connect("clicked(bool)", self.onAddToTrainingSet)
        self.ui.trainButton.connect("clicked(bool)", self.onTrain)
        self.ui.cancelTrainingButton.connect("clicked(bool)", self.onCancelTraining)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyModel)
        self.ui.startFromModelButton.connect("clicked(bool)", self.onStartFromModel)
        self.ui.cancelApplyButton.connect("clicked(bool)", self.onCancelApply)

        self.ui.modalityComboBox.addItems([""] + self.logic.modalities())
        for name, placeholder in self.logic.trainingPlaceholders().items():
            self.trainingEdit(name).placeholderText = placeholder

        self.processTimer = qt.QTimer()
        self.processTimer.setInterval(POLL_INTERVAL_MS)
        self.processTimer.connect("timeout()", self.onProcessTimer)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Slicer closes: stop polling, put the last templates on disk (the autosave writes them up to a second
        after a click) and end any training or inference process (no orphan keeps running)."""
        self.removeObservers()
        if self.processTimer:
            self.processTimer.stop()
        if WeakNetSlicerLogic.controller is not None:
            WeakNetSlicerLogic.controller.flush()
        if self.logic:
            self.logic.cancelTraining()
            self.logic.cancelApply()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
            self.updateButtons()

    def errorDisplay(self):
        """The context every action runs in: a failure is shown as one message, then re-raised."""
        return slicer.util.tryWithErrorDisplay(_("WeakNet: the action failed."), waitCursor=True)

    def trainingEdit(self, name: str):
        """The line edit of training setting ``name`` (a TrainConfig field: boundary_distance → boundaryDistance)."""
        first, *rest = name.rstrip("_").split("_")
        return getattr(self.ui, first + "".join(w.capitalize() for w in rest) + "LineEdit")

    def updateButtons(self, caller=None, event=None) -> None:
        p = self._parameterNode
        hasVolume = bool(p and p.inputVolume)
        hasPoints = bool(p and p.points and self.logic.isSessionObject(p.points))
        self.ui.addObjectButton.enabled = hasVolume
        self.ui.placeButton.enabled = hasPoints
        self.ui.undoButton.enabled = hasPoints
        self.ui.redoButton.enabled = hasPoints
        self.ui.deletePointButton.enabled = hasPoints
        self.ui.suggestButton.enabled = hasPoints
        self.ui.clearButton.enabled = hasPoints
        self.ui.priorButton.enabled = hasPoints
        self.pointList.setCurrentNode(p.points if hasPoints else None)
        self.ui.addToTrainingSetButton.enabled = hasVolume
        training, applying = self.logic.isTraining(), self.logic.isApplying()
        self.ui.trainButton.enabled = not training
        self.ui.cancelTrainingButton.enabled = training
        self.ui.applyButton.enabled = hasVolume and not applying
        self.ui.startFromModelButton.enabled = hasVolume and not applying and self.logic.hasModel(p.modelPath)
        self.ui.cancelApplyButton.enabled = applying
        self.updateAnnotationStatus()

    def updateAnnotationStatus(self, status=None) -> None:
        p = self._parameterNode
        info = self.logic.annotationStatus(p.inputVolume if p else None)
        self.ui.pointCountLabel.text = str(info.points)
        self.ui.effortLabel.text = _("{clicks} clicks over {objects} object(s)").format(
            clicks=info.clicks, objects=len(info.objects))
        self.ui.statusLabel.text = info.message
        self.ui.statusLabel.setStyleSheet("color: #c0392b" if info.level != "info" else "")
        self.syncButton(self.ui.placeButton, info.placing)  # place mode follows the interaction node too
        self.syncButton(self.ui.priorButton, info.prior > 0)

    @staticmethod
    def syncButton(button, checked: bool) -> None:
        """Show a checkable button's state (the controller's: place mode, the prior) without emitting
        toggled, so that showing it does not toggle it again."""
        if button.checked != checked:
            wasBlocked = button.blockSignals(True)
            button.checked = checked
            button.blockSignals(wasBlocked)

    def onAddObject(self) -> None:
        p = self._parameterNode
        with self.errorDisplay():
            markups = self.logic.addObject(p.inputVolume, p.objectName, p.autosaveDirectory)
            p.points = markups
            p.templates = self.logic.sessionFor(p.inputVolume).segmentation_node
            p.objectName = self.logic.nextObjectName(p.inputVolume)
            slicer.util.setSliceViewerLayers(background=p.inputVolume, fit=True)
            self.logic.setPlacing(markups, True)

    def onPlaceToggled(self, placing: bool) -> None:
        try:
            with self.errorDisplay():
                self.logic.setPlacing(self._parameterNode.points, placing)
        finally:
            self.updateAnnotationStatus()  # a failed toggle does not stay checked

    def onUndoPoint(self) -> None:
        with self.errorDisplay():
            self.logic.undo(self._parameterNode.points)

    def onRedoPoint(self) -> None:
        with self.errorDisplay():
            self.logic.redo(self._parameterNode.points)

    def onDeletePoint(self) -> None:
        """Delete the point selected in the list (else the last one); undoable."""
        row = self.pointList.tableWidget().currentRow()
        with self.errorDisplay():
            self.logic.deletePoint(self._parameterNode.points, row if row >= 0 else None)

    def onSuggest(self) -> None:
        """Jump the slice views to the first suggestion of where to click next."""
        with self.errorDisplay():
            r, a, s = self.logic.suggestion(self._parameterNode.points)
            slicer.modules.markups.logic().JumpSlicesToLocation(r, a, s, True)

    def onClearPoints(self) -> None:
        with self.errorDisplay():
            self.logic.clearPoints(self._parameterNode.points)

    def onPriorToggled(self, on: bool) -> None:
        """Fit the object from a shape prior of the earlier objects of its name (or without one again)."""
        try:
            with self.errorDisplay():
                self.logic.usePrior(self._parameterNode.points, on)
        finally:
            self.updateAnnotationStatus()  # a refused prior does not stay checked

    def onAddToTrainingSet(self) -> None:
        p = self._parameterNode
        with self.errorDisplay():
            count = self.logic.addToTrainingSet(p.inputVolume, p.trainingDirectory, p.modality)
            self.ui.trainingSetLabel.text = _("{count} volume(s) in the training set").format(count=count)

    def onTrain(self) -> None:
        p = self._parameterNode
        try:
            with self.errorDisplay():
                settings = {name: getattr(p, name) for name in self.logic.trainingPlaceholders()}
                self._poll(self.logic.startTraining(p.trainingDirectory, p.modelPath, settings),
                           self.ui.trainingProgressBar, self.ui.trainingStatusLabel)
        finally:
            self.updateButtons()

    def onApplyModel(self) -> None:
        p = self._parameterNode
        try:
            with self.errorDisplay():
                self._poll(self.logic.startApplyModel(p.modelPath, p.inputVolume, p.gamma, p.device, p.modality,
                                                      p.outputSegmentation, p.outputSegmentName),
                           self.ui.applyProgressBar, self.ui.applyStatusLabel)
        finally:
            self.updateButtons()

    def onStartFromModel(self) -> None:
        """Run the model on the volume, then start an object from its proposal (corrected by later clicks)."""
        p = self._parameterNode
        try:
            with self.errorDisplay():
                self._poll(self.logic.startFromModel(p.modelPath, p.inputVolume, p.gamma, p.device, p.modality,
                                                     p.autosaveDirectory),
                           self.ui.applyProgressBar, self.ui.applyStatusLabel)
        finally:
            self.updateButtons()

    def _poll(self, run, bar, label) -> None:
        """A run just started: reset its progress bar and status line, and poll it with the timer."""
        bar.value = 0
        label.text = run.message
        self.processTimer.start()

    def onProcessTimer(self) -> None:
        """Poll the training and inference processes into their progress bars and status lines."""
        try:
            training, applying = self.logic.pollRuns()
            if training is not None:
                self.ui.trainingProgressBar.value = int(round(100 * training.fraction))
                self.ui.trainingStatusLabel.text = training.message
                if training.state == "done" and training.model_dir is not None and self._parameterNode:
                    self._parameterNode.modelPath = pathlib.Path(training.model_dir)
            if applying is not None and applying is not self._reportedApplyRun:
                self.ui.applyProgressBar.value = int(round(100 * applying.fraction))
                self.ui.applyStatusLabel.text = applying.message
                if applying.finished:  # reported once
                    self._reportedApplyRun = applying
                    if applying.state == "done":
                        self.showApplyResult(applying.output)
        finally:
            if not (self.logic.isTraining() or self.logic.isApplying()):
                self.processTimer.stop()
                self.updateButtons()

    def showApplyResult(self, output) -> None:
        """A finished run: Apply model's (segmentation, warnings), or the object Start from model made (the
        panel then follows it: its points are the ones placed next)."""
        if not isinstance(output, tuple):
            self._parameterNode.points = output.markups_node
            self._parameterNode.templates = self.logic.sessionFor(self._parameterNode.inputVolume).segmentation_node
            self.ui.applyStatusLabel.text = _("'{name}' started from the model: place points to correct it").format(
                name=output.name)
            return
        segmentation, warnings = output
        self.ui.applyStatusLabel.text = "\n".join(warnings) or _("segmentation '{name}' added").format(
            name=segmentation.GetName())
        if warnings:
            slicer.util.warningDisplay("\n".join(warnings), windowTitle=_("WeakNet model"))

    def onCancelTraining(self) -> None:
        self.logic.cancelTraining()
        self.onProcessTimer()

    def onCancelApply(self) -> None:
        self.logic.cancelApply()
        self.onProcessTimer()


#
# WeakNetSlicerLogic
#


class WeakNetSlicerLogic(ScriptedLoadableModuleLogic):
    """Everything the panel does, usable from Slicer's Python console without the GUI.

    A thin adapter over the workflow layer ``WeakNetSlicerLib`` (AnnotationController, TrainingController;
    the browser app drives the same ones): one of each per Slicer process, shared by all Logic instances.
    """

    controller = None
    trainer = None
    applyRun = None
    statusChanged = None

    def getParameterNode(self):
        return WeakNetSlicerParameterNode(super().getParameterNode())

    # -- dependencies ------------------------------------------------------------------------------
    @classmethod
    def ensureDependencies(cls, training: bool = False) -> None:
        """Install what is missing on first use, after asking once: for annotation Resources/requirements.txt
        (and weaknet itself, without dependencies, when run from a source checkout; the extension ships it);
        for training also torch through the PyTorch Utils extension (``TORCH_REQUIREMENT``, the build for the
        machine's GPU), then Resources/requirements-training.txt constrained to the installed torch, so pip can
        never swap that build for another one. vtk and SimpleITK are Slicer's own and are never installed."""
        needed = ["scipy", "weaknet"] + (["torch", "monai", "safetensors", "tqdm"] if training else [])
        missing = [name for name in needed if importlib.util.find_spec(name) is None]
        if not missing:
            return
        pyTorchUtils = cls._pyTorchUtils() if "torch" in missing else None
        if not slicer.util.confirmOkCancelDisplay(
                _("WeakNet needs these Python packages in Slicer's Python: {names}. Install them now? This needs "
                  "internet access and may take a few minutes.").format(names=", ".join(missing)),
                windowTitle="WeakNet"):
            raise RuntimeError(_("missing Python packages: {names}; WeakNet installs them when you agree").format(
                names=", ".join(missing)))
        if pyTorchUtils is not None:
            if pyTorchUtils.installTorch(askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT) is None:
                raise RuntimeError(_("PyTorch was not installed; install it in the PyTorch Utils module"))
        resources = MODULE_DIR / "Resources"
        slicer.util.pip_install(["-r", str(resources / "requirements.txt")])
        if training:
            cls._pipInstallKeepingTorch(resources / "requirements-training.txt")
        if "weaknet" in missing:  # the extension ships weaknet; a source checkout has it next to the module
            source = MODULE_DIR.parent / "WeakNetLib"
            if not (source / "pyproject.toml").is_file():
                raise RuntimeError(_("the weaknet library was not found ({path}); reinstall the WeakNet extension")
                                   .format(path=source))
            slicer.util.pip_install(["--no-deps", str(source)])
        importlib.invalidate_caches()

    @staticmethod
    def _pyTorchUtils():
        """The PyTorch Utils logic (the PyTorch extension, which this extension depends on)."""
        try:
            import PyTorchUtils
        except ImportError:
            raise RuntimeError(_("WeakNet needs the 'PyTorch' extension: install it from the Extensions Manager, "
                                 "restart Slicer, and try again")) from None
        return PyTorchUtils.PyTorchUtilsLogic()

    @staticmethod
    def _pipInstallKeepingTorch(requirements: pathlib.Path) -> None:
        """pip-install a requirements file with the installed torch pinned (local version label included, e.g.
        ``2.8.0+cu126``): pip then either keeps that build or fails, and never replaces it."""
        import importlib.metadata
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            constraints = pathlib.Path(folder) / "torch-constraint.txt"
            constraints.write_text(f"torch=={importlib.metadata.version('torch')}\n", encoding="utf-8")
            slicer.util.pip_install(["-r", str(requirements), "-c", str(constraints)])

    # -- annotation --------------------------------------------------------------------------------
    @classmethod
    def annotation(cls, autosaveDirectory=None):
        """The annotation controller of this Slicer process (WeakNetSlicerLib.annotation, shared with the web
        app); ``autosaveDirectory`` becomes its autosave root (sessions go to <folder>/<volume stem>/)."""
        cls.ensureDependencies()
        from WeakNetSlicerLib.annotation import AnnotationController

        if cls.controller is None or cls.controller.scene is not slicer.mrmlScene:
            cls.controller = AnnotationController(slicer.mrmlScene, volumes_logic=slicer.modules.volumes.logic())
            # a click is answered at once; the rest shape's re-decision runs after the views showed it
            cls.controller.later = lambda work: qt.QTimer.singleShot(REFINE_DELAY_MS, work)
            cls.controller.add_listener(cls._onStatus)
        if autosaveDirectory:
            cls.controller.autosave_root = pathlib.Path(autosaveDirectory)
        return cls.controller

    def sessionFor(self, volumeNode, autosaveDirectory=None):
        """The annotation session of a volume node (resumed from the scene, reopened from its autosave folder,
        or new), made the current one."""
        if volumeNode is None:
            raise ValueError(_("pick a volume first"))
        return self.annotation(autosaveDirectory).open(volumeNode)

    def addObject(self, volumeNode, name, autosaveDirectory=None):
        """Add a target object to the volume's session; returns its markups node."""
        self.sessionFor(volumeNode, autosaveDirectory)
        return self.annotation().add_object(name or None).markups_node

    def nextObjectName(self, volumeNode) -> str:
        session = self.controller.sessions.get(volumeNode.GetID()) if self.controller and volumeNode else None
        return session.next_object_name() if session else "Object 1"

    def isSessionObject(self, markupsNode) -> bool:
        return self.controller is not None and self.controller.find(markupsNode) is not None

    def setPlacing(self, markupsNode, placing: bool) -> None:
        """Persistent place mode for the object's points (or back to view mode)."""
        self._select(markupsNode)
        self.controller.set_placing(placing)

    def undo(self, markupsNode) -> None:
        """Undo the last point edit of the object's volume (its points and the template shown with them)."""
        self._select(markupsNode)
        self.controller.undo()

    def redo(self, markupsNode) -> None:
        self._select(markupsNode)
        self.controller.redo()

    def deletePoint(self, markupsNode, index=None) -> None:
        """Remove control point ``index`` (default: the last) of the object's points (an undoable edit)."""
        self._select(markupsNode)
        count = markupsNode.GetNumberOfControlPoints()
        index = count - 1 if index is None else int(index)
        if not 0 <= index < count:
            raise ValueError(_("no point {number} to delete").format(number=index + 1))
        markupsNode.RemoveNthControlPoint(index)

    def suggestion(self, markupsNode):
        """Where to click next on the object's template: (R, A, S) mm of the first of the suggestions, which the
        views show as points of their own (AnnotationController.show_suggestions)."""
        self._select(markupsNode)
        return tuple(float(c) for c in self.controller.show_suggestions()[0])

    def clearPoints(self, markupsNode) -> None:
        self._select(markupsNode)
        self.controller.clear()

    def usePrior(self, markupsNode, on: bool = True) -> None:
        """Fit the object from a shape prior of the earlier objects of its name (AnnotationController.use_prior)."""
        self._select(markupsNode)
        self.controller.use_prior(on)

    def annotationStatus(self, volumeNode):
        """The volume's AnnotationStatus (message, level, points, total_points, clicks, objects, placing...)."""
        from WeakNetSlicerLib.annotation import IDLE

        if self.controller is None or volumeNode is None or volumeNode.GetID() not in self.controller.sessions:
            return IDLE
        self.controller.open(volumeNode)
        return self.controller.status()

    # -- training ----------------------------------------------------------------------------------
    @classmethod
    def training(cls):
        """The training controller of this Slicer process (WeakNetSlicerLib.training, shared with the web)."""
        cls.ensureDependencies(training=True)
        from WeakNetSlicerLib.training import TrainingController

        if cls.trainer is None:  # training runs as `PythonSlicer -m weaknet train` (WeakNetSlicerLib.process)
            cls.trainer = TrainingController()
        return cls.trainer

    def modalities(self) -> list:
        """The modalities a training set can hold (weaknet.dataset.MODALITIES)."""
        self.ensureDependencies()
        from weaknet.dataset import MODALITIES

        return list(MODALITIES)

    def trainingPlaceholders(self) -> dict:
        """The training settings the panel shows, by TrainConfig field name, each with its default as text
        ("auto": planned from the training set)."""
        self.ensureDependencies()
        from WeakNetSlicerLib.training import TrainingController

        return TrainingController.placeholders()

    def addToTrainingSet(self, volumeNode, trainingDirectory, modality) -> int:
        """Add the volume's templates to the training set folder; returns the number of volumes in it."""
        return self.training().add_to_training_set(trainingDirectory, self.sessionFor(volumeNode), modality)

    def startTraining(self, trainingDirectory, modelPath, settings: dict):
        """Train in a child process into ``modelPath`` (or ``<modelPath>-2``... when it holds a model);
        ``settings``: TrainConfig fields by name (None or "" = TrainConfig's default). Poll with
        :meth:`pollRuns`."""
        trainer = self.training()
        return trainer.start(trainingDirectory, modelPath, trainer.parse(settings))

    def pollTraining(self):
        """The run's TrainingProgress (state, fraction, message, losses, model_dir), or None before any run."""
        return self.trainer.poll() if self.trainer is not None and self.trainer.job is not None else None

    def cancelTraining(self) -> None:
        if self.trainer is not None and self.trainer.running:
            self.trainer.cancel()

    def isTraining(self) -> bool:
        return self.trainer is not None and self.trainer.running

    def startApplyModel(self, modelPath, volumeNode, gamma, device, modality, segmentationNode=None,
                        segmentName=""):
        """Segment the volume with a trained model in a child process (``weaknet predict``); ``gamma`` and
        ``device`` as typed in the panel (empty: the model's γ, the automatic device). Poll with
        :meth:`pollRuns`; once done the run's ``output`` is (segmentation node, warnings). The result goes into
        ``segmentationNode``'s segment ``segmentName`` (default: the model's label; an existing segment keeps
        its colour and terminology), or into a new segmentation node."""
        self.ensureDependencies(training=True)
        from WeakNetSlicerLib.process import apply_model_process

        if volumeNode is None:
            raise ValueError(_("pick a volume first"))
        if self.isApplying():
            raise ValueError(_("a model is already being applied; cancel it first"))
        typed = self.training().parse({"gamma": gamma, "device": device})  # empty: the model's γ, auto device
        WeakNetSlicerLogic.applyRun = apply_model_process(slicer.mrmlScene, modelPath, volumeNode,
                                                          modality=modality or None,
                                                          segmentation_node=segmentationNode,
                                                          segment_name=segmentName or None,
                                                          **{k: v for k, v in typed.items() if v is not None})
        return self.applyRun

    def startFromModel(self, modelPath, volumeNode, gamma, device, modality, autosaveDirectory=None):
        """Run a trained model on the volume in a child process (as Apply model) and, once done, start an
        object from its proposal (AnnotationController.start_from_model): the active object while it is empty,
        else a new one; the points placed on it afterwards correct it. ``gamma``/``device`` as typed (empty:
        the model's γ, the automatic device). Poll with :meth:`pollRuns`; once done the run's ``output`` is the
        object (its ``markups_node`` holds the correcting points)."""
        self.ensureDependencies(training=True)
        if self.isApplying():
            raise ValueError(_("a model is already being applied; cancel it first"))
        typed = self.training().parse({"gamma": gamma, "device": device})  # empty: the model's γ, auto device
        self.sessionFor(volumeNode, autosaveDirectory)
        WeakNetSlicerLogic.applyRun = self.controller.start_from_model(
            modelPath, modality=modality or None, **{k: v for k, v in typed.items() if v is not None})
        return self.applyRun

    @staticmethod
    def hasModel(modelPath) -> bool:
        """Whether ``modelPath`` holds a trained model (its model.json): Start from model is offered then."""
        if not modelPath or importlib.util.find_spec("weaknet") is None:
            return False
        from weaknet.checkpoint import MODEL_JSON

        return (pathlib.Path(modelPath) / MODEL_JSON).is_file()

    def cancelApply(self) -> None:
        if self.isApplying():
            self.applyRun.cancel()

    def isApplying(self) -> bool:
        return self.applyRun is not None and not self.applyRun.finished

    def pollRuns(self):
        """(training progress, inference run), each None before its first run: new progress lines read, and
        for a finished inference the segmentation added."""
        if self.applyRun is not None:
            self.applyRun.poll()
        return self.pollTraining(), self.applyRun

    # -- sample data -------------------------------------------------------------------------------
    def loadSamplePhantom(self):
        """Build a phantom CT volume (weaknet.phantoms) and add it to the scene (no download)."""
        self.ensureDependencies()
        from weaknet.phantoms import make_phantom
        from WeakNetSlicerLib.nodes import add_volume_node

        phantom = make_phantom("bean", "CT", size=(96, 96, 48), spacing=(0.8, 0.8, 2.0), seed=0)
        node = add_volume_node(slicer.mrmlScene, phantom.image, SAMPLE_NAME)
        slicer.util.setSliceViewerLayers(background=node, fit=True)
        return node

    # -- internals ---------------------------------------------------------------------------------
    def _select(self, markupsNode) -> None:
        """Make the session and object of ``markupsNode`` the current ones."""
        found = self.controller.find(markupsNode) if self.controller is not None and markupsNode else None
        if found is None:
            raise ValueError(_("these points do not belong to a WeakNet object: add an object first"))
        session, obj = found
        self.controller.open(session.volume_node)
        self.controller.select(obj.name)

    @classmethod
    def _onStatus(cls, status) -> None:
        if cls.statusChanged is not None:
            cls.statusChanged(status)


#
# WeakNetSlicerTest
#


class WeakNetSlicerTest(ScriptedLoadableModuleTest):
    """Runs inside desktop Slicer (Reload and Test, or ctest): drives the same bridge as the headless tests."""

    def setUp(self):
        slicer.mrmlScene.Clear()
        if WeakNetSlicerLogic.controller is not None:
            WeakNetSlicerLogic.controller.shutdown()
        WeakNetSlicerLogic.controller = None

    def runTest(self):
        self.setUp()
        self.test_LiveTemplate()
        self.setUp()
        self.test_BadInput()
        self.setUp()
        self.test_TrainAndApplyOutOfProcess()

    def _annotatedBean(self, logic):
        """(phantom, volume node, points LPS, markups, session, object): a bean clicked in one undoable batch."""
        from weaknet.coords import lps_to_ras

        phantom, volume, points = self._phantomWithPoints()
        markups = logic.addObject(volume, "bean")
        session, obj = logic.controller.find(markups)
        with session.batch():
            for p in points:
                markups.AddControlPoint(vtk.vtkVector3d(*lps_to_ras(p)))
        return phantom, volume, points, markups, session, obj

    def _phantomWithPoints(self):
        from weaknet.phantoms import make_phantom
        from weaknet.sampling import sample_surface_points
        from WeakNetSlicerLib.nodes import add_volume_node

        phantom = make_phantom("bean", "CT", size=(64, 64, 32), spacing=(0.9, 1.1, 2.5), seed=3, oblique=True)
        node = add_volume_node(slicer.mrmlScene, phantom.image, "phantom")
        return phantom, node, sample_surface_points(phantom.label.array, phantom.label.geometry, 20, seed=1)

    def test_LiveTemplate(self):
        self.delayDisplay("Live template on an oblique phantom")
        logic = WeakNetSlicerLogic()
        logic.ensureDependencies()
        from weaknet.template import fit_template

        phantom, volume, points, markups, session, obj = self._annotatedBean(logic)
        exported = session.template_mask(obj)
        reference = fit_template(points, phantom.image.geometry).mask
        self.assertEqual((exported != reference).sum(), 0)
        self.assertEqual(logic.annotationStatus(volume).points, 20)
        logic.undo(markups)  # the batch was one edit
        self.assertEqual(logic.annotationStatus(volume).points, 0)
        logic.redo(markups)
        self.assertEqual((session.template_mask(obj) != reference).sum(), 0)
        self.delayDisplay("Test passed")

    def test_BadInput(self):
        self.delayDisplay("Too few points, a point outside, a deleted node")
        logic = WeakNetSlicerLogic()
        from weaknet.coords import lps_to_ras

        phantom, volume, points = self._phantomWithPoints()
        markups = logic.addObject(volume, "bean")
        for p in points[:3]:
            markups.AddControlPoint(vtk.vtkVector3d(*lps_to_ras(p)))
        self.assertIn("at least 4", logic.annotationStatus(volume).message)
        outside = phantom.image.geometry.to_lps([[-30.0, 5.0, 5.0]])[0]
        markups.AddControlPoint(vtk.vtkVector3d(*lps_to_ras(outside)))
        self.assertIn("outside", logic.annotationStatus(volume).message)
        self.assertEqual(markups.GetNumberOfControlPoints(), 4)
        slicer.mrmlScene.RemoveNode(markups)
        self.assertIn("deleted", logic.annotationStatus(volume).message)
        self.delayDisplay("Test passed")

    def _waitFor(self, run, timeoutSeconds=300.0):
        """Poll a child-process run as the panel's QTimer does, keeping the GUI responsive."""
        import time

        deadline = time.monotonic() + timeoutSeconds
        while not run.finished and time.monotonic() < deadline:
            run.poll()
            slicer.app.processEvents()
            time.sleep(0.1)
        self.assertEqual(run.state, "done", run.message)

    def test_TrainAndApplyOutOfProcess(self):
        self.delayDisplay("Train one tiny epoch and apply the model, both as PythonSlicer child processes")
        import tempfile

        logic = WeakNetSlicerLogic()
        logic.ensureDependencies(training=True)
        from weaknet.config import TrainConfig
        from WeakNetSlicerLib.process import train_process
        from WeakNetSlicerLib.training import DATASET_FILE

        phantom, volume, points, markups, session, obj = self._annotatedBean(logic)
        folder = pathlib.Path(tempfile.mkdtemp(prefix="WeakNetSlicerTest-"))
        self.assertEqual(logic.addToTrainingSet(volume, folder / "training", "CT"), 1)
        tiny = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=1, patch=(16, 16, 16), base_channels=4, depth=2,
                           device="cpu")
        training = train_process(folder / "training" / DATASET_FILE, folder / "model", tiny)
        self._waitFor(training)
        progress = [e["event"] for e in training.events if e["event"] not in ("plan", "warning")]
        self.assertEqual(progress[-2:], ["epoch", "done"])
        self.assertTrue((training.output / "model.json").is_file())

        applying = logic.startApplyModel(training.output, volume, 0.5, "cpu", "CT")
        self._waitFor(applying)
        segmentation, warnings = applying.output
        self.assertEqual(warnings, [])
        self.assertEqual(segmentation.GetSegmentation().GetNumberOfSegments(), 1)
        self.assertTrue(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, "weaknet_prediction", volume).size)

        proposing = logic.startFromModel(training.output, volume, 0.2, "cpu", "CT")  # the same model, proposed
        self._waitFor(proposing)
        proposed = proposing.output
        self.assertIsNotNone(proposed.proposal)
        self.assertIsNot(proposed, obj)  # the clicked bean keeps its own template
        self.assertGreater(session.template_mask(proposed).sum(), 0)
        self.delayDisplay("Test passed")

