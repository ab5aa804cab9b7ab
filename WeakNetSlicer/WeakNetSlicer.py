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
        self.logic.statusChanged = self.updateAnnotationStatus

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.addObjectButton.connect("clicked(bool)", self.onAddObject)
        self.ui.placeButton.connect("toggled(bool)", self.onPlaceToggled)
        self.ui.undoButton.connect("clicked(bool)", lambda: self.run(self.logic.undoPoint, self._parameterNode.points))
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
        running = self.logic.trainingRun is not None and not self.logic.trainingRun.finished
        self.ui.trainButton.enabled = not running
        self.ui.cancelTrainingButton.enabled = running
        self.ui.applyButton.enabled = hasVolume and not running
        self.updateAnnotationStatus()

    def updateAnnotationStatus(self, session=None) -> None:
        p = self._parameterNode
        info = self.logic.annotationStatus(p.inputVolume if p else None)
        self.ui.pointCountLabel.text = str(info["points"])
        self.ui.effortLabel.text = _("{clicks} clicks over {objects} object(s)").format(**info)
        self.ui.statusLabel.text = info["status"]
        self.ui.statusLabel.setStyleSheet("color: #c0392b" if info["level"] != "info" else "")

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
        run = self.run(self.logic.startTraining, p.trainingDirectory, p.modelPath, p.lambdaWeight, p.gamma,
                       p.boundaryDistance, p.epochs, p.device)
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
        if run.finished:
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

    Delegates to ``WeakNetSlicerLib`` (AnnotationSession, TrainingSet, TrainingRun, apply_model). Keeps one
    annotation session per volume node, shared by all Logic instances of this Slicer process.
    """

    sessions = {}
    trainingRun = None

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.statusChanged = None

    def getParameterNode(self):
        return WeakNetSlicerParameterNode(super().getParameterNode())

    # -- dependencies ------------------------------------------------------------------------------
    def ensureDependencies(self, training: bool = False) -> None:
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
            self._installTorch()
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

    def _installTorch(self) -> None:
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
    def sessionFor(self, volumeNode, autosaveDirectory=None):
        """The annotation session of a volume node: resumed from the scene's WeakNet nodes (a saved scene),
        else reopened from the autosave folder, else new."""
        if volumeNode is None:
            raise ValueError(_("pick a volume first"))
        session = self.sessions.get(volumeNode.GetID())
        if session is not None and not session.closed and session.volume_node is volumeNode:
            return session
        self.ensureDependencies()
        from WeakNetSlicerLib.session import REF_VOLUME, SESSION_FILE, AnnotationSession

        folder = None
        if autosaveDirectory:
            folder = pathlib.Path(autosaveDirectory) / _safeName(volumeNode.GetName())
        inScene = any(node.GetNodeReference(REF_VOLUME) is volumeNode
                      for node in slicer.util.getNodesByClass("vtkMRMLSegmentationNode"))
        if not inScene and folder is not None and (folder / SESSION_FILE).is_file():
            session = AnnotationSession.reopen(slicer.mrmlScene, folder, volume_node=volumeNode)
        else:  # a saved scene's WeakNet nodes are picked up again; otherwise a new session
            session = AnnotationSession.from_scene(slicer.mrmlScene, volumeNode, autosave_dir=folder)
        session.add_listener(self._onSessionChanged)
        self.sessions[volumeNode.GetID()] = session
        return session

    def addObject(self, volumeNode, name, autosaveDirectory=None):
        """Add a target object to the volume's session; returns its markups node."""
        return self.sessionFor(volumeNode, autosaveDirectory).add_object(name or None).markups_node

    def nextObjectName(self, volumeNode) -> str:
        session = self.sessions.get(volumeNode.GetID()) if volumeNode else None
        return session.next_object_name() if session else "Object 1"

    def isSessionObject(self, markupsNode) -> bool:
        return self._find(markupsNode) is not None

    def setPlacing(self, markupsNode, placing: bool) -> None:
        """Persistent place mode for the object's points (or back to view mode)."""
        found = self._find(markupsNode)
        if found is None:
            raise ValueError(_("add an object first"))
        session, obj = found
        if placing:
            session.start_placing(obj, persistent=True)
        else:
            session.stop_placing()

    def undoPoint(self, markupsNode) -> None:
        session, obj = self._require(markupsNode)
        session.undo_point(obj)

    def clearPoints(self, markupsNode) -> None:
        session, obj = self._require(markupsNode)
        session.clear_points(obj)

    def annotationStatus(self, volumeNode) -> dict:
        """points, clicks (effort), objects, status, level of the volume's session."""
        session = self.sessions.get(volumeNode.GetID()) if volumeNode else None
        if session is None:
            return {"points": 0, "clicks": 0, "objects": 0, "level": "info",
                    "status": _("add an object, then click points on its surface")}
        return {"points": session.point_count, "clicks": session.effort, "objects": len(session.objects),
                "status": session.status, "level": session.status_level}

    # -- training ----------------------------------------------------------------------------------
    def addToTrainingSet(self, volumeNode, trainingDirectory, modality) -> int:
        """Add the volume's templates to the training set folder; returns the number of volumes in it."""
        from WeakNetSlicerLib.training import TrainingSet

        session = self.sessionFor(volumeNode)
        training = TrainingSet(trainingDirectory, modality=modality)
        training.add_session(session)
        training.write()
        return len(training.cases)

    def startTraining(self, trainingDirectory, modelPath, lambdaWeight, gamma, boundaryDistance, epochs, device):
        """Train in a background process into ``modelPath`` (or ``<modelPath>-2``... when it already holds a
        model); poll with :meth:`pollTraining`."""
        self.ensureDependencies(training=True)
        from WeakNetSlicerLib.training import DATASET_FILE, start_training

        if self.trainingRun is not None and not self.trainingRun.finished:
            raise ValueError(_("a training is already running; cancel it first"))
        dataset = pathlib.Path(trainingDirectory) / DATASET_FILE
        if not dataset.is_file():
            raise ValueError(_("no training set in {folder}: annotate a volume and click 'Add to training set' "
                               "first").format(folder=trainingDirectory))
        WeakNetSlicerLogic.trainingRun = start_training(
            dataset, _freeFolder(pathlib.Path(modelPath)), lambda_=lambdaWeight, gamma=gamma, boundary_distance=boundaryDistance,
            epochs=int(epochs), device=device)
        return self.trainingRun

    def pollTraining(self):
        if self.trainingRun is not None:
            self.trainingRun.poll()
        return self.trainingRun

    def cancelTraining(self) -> None:
        if self.trainingRun is not None:
            self.trainingRun.cancel()

    def applyModel(self, modelPath, volumeNode, gamma, device, modality):
        """Segment the volume with a trained model → (new segmentation node, warnings)."""
        self.ensureDependencies(training=True)
        from WeakNetSlicerLib.training import apply_model

        return apply_model(slicer.mrmlScene, modelPath, volumeNode, gamma=gamma, device=device, modality=modality)

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
    def _find(self, markupsNode):
        if markupsNode is None:
            return None
        for session in self.sessions.values():
            for obj in session.objects:
                if obj.markups_node is markupsNode:
                    return session, obj
        return None

    def _require(self, markupsNode):
        found = self._find(markupsNode)
        if found is None:
            raise ValueError(_("these points do not belong to a WeakNet object: add an object first"))
        return found

    def _onSessionChanged(self, session) -> None:
        if self.statusChanged is not None:
            self.statusChanged(session)


