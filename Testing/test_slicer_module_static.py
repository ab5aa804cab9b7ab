"""Static checks of the desktop Slicer module (desktop Slicer cannot run here): imports, .ui widgets and
their classes, parameter-node bindings, CMake lists, and dependency metadata safe for Slicer's Python."""

from __future__ import annotations

import ast
import importlib
import re
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "WeakNetSlicer"
MODULE_FILE = MODULE_DIR / "WeakNetSlicer.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "WeakNetSlicer.ui"

SLICER_PROVIDES = {"qt", "ctk", "vtk", "slicer", "SampleData", "numpy", "PyTorchUtils"}
"""Top-level packages desktop Slicer provides (PyTorchUtils: with the PyTorch extension, imported guarded)."""
OURS = {"weaknet", "WeakNetSlicerLib"}
NEVER_INTO_SLICER = re.compile(r"^\s*(vtk|simpleitk)\b", re.IGNORECASE | re.MULTILINE)

# Widget classes that Slicer's parameterNodeWrapper GUI connectors accept for each parameter type
# (Base/Python/slicer/parameterNodeWrapper/guiConnectors.py).
CONNECTORS = {
    "float": {"QDoubleSpinBox", "ctkSliderWidget", "qMRMLSliderWidget", "ctkDoubleSlider", "ctkDoubleSpinBox",
              "qMRMLSpinBox"},
    "int": {"QSpinBox", "QSlider", "QDoubleSpinBox", "ctkSliderWidget", "ctkDoubleSpinBox", "QComboBox"},
    "str": {"QLineEdit", "QComboBox", "ctkComboBox", "QLabel", "QTextEdit"},
    "bool": {"QCheckBox", "ctkCheckBox", "QPushButton", "ctkCheckablePushButton"},
    "pathlib.Path": {"ctkDirectoryButton", "ctkPathLineEdit"},
    "node": {"qMRMLNodeComboBox"},
}
NAME_SUFFIX_CLASSES = [("CollapsibleButton", {"ctkCollapsibleButton"}), ("DirectoryButton", {"ctkDirectoryButton"}),
                       ("PathButton", {"ctkDirectoryButton", "ctkPathLineEdit"}), ("Button", {"QPushButton"}),
                       ("Label", {"QLabel"}), ("Selector", {"qMRMLNodeComboBox"}),
                       ("SpinBox", {"QSpinBox", "QDoubleSpinBox"}), ("ComboBox", {"QComboBox"}),
                       ("ProgressBar", {"QProgressBar"}), ("LineEdit", {"QLineEdit"})]


@pytest.fixture(scope="module")
def tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"), str(MODULE_FILE))


@pytest.fixture(scope="module")
def ui() -> dict[str, ET.Element]:
    root = ET.parse(UI_FILE).getroot()
    return {w.get("name"): w for w in root.iter("widget")}


def _imports(node: ast.AST) -> list[tuple[str, int]]:
    out = []
    for n in ast.walk(node):
        if isinstance(n, ast.Import):
            out += [(a.name, n.lineno) for a in n.names]
        elif isinstance(n, ast.ImportFrom) and n.level == 0:
            out.append((n.module, n.lineno))
    return out


def _class(tree: ast.Module, name: str) -> ast.ClassDef:
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)


def test_module_imports_only_what_slicer_provides(tree):
    allowed = SLICER_PROVIDES | OURS | set(sys.stdlib_module_names)
    bad = [(m, line) for m, line in _imports(tree) if m.split(".")[0] not in allowed]
    assert bad == [], f"imports Slicer does not provide: {bad}"
    top_level = [m for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) for m, _ in _imports(n)]
    early = [m for m in top_level if m.split(".")[0] in OURS]
    assert early == [], f"weaknet/WeakNetSlicerLib must be imported lazily (after first-use install): {early}"
    # PyTorchUtils comes with an optional extension: only inside a try/except ImportError
    for n in ast.walk(tree):
        if isinstance(n, ast.Try):
            guarded = {m for m, _ in _imports(ast.Module(body=n.body, type_ignores=[]))}
            if "PyTorchUtils" in guarded:
                assert any(isinstance(h.type, ast.Name) and h.type.id == "ImportError" for h in n.handlers)
    assert "PyTorchUtils" in {m for m, _ in _imports(tree)}


def test_names_imported_from_the_bridge_exist(tree):
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module and n.module.split(".")[0] in OURS:
            mod = importlib.import_module(n.module)
            missing = [a.name for a in n.names if not hasattr(mod, a.name)]
            assert missing == [], f"{n.module} has no {missing} (line {n.lineno})"


