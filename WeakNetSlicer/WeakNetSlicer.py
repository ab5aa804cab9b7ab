"""WeakNet for 3D Slicer: click sparse points on an organ's surface, watch an Active Surface template follow
them live, collect templates into a training set, train Weak-Net in the background and apply the model.

Module (Slicer's scripted-module pattern): parameter node (typed, saved with the scene), a thin Widget that
only wires the .ui to the Logic, a Logic that delegates to the MRML bridge ``WeakNetSlicerLib`` (the same
code the browser app and the headless tests drive), and a ScriptedLoadableModuleTest.
Python dependencies (torch, weaknet, MONAI) are installed on first use, never vtk or SimpleITK.
"""

import importlib
import importlib.util
import pathlib
from typing import Annotated

import qt
import vtk

import slicer
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, Decimals, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

MODULE_DIR = pathlib.Path(__file__).resolve().parent
SAMPLE_NAME = "WeakNetPhantom"


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
    """Register the WeakNet phantom in the Sample Data module."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="WeakNet",
        sampleName=SAMPLE_NAME,
        thumbnailFileName=str(MODULE_DIR / "Resources" / "Icons" / "WeakNetSlicer.png"),
        nodeNames=SAMPLE_NAME,
        customDownloader=lambda source: WeakNetSlicerLogic().loadSamplePhantom(),
    )


#
# WeakNetSlicerParameterNode
#


@parameterNodeWrapper
class WeakNetSlicerParameterNode:
    """What the panel shows, saved with the scene.

    inputVolume - volume being annotated; points - the current object's clicked points;
    templates - the volume's template segmentation; objectName - name for the next new object;
    autosaveDirectory - clicks (.mrk.json) and templates (.seg.nrrd) go to <folder>/<volume name>/;
    modality, trainingDirectory - the training set; lambdaWeight (λ), gamma (γ), boundaryDistance (d, mm),
    epochs, device - training settings; modelPath - a trained model folder (with model.json).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    points: vtkMRMLMarkupsFiducialNode
    templates: vtkMRMLSegmentationNode
    objectName: str = "Object 1"
    autosaveDirectory: pathlib.Path = pathlib.Path.home() / "WeakNet" / "sessions"
    modality: Annotated[str, Choice(["CT", "MRI", "EM"])] = "CT"
    trainingDirectory: pathlib.Path = pathlib.Path.home() / "WeakNet" / "training"
    lambdaWeight: Annotated[float, WithinRange(0.0, 1.0), Decimals(6)] = 1e-4
    gamma: Annotated[float, WithinRange(0.01, 0.99), Decimals(2)] = 0.5
    boundaryDistance: Annotated[float, WithinRange(0.0, 50.0), Decimals(1)] = 5.0
    epochs: Annotated[int, WithinRange(1, 1000)] = 20
    device: Annotated[str, Choice(["auto", "cpu", "cuda", "mps"])] = "auto"
    modelPath: pathlib.Path = pathlib.Path.home() / "WeakNet" / "model"


#
# WeakNetSlicerWidget
#


class WeakNetSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: wiring between the .ui widgets, the parameter node and the Logic; no processing here."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.trainingTimer = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/WeakNetSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = WeakNetSlicerLogic()
        WeakNetSlicerLogic.statusChanged = self.updateAnnotationStatus

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.addObjectButton.connect("clicked(bool)", self.onAddObject)
        self.ui.placeButton.connect("toggled(bool)", self.onPlaceToggled)
        self.ui.undoButton.connect("clicked(bool)", lambda: self.run(self.logic.undo, self._parameterNode.points))
        self.ui.clearButton.connect("clicked(bool)", lambda: self.run(self.logic.clearPoints, self._parameterNode.points))
        self.ui.addToTrainingSetButton.connect("clicked(bool)", self.onAddToTrainingSet)
        self.ui.trainButton.connect("clicked(bool)", self.onTrain)
        self.ui.cancelTrainingButton.connect("clicked(bool)", self.onCancelTraining)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyModel)

        self.trainingTimer = qt.QTimer()
        self.trainingTimer.setInterval(500)
        self.trainingTimer.connect("timeout()", self.onTrainingTimer)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()
        if self.trainingTimer:
            self.trainingTimer.stop()

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

    def run(self, function, *args):
        """Call a Logic method, showing a WeakNet error (or any failure) as one clear message."""
        with slicer.util.tryWithErrorDisplay(_("WeakNet: the action failed."), waitCursor=True):
            return function(*args)

    def updateButtons(self, caller=None, event=None) -> None:
        p = self._parameterNode
        hasVolume = bool(p and p.inputVolume)
        hasPoints = bool(p and p.points and self.logic.isSessionObject(p.points))
        self.ui.addObjectButton.enabled = hasVolume
        self.ui.placeButton.enabled = hasPoints
        self.ui.undoButton.enabled = hasPoints
        self.ui.clearButton.enabled = hasPoints
        self.ui.addToTrainingSetButton.enabled = hasVolume
        running = self.logic.isTraining()
        self.ui.trainButton.enabled = not running
        self.ui.cancelTrainingButton.enabled = running
        self.ui.applyButton.enabled = hasVolume and not running
        self.updateAnnotationStatus()

    def updateAnnotationStatus(self, status=None) -> None:
        p = self._parameterNode
        info = self.logic.annotationStatus(p.inputVolume if p else None)
        self.ui.pointCountLabel.text = str(info.points)
        self.ui.effortLabel.text = _("{clicks} clicks over {objects} object(s)").format(
            clicks=info.clicks, objects=len(info.objects))
        self.ui.statusLabel.text = info.message
        self.ui.statusLabel.setStyleSheet("color: #c0392b" if info.level != "info" else "")

    def onAddObject(self) -> None:
        p = self._parameterNode
        markups = self.run(self.logic.addObject, p.inputVolume, p.objectName, p.autosaveDirectory)
        if markups is not None:
            p.points = markups
            p.templates = self.logic.sessionFor(p.inputVolume).segmentation_node
            p.objectName = self.logic.nextObjectName(p.inputVolume)
            slicer.util.setSliceViewerLayers(background=p.inputVolume, fit=True)
            self.ui.placeButton.checked = True

    def onPlaceToggled(self, placing: bool) -> None:
        self.run(self.logic.setPlacing, self._parameterNode.points, placing)

    def onAddToTrainingSet(self) -> None:
        p = self._parameterNode
        count = self.run(self.logic.addToTrainingSet, p.inputVolume, p.trainingDirectory, p.modality)
        if count is not None:
            self.ui.trainingSetLabel.text = _("{count} volume(s) in the training set").format(count=count)

    def onTrain(self) -> None:
        p = self._parameterNode
        settings = {"lambda_": p.lambdaWeight, "gamma": p.gamma, "boundary_distance": p.boundaryDistance,
                    "epochs": p.epochs, "device": p.device}
        run = self.run(self.logic.startTraining, p.trainingDirectory, p.modelPath, settings)
        if run is not None:
            self.ui.trainingProgressBar.value = 0
            self.ui.trainingStatusLabel.text = run.message
            self.trainingTimer.start()
        self.updateButtons()

    def onTrainingTimer(self) -> None:
        run = self.logic.pollTraining()
        if run is None:
            self.trainingTimer.stop()
            return
        self.ui.trainingProgressBar.value = int(round(100 * run.fraction))
        self.ui.trainingStatusLabel.text = run.message
        if run.state.finished:
            self.trainingTimer.stop()
            if run.model_dir is not None:
                self._parameterNode.modelPath = pathlib.Path(run.model_dir)
            self.updateButtons()

    def onCancelTraining(self) -> None:
        self.logic.cancelTraining()

    def onApplyModel(self) -> None:
        p = self._parameterNode
        result = self.run(self.logic.applyModel, p.modelPath, p.inputVolume, p.gamma, p.device, p.modality)
        if result is not None:
            segmentation, warnings = result
            self.ui.applyStatusLabel.text = "\n".join(warnings) or _("segmentation '{name}' added").format(
                name=segmentation.GetName())
            if warnings:
                slicer.util.warningDisplay("\n".join(warnings), windowTitle=_("WeakNet model"))


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
    statusChanged = None

    def getParameterNode(self):
        return WeakNetSlicerParameterNode(super().getParameterNode())

    # -- dependencies ------------------------------------------------------------------------------
    @classmethod
    def ensureDependencies(cls, training: bool = False) -> None:
        """Install what is missing on first use, after asking: for annotation Resources/requirements.txt (and
        weaknet itself, without dependencies, when run from a source checkout; the extension ships it); for
        training also torch (through the PyTorch Utils extension) and Resources/requirements-training.txt.
        vtk and SimpleITK are Slicer's own and are never installed."""
        needed = ["scipy", "weaknet"] + (["torch", "monai", "safetensors"] if training else [])
        missing = [name for name in needed if importlib.util.find_spec(name) is None]
        if not missing:
            return
        if not slicer.util.confirmOkCancelDisplay(
                _("WeakNet needs these Python packages in Slicer's Python: {names}. Install them now? This needs "
                  "internet access and may take a few minutes.").format(names=", ".join(missing)),
                windowTitle="WeakNet"):
            raise RuntimeError(_("missing Python packages: {names}; WeakNet installs them when you agree").format(
                names=", ".join(missing)))
        if "torch" in missing:
            cls._installTorch()
        resources = MODULE_DIR / "Resources"
        slicer.util.pip_install(["-r", str(resources / "requirements.txt")])
        if training:
            slicer.util.pip_install(["-r", str(resources / "requirements-training.txt")])
        if "weaknet" in missing:  # the extension ships weaknet; a source checkout has it next to the module
            source = MODULE_DIR.parent / "WeakNetLib"
            if not (source / "pyproject.toml").is_file():
                raise RuntimeError(_("the weaknet library was not found ({path}); reinstall the WeakNet extension")
                                   .format(path=source))
            slicer.util.pip_install(["--no-deps", str(source)])
        importlib.invalidate_caches()

    @staticmethod
    def _installTorch() -> None:
        """torch through the PyTorch Utils extension (it picks the build for the machine's GPU); without the
        extension, PyPI's default build after asking."""
        try:
            import PyTorchUtils
        except ImportError:
            if not slicer.util.confirmOkCancelDisplay(
                    _("The PyTorch extension is not installed (recommended: Extensions Manager → PyTorch, then "
                      "restart). Install PyTorch's default build from PyPI instead?"), windowTitle="WeakNet"):
                raise RuntimeError(_("WeakNet needs PyTorch: install the 'PyTorch' extension from the Extensions "
                                     "Manager, restart Slicer, and try again")) from None
            slicer.util.pip_install("torch")
            return
        if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True) is None:
            raise RuntimeError(_("PyTorch was not installed; install it in the PyTorch Utils module"))

    # -- annotation --------------------------------------------------------------------------------
    @classmethod
    def annotation(cls, autosaveDirectory=None):
        """The annotation controller of this Slicer process (WeakNetSlicerLib.annotation, shared with the web
        app); ``autosaveDirectory`` becomes its autosave root (sessions go to <folder>/<volume stem>/)."""
        cls.ensureDependencies()
        from WeakNetSlicerLib.annotation import AnnotationController

        if cls.controller is None or cls.controller.scene is not slicer.mrmlScene:
            cls.controller = AnnotationController(slicer.mrmlScene, volumes_logic=slicer.modules.volumes.logic())
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

    def clearPoints(self, markupsNode) -> None:
        self._select(markupsNode)
        self.controller.clear()

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

        if cls.trainer is None:
            cls.trainer = TrainingController()
        return cls.trainer

    def addToTrainingSet(self, volumeNode, trainingDirectory, modality) -> int:
        """Add the volume's templates to the training set folder; returns the number of volumes in it."""
        return self.training().add_to_training_set(trainingDirectory, self.sessionFor(volumeNode), modality)

    def startTraining(self, trainingDirectory, modelPath, settings: dict):
        """Train in the background into ``modelPath`` (or ``<modelPath>-2``... when it holds a model);
        ``settings``: TrainConfig fields by name (None or "" = TrainConfig's default). Poll with
        :meth:`pollTraining`."""
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

    def applyModel(self, modelPath, volumeNode, gamma, device, modality):
        """Segment the volume with a trained model → (new segmentation node, warnings)."""
        return self.training().apply(slicer.mrmlScene, modelPath, volumeNode, gamma=gamma, device=device,
                                     modality=modality)

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
        from weaknet.coords import lps_to_ras
        from weaknet.template import fit_template

        phantom, volume, points = self._phantomWithPoints()
        markups = logic.addObject(volume, "bean")
        session, obj = logic.controller.find(markups)
        with session.batch():
            for p in points:
                markups.AddControlPoint(vtk.vtkVector3d(*lps_to_ras(p)))
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
