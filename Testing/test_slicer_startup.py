"""Startup and panel defects desktop Slicer would hit, checked without desktop Slicer: the module's sample data
registration against Slicer 5.10.0's own SampleData.py (Testing/fixtures), Slicer's tryWithErrorDisplay
(which re-raises) and the panel's handlers around it, PyTorch Utils, the place button following place mode,
and the template not catching 3D clicks (the real Slicer core)."""

from __future__ import annotations

import ast
import hashlib
import sys
import types
from pathlib import Path

import pytest

import slicer
from weaknet.phantoms import make_phantom
from weaknet.sampling import sample_surface_points
from weaknet.volume import write_volume
from WeakNetSlicerLib import nodes
from WeakNetSlicerLib.scene import create_scene
from WeakNetSlicerLib.session import AnnotationSession

ROOT = Path(__file__).resolve().parents[1]
MODULE_FILE = ROOT / "WeakNetSlicer" / "WeakNetSlicer.py"
SAMPLE_DATA = Path(__file__).parent / "fixtures" / "slicer-v5.10.0" / "SampleData.py"
SAMPLE_DATA_BLOB = "a1bc76ea0772aca38530a22252fc07eef983e22c"  # git blob of the file at tag v5.10.0


def _module_tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"))


def _function(tree: ast.AST, name: str) -> ast.FunctionDef:
    return next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name)


@pytest.fixture
def sample_data(monkeypatch) -> types.ModuleType:
    """Slicer 5.10.0's SampleDataSource and SampleDataLogic's registration methods, executed from the exact
    upstream file (the rest of it needs Qt), as the importable module ``SampleData``."""
    data = SAMPLE_DATA.read_bytes()
    assert hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == SAMPLE_DATA_BLOB, "not the upstream file"
    tree = ast.parse(data.decode("utf-8"))
    source_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SampleDataSource")
    logic = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SampleDataLogic")
    methods = [f for f in logic.body if isinstance(f, ast.FunctionDef)
               and f.name in ("registerCustomSampleDataSource", "isSampleDataSourceRegistered")]
    module = types.ModuleType("SampleData")
    module.slicer = slicer
    logic_class = ast.ClassDef(name="SampleDataLogic", bases=[], keywords=[], body=methods, decorator_list=[])
    code = ast.fix_missing_locations(ast.Module(body=[source_class, ast.copy_location(logic_class, logic)],
                                                type_ignores=[]))
    exec(compile(code, str(SAMPLE_DATA), "exec"), module.__dict__)
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(), raising=False)  # the application's registry
    monkeypatch.setitem(sys.modules, "SampleData", module)
    return module


def test_sample_data_registers_with_slicers_own_argument_checks(sample_data):
    namespace = {"MODULE_DIR": MODULE_FILE.parent, "SAMPLE_NAME": "WeakNetPhantom",
                 "loadSamplePhantom": lambda source=None: "phantom node"}
    exec(compile(ast.Module(body=[_function(_module_tree(), "registerSampleData")], type_ignores=[]),
                 str(MODULE_FILE), "exec"), namespace)
    namespace["registerSampleData"]()
    namespace["registerSampleData"]()  # a module reload registers again: still one entry
    sources = slicer.modules.sampleDataSources["WeakNet"]
    assert len(sources) == 1
    source = sources[0]
    assert source.sampleName == source.sampleDescription == "WeakNetPhantom"  # the button's label
    assert source.uris == source.fileNames == source.nodeNames == [] and "WeakNetPhantom" in str(source)
    assert Path(source.thumbnailFileName).is_file()
    assert source.customDownloader(source) == "phantom node"  # what the Sample Data button calls
    with pytest.raises(TypeError):  # the constructor's len(uris): why uris must be a list
        sample_data.SampleDataSource(sampleName="x", nodeNames="x", customDownloader=print)


def test_slicers_try_with_error_display_re_raises():
    from slicer.util import tryWithErrorDisplay

    with pytest.raises(ValueError, match="bad input"):
        with tryWithErrorDisplay("the action failed", show=False):
            raise ValueError("bad input")


def _widget_methods() -> dict[str, ast.FunctionDef]:
    widget = next(n for n in _module_tree().body if isinstance(n, ast.ClassDef) and n.name == "WeakNetSlicerWidget")
    return {f.name: f for f in widget.body if isinstance(f, ast.FunctionDef)}


def _uses_error_display(f: ast.FunctionDef) -> bool:
    return any(isinstance(n, ast.With) and "errorDisplay" in ast.unparse(n.items[0].context_expr)
               for n in ast.walk(f))