def test_bridge_imports_only_slicer_core_vtk_numpy_weaknet():
    allowed = {"slicer", "vtk", "numpy", "weaknet"} | set(sys.stdlib_module_names)
    for path in sorted((MODULE_DIR / "WeakNetSlicerLib").glob("*.py")):
        bad = [m for m, _ in _imports(ast.parse(path.read_text(encoding="utf-8"))) if m.split(".")[0] not in allowed]
        assert bad == [], f"{path.name} imports {bad} (the bridge runs without Qt, in Slicer and in slicer-core)"


def test_module_structure_follows_the_scripted_module_template(tree):
    bases = {n.name: {ast.unparse(b) for b in n.bases} for n in tree.body if isinstance(n, ast.ClassDef)}
    assert "ScriptedLoadableModule" in bases["WeakNetSlicer"]
    assert {"ScriptedLoadableModuleWidget", "VTKObservationMixin"} <= bases["WeakNetSlicerWidget"]
    assert "ScriptedLoadableModuleLogic" in bases["WeakNetSlicerLogic"]
    assert "ScriptedLoadableModuleTest" in bases["WeakNetSlicerTest"]
    param = _class(tree, "WeakNetSlicerParameterNode")
    assert [ast.unparse(d) for d in param.decorator_list] == ["parameterNodeWrapper"]
    fields = {a.target.id for a in param.body if isinstance(a, ast.AnnAssign)}
    assert {"inputVolume", "points", "templates", "lambda_", "gamma", "boundary_distance", "device",
            "modelPath", "epochs"} <= fields
    # thin widget: every logic call it makes exists on the Logic, and it does no processing itself
    widget, logic = _class(tree, "WeakNetSlicerWidget"), _class(tree, "WeakNetSlicerLogic")
    logic_methods = {f.name for f in logic.body if isinstance(f, ast.FunctionDef)} | {
        t.id for a in logic.body if isinstance(a, ast.Assign) for t in a.targets if isinstance(t, ast.Name)}
    called = {n.attr for n in ast.walk(widget) if isinstance(n, ast.Attribute)
              and ast.unparse(n.value) == "self.logic"}
    assert called and called <= logic_methods | {"statusChanged"}, called - logic_methods
    assert not [m for m, _ in _imports(widget) if m.split(".")[0] in OURS], "the Widget must only wire"
    tests = {f.name for f in _class(tree, "WeakNetSlicerTest").body if isinstance(f, ast.FunctionDef)}
    assert {"setUp", "runTest"} <= tests and len([t for t in tests if t.startswith("test_")]) >= 2


def test_every_widget_named_in_the_code_exists_with_the_expected_class(tree, ui):
    names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and ast.unparse(n.value) == "self.ui"}
    assert len(names) >= 15
    for name in sorted(names):
        assert name in ui, f"self.ui.{name} is not in {UI_FILE.name}"
        expected = next(classes for suffix, classes in NAME_SUFFIX_CLASSES if name.endswith(suffix))
        assert ui[name].get("class") in expected, f"{name} is a {ui[name].get('class')}, expected {expected}"
    # how the code uses them: buttons it connects, checkable where toggled/checked, labels it writes
    source = MODULE_FILE.read_text(encoding="utf-8")
    for name, signal in re.findall(r"self\.ui\.(\w+)\.connect\(\"(\w+)\(", source):
        assert ui[name].get("class") == "QPushButton" and signal in ("clicked", "toggled"), name
    for name in set(re.findall(r"self\.ui\.(\w+)\.connect\(\"toggled", source)) | \
            set(re.findall(r"self\.ui\.(\w+)\.checked", source)):
        assert _prop(ui[name], "checkable") == "true", f"{name} must be checkable"
    for name in re.findall(r"self\.ui\.(\w+)\.text\s*=", source):
        assert ui[name].get("class") == "QLabel", name
    for name in re.findall(r"self\.ui\.(\w+)\.value\s*=", source):
        assert ui[name].get("class") == "QProgressBar", name