def _freeFolder(folder: pathlib.Path) -> pathlib.Path:
    """``folder`` if it is missing or empty, else the first free ``<folder>-2``, ``-3``...: a new training
    never overwrites (or refuses because of) an earlier model."""
    candidate, n = folder, 2
    while candidate.exists() and any(candidate.iterdir()):
        candidate, n = folder.with_name(f"{folder.name}-{n}"), n + 1
    return candidate


def _safeName(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "volume"


#
# WeakNetSlicerTest
#


class WeakNetSlicerTest(ScriptedLoadableModuleTest):
    """Runs inside desktop Slicer (Reload and Test, or ctest): drives the same bridge as the headless tests."""

    def setUp(self):
        slicer.mrmlScene.Clear()
        WeakNetSlicerLogic.sessions = {}

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
        session, obj = logic._find(markups)
        with session.batch():
            for p in points:
                markups.AddControlPoint(vtk.vtkVector3d(*lps_to_ras(p)))
        exported = session.template_mask(obj)
        reference = fit_template(points, phantom.image.geometry).mask
        self.assertEqual((exported != reference).sum(), 0)
        self.assertEqual(logic.annotationStatus(volume)["points"], 20)
        logic.undoPoint(markups)
        self.assertEqual(logic.annotationStatus(volume)["points"], 19)
        self.delayDisplay("Test passed")

    def test_BadInput(self):
        self.delayDisplay("Too few points, a point outside, a deleted node")
        logic = WeakNetSlicerLogic()
        from weaknet.coords import lps_to_ras

        phantom, volume, points = self._phantomWithPoints()
        markups = logic.addObject(volume, "bean")
        for p in points[:3]:
            markups.AddControlPoint(vtk.vtkVector3d(*lps_to_ras(p)))
        self.assertIn("at least 4", logic.annotationStatus(volume)["status"])
        outside = phantom.image.geometry.to_lps([[-30.0, 5.0, 5.0]])[0]
        markups.AddControlPoint(vtk.vtkVector3d(*lps_to_ras(outside)))
        self.assertIn("outside", logic.annotationStatus(volume)["status"])
        self.assertEqual(markups.GetNumberOfControlPoints(), 4)
        slicer.mrmlScene.RemoveNode(markups)
        self.assertIn("deleted", logic.annotationStatus(volume)["status"])
        self.delayDisplay("Test passed")