def test_panel_handlers_assume_the_re_raise():
    """No dead None checks after an action, and what must happen after a failure too sits in a finally."""
    methods = _widget_methods()
    handlers = {name: f for name, f in methods.items() if _uses_error_display(f)}
    assert {"onAddObject", "onPlaceToggled", "onTrain", "onApplyModel", "onAddToTrainingSet"} <= set(handlers)
    for name, f in handlers.items():
        dead = [ast.unparse(n) for n in ast.walk(f) if isinstance(n, ast.Compare)
                and any(isinstance(op, (ast.Is, ast.IsNot)) for op in n.ops)
                and any(isinstance(c, ast.Constant) and c.value is None for c in n.comparators)]
        assert dead == [], f"{name}: {dead} (the action raises on failure; it never returns None)"
        calls = {ast.unparse(c.func) for c in ast.walk(f) if isinstance(c, ast.Call)}
        for after in ({"self.updateButtons", "self.updateAnnotationStatus"} & calls):
            in_finally = {ast.unparse(c.func) for t in ast.walk(f) if isinstance(t, ast.Try)
                          for stmt in t.finalbody for c in ast.walk(stmt) if isinstance(c, ast.Call)}
            assert after in in_finally, f"{name}: {after}() is skipped when the action fails"
    assert "self.updateAnnotationStatus" in {ast.unparse(c.func) for c in ast.walk(methods["onPlaceToggled"])
                                             if isinstance(c, ast.Call)}, "a failed place toggle must not stay checked"


def test_pytorch_utils_installs_a_torch_monai_accepts_and_asks_once():
    tree = _module_tree()
    install = [c for c in ast.walk(tree) if isinstance(c, ast.Call) and ast.unparse(c.func).endswith(".installTorch")]
    assert len(install) == 1
    keywords = {k.arg: ast.unparse(k.value) for k in install[0].keywords}
    assert keywords == {"askConfirmation": "False", "torchVersionRequirement": "TORCH_REQUIREMENT"}
    requirement = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                       and ast.unparse(n.targets[0]) == "TORCH_REQUIREMENT")
    import importlib.metadata

    from packaging.requirements import Requirement
    from packaging.version import Version

    monai_needs = [Requirement(r) for r in importlib.metadata.requires("monai") if r.startswith("torch")]
    floor = Version(requirement.lstrip(">="))
    assert all(r.specifier.contains(floor) for r in monai_needs), (requirement, monai_needs)
    ensure = _function(tree, "ensureDependencies")
    asks = [c for c in ast.walk(ensure) if isinstance(c, ast.Call) and "confirmOkCancelDisplay" in ast.unparse(c.func)]
    assert len(asks) == 1, "the user is asked once for everything"
    keep = ast.unparse(_function(tree, "_pipInstallKeepingTorch"))
    assert "'-c'" in keep and "importlib.metadata.version('torch')" in keep and "torch==" in keep


def _annotated(tmp_path):
    core = create_scene()
    ph = make_phantom("ellipsoid", "CT", size=(32, 32, 24), spacing=(1.2, 1.2, 1.6), seed=0)
    node = core.volumes.AddArchetypeVolume(str(write_volume(ph.image, tmp_path / "ct.nrrd")), "ct", 0)
    session = AnnotationSession(core.scene, node)
    obj = session.add_object("organ")
    with session.batch():
        nodes.set_control_points_lps(obj.markups_node, sample_surface_points(ph.label.array, ph.label.geometry, 10,
                                                                             seed=0))
    return core, session, obj


def test_place_button_follows_the_controllers_place_mode():
    """The controller follows the interaction node (Esc, the toolbar; test_slicer_workflow.py); the button
    shows its status on every status event, without toggling place mode again; the prior's button likewise."""
    methods = _widget_methods()
    status = ast.unparse(methods["updateAnnotationStatus"])
    assert "self.syncButton(self.ui.placeButton, info.placing)" in status
    assert "self.syncButton(self.ui.priorButton, info.prior > 0)" in status
    sync = ast.unparse(methods["syncButton"])
    assert "blockSignals(True)" in sync and "blockSignals(wasBlocked)" in sync
    assert "WeakNetSlicerLogic.statusChanged = self.updateAnnotationStatus" in ast.unparse(methods["setup"])


def test_template_surface_does_not_catch_3d_clicks(tmp_path):
    """Slicer's 3D segmentation actors are pickable only if the node is selectable
    (vtkMRMLSegmentationsDisplayableManager3D: SetPickable(GetSelectable() && ...))."""
    core, session, obj = _annotated(tmp_path)
    assert session.template_mask(obj).any()
    assert session.segmentation_node.GetSelectable() == 0