def test_every_button_is_wired_to_a_handler_and_updated(tree, ui):
    """Each push button in the .ui is connected to a Widget method that exists, and updateButtons sets its
    enabled state (Start from model: only with a model in the model folder, through the Logic)."""
    source = MODULE_FILE.read_text(encoding="utf-8")
    buttons = {n for n, w in ui.items() if w.get("class") == "QPushButton"}
    wired = dict(re.findall(r"self\.ui\.(\w+)\.connect\(\"\w+\(bool\)\", self\.(\w+)\)", source))
    assert buttons == set(wired), buttons ^ set(wired)
    widget = {f.name for f in _class(tree, "WeakNetSlicerWidget").body if isinstance(f, ast.FunctionDef)}
    assert set(wired.values()) <= widget, set(wired.values()) - widget
    update = ast.unparse(next(f for f in _class(tree, "WeakNetSlicerWidget").body
                              if isinstance(f, ast.FunctionDef) and f.name == "updateButtons"))
    assert all(f"self.ui.{b}.enabled" in update for b in buttons), [b for b in buttons if b not in update]
    assert "self.logic.hasModel(p.modelPath)" in update
    start = ast.unparse(next(f for f in _class(tree, "WeakNetSlicerLogic").body
                             if isinstance(f, ast.FunctionDef) and f.name == "startFromModel"))
    assert "self.controller.start_from_model(" in start  # the workflow layer's call, as the web app makes it


def test_parameter_node_bindings_match_widget_classes(tree, ui):
    params = {a.target.id: ast.unparse(a.annotation) for a in _class(tree, "WeakNetSlicerParameterNode").body
              if isinstance(a, ast.AnnAssign)}
    bound = {}
    for w in ui.values():
        p = w.find("./property[@name='SlicerParameterName']/string")
        if p is not None:
            assert p.text not in bound, f"parameter {p.text} bound twice"
            bound[p.text] = w
    assert set(bound) == set(params), (set(bound) ^ set(params))
    for param, annotation in params.items():
        w = bound[param]
        base = re.sub(r"^Annotated\[(\w[\w.]*),.*\]$", r"\1", annotation)
        if base.startswith("vtkMRML"):
            assert w.get("class") == "qMRMLNodeComboBox"
            assert base in [s.text for s in w.iter("string")], f"{w.get('name')} does not list {base}"
        else:
            assert w.get("class") in CONNECTORS[base], f"{param}: {base} cannot bind to a {w.get('class')}"
        choice = re.search(r"Choice\((\[.*?\])\)", annotation)
        if choice:
            items = [i.find("./property/string").text for i in w.findall("item")]
            assert items == ast.literal_eval(choice.group(1)), f"{w.get('name')} items {items}"


def test_ui_is_qt_designer_xml_with_scene_connections(ui):
    root = ET.parse(UI_FILE).getroot()
    assert root.tag == "ui" and root.find("class").text == "WeakNetSlicer"
    assert root.find("widget").get("class") == "qMRMLWidget"
    combos = {n for n, w in ui.items() if w.get("class") == "qMRMLNodeComboBox"}
    connected = {c.find("receiver").text for c in root.iter("connection")
                 if c.find("signal").text == "mrmlSceneChanged(vtkMRMLScene*)"}
    assert combos and combos == connected
    custom = {c.find("class").text for c in root.iter("customwidget")}
    assert {w.get("class") for w in ui.values() if not w.get("class").startswith("Q")} <= custom


def _cmake_list(text: str, var: str) -> list[str]:
    m = re.search(rf"set\({var}\s+(.*?)\)", text, re.S)
    assert m, var
    return [t.replace("${MODULE_NAME}", "WeakNetSlicer") for t in m.group(1).split()]


def test_cmake_lists_name_every_source_and_resource_file():
    top = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    for needle in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(WeakNetSlicer)",
                   "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert needle in top
    for meta in ("CATEGORY", "CONTRIBUTORS", "DESCRIPTION"):
        assert re.search(rf"set\(EXTENSION_{meta} \"[^\"]+\"\)", top), meta
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in top  # PyTorch Utils, which installs torch for the GPU
    assert "WeakNetLib/weaknet/*.py" in top  # the library ships inside the extension
    module = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    scripts = set(_cmake_list(module, "MODULE_PYTHON_SCRIPTS"))
    resources = set(_cmake_list(module, "MODULE_PYTHON_RESOURCES"))
    on_disk_scripts = {p.relative_to(MODULE_DIR).as_posix() for p in MODULE_DIR.rglob("*.py")
                       if "__pycache__" not in p.parts}
    on_disk_resources = {p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / "Resources").rglob("*")
                         if p.is_file()}
    assert scripts == on_disk_scripts, scripts ^ on_disk_scripts
    assert resources == on_disk_resources, resources ^ on_disk_resources
    assert "slicerMacroBuildScriptedModule(" in module and "SCRIPTS ${MODULE_PYTHON_SCRIPTS}" in module
    assert "RESOURCES ${MODULE_PYTHON_RESOURCES}" in module
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in module


def test_extension_index_metadata_claims_nothing_that_does_not_exist():
    """LICENSE.txt matches the packages' license; every URL is built from the one repository variable and
    points at a file in this tree (no placeholder host, no screenshot that was never made)."""
    top = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    license_text = (ROOT / "LICENSE.txt").read_text(encoding="utf-8")
    assert license_text.startswith("BSD 3-Clause License") and "Redistribution and use" in license_text
    for pyproject in ("WeakNetLib", "WeakNetSlicer", "WeakNetWeb"):
        meta = tomllib.loads((ROOT / pyproject / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        assert meta["license"] == "BSD-3-Clause", pyproject
    assert not re.findall(r"https?://", top), "a literal URL: derive it from WEAKNET_REPOSITORY_URL"
    repository = re.search(r'set\(WEAKNET_REPOSITORY_URL "([^"]*)"\)', top).group(1)
    for meta in ("HOMEPAGE", "ICONURL"):
        values = re.findall(rf'set\(EXTENSION_{meta} "([^"]*)"\)', top)
        assert values and all(v == "" or v.startswith("${WEAKNET_REPOSITORY_URL}/") for v in values), meta
        for v in values:
            path = re.sub(r"^\$\{WEAKNET_REPOSITORY_URL\}/(blob|raw)/main/", "", v)
            assert not v or (ROOT / path).is_file(), f"{meta} names {path}, which is not in the tree"
    assert repository == "" or re.fullmatch(r"https://[\w.-]+/[\w.-]+/[\w.-]+", repository), repository
    screenshots = re.search(r'set\(EXTENSION_SCREENSHOTURLS "([^"]*)"\)', top).group(1)
    assert screenshots == "", "claim a screenshot only once a real one of the desktop panel exists"


def test_nothing_pip_installs_vtk_or_simpleitk_into_slicer():
    for req in (MODULE_DIR / "Resources").glob("requirements*.txt"):
        assert not NEVER_INTO_SLICER.search(req.read_text(encoding="utf-8")), req
    bridge = tomllib.loads((MODULE_DIR / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert bridge["dependencies"] == [] and bridge["name"] == "weaknet-slicer"
    lib = tomllib.loads((ROOT / "WeakNetLib" / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not [d for d in lib["dependencies"] if NEVER_INTO_SLICER.search(d)], lib["dependencies"]
    assert any(NEVER_INTO_SLICER.search(d) for d in lib["optional-dependencies"]["standalone"])
    source = MODULE_FILE.read_text(encoding="utf-8")
    installs = re.findall(r"pip_install\((.*?)\)", source)
    assert installs and not any(NEVER_INTO_SLICER.search(re.sub(r"[\[\]\"']", " ", i)) for i in installs)
    assert "--no-deps" in source  # weaknet itself never drags its standalone stack in


def _prop(widget: ET.Element, name: str) -> str | None:
    p = widget.find(f"./property[@name='{name}']/*")
    return None if p is None else p.text


SLICE_VIEW_KEYS = set("bfgrtvV") | {"Up", "Down", "Left", "Right", "[", "]", "{", "}", "Delete", "BackSpace"}
"""Keys Slicer's views already use (vtkMRMLSliceIntersectionWidget.cxx, vtkSlicerMarkupsWidget.cxx at v5.10.0;
Delete/BackSpace delete the point under the mouse)."""


def test_keyboard_shortcuts_are_unique_and_leave_slicers_keys_alone(ui):
    shortcuts = {name: _prop(w, "shortcut") for name, w in ui.items() if _prop(w, "shortcut")}
    assert shortcuts == {"placeButton": "P", "undoButton": "Z", "redoButton": "Y", "deletePointButton": "D",
                         "addObjectButton": "N", "suggestButton": "S"}
    assert len(set(shortcuts.values())) == len(shortcuts) and not set(shortcuts.values()) & SLICE_VIEW_KEYS
    assert not [k for k in shortcuts.values() if "Ctrl" in k], "Ctrl+… belong to Slicer's main window"
    source = MODULE_FILE.read_text(encoding="utf-8")
    for name, key in shortcuts.items():
        assert re.search(rf'self\.ui\.{name}\.connect\("(clicked|toggled)', source), name
        assert f"(key: {key})" in _prop(ui[name], "toolTip"), f"{name}'s tooltip does not say its key"
