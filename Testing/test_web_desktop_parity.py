"""Desktop and web behave the same: one scenario driven through the workflow controllers as each front end
drives them — the web's real panels on a real trame state, the desktop Logic's calls (read from
WeakNetSlicer.py) — on the real Slicer core. Same undo/redo, same autosave layout, same training settings."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import vtk

from weaknet.config import TrainConfig
from weaknet.coords import lps_to_ras
from weaknet.phantoms import make_phantom
from weaknet.sampling import sample_surface_points
from weaknet.volume import write_volume
from WeakNetSlicerLib.annotation import AnnotationController
from WeakNetSlicerLib.scene import create_scene
from WeakNetSlicerLib.training import FORM_FIELDS, TrainingController

pytest.importorskip("trame")
from weaknet_web.annotation import ANNOTATIONS, AnnotationPanel  # noqa: E402
from weaknet_web.sandbox import DataRoot  # noqa: E402
from weaknet_web.training import TrainingPanel, form_key  # noqa: E402

DESKTOP = Path(__file__).resolve().parents[1] / "WeakNetSlicer" / "WeakNetSlicer.py"
FORM = {"epochs": "2", "patch": "16", "device": "cpu"}  # typed by the user; every other field left empty


class WebApp:
    """What the web panels use of ``weaknet_web.app.AnnotatorApp`` — its trame state, scene and data root —
    without its render windows."""

    def __init__(self, scene, data_root: Path):
        from trame.app import get_server

        self.state = get_server(f"parity-{id(self)}", client_type="vue3").state
        self.slicer = SimpleNamespace(scene=scene)
        self.data_root = DataRoot(data_root)
        self.renders = 0
        self.annotation = AnnotationPanel(self)
        self.training = TrainingPanel(self)

    def changed(self, render: bool = True) -> int:
        self.renders += 1
        return self.renders

    def inform(self, message: str) -> None:
        self.state.info_message = message


def _logic_calls(method: str) -> set[str]:
    """Names of the methods the desktop Logic's ``method`` calls (self.controller.X(), trainer.X()...)."""
    logic = next(n for n in ast.parse(DESKTOP.read_text(encoding="utf-8")).body
                 if isinstance(n, ast.ClassDef) and n.name == "WeakNetSlicerLogic")
    body = next(f for f in logic.body if isinstance(f, ast.FunctionDef) and f.name == method)
    return {n.func.attr for n in ast.walk(body) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}


@pytest.fixture(scope="module")
def volume_file(tmp_path_factory):
    ph = make_phantom("bean", "CT", size=(40, 40, 24), spacing=(1.0, 1.1, 2.0), seed=2)
    path = write_volume(ph.image, tmp_path_factory.mktemp("parity") / "bean.nrrd")
    return path, sample_surface_points(ph.label.array, ph.label.geometry, 9, seed=1)


def _click(obj, lps):
    obj.markups_node.AddControlPoint(vtk.vtkVector3d(*lps_to_ras(lps)))


def _scenario(open_volume, add_object, undo, redo, points) -> None:
    """What the user does: 8 clicks on a first object, undo, undo, redo, undo; 5 clicks on a second, undo."""
    obj = open_volume()
    for p in points[:8]:
        _click(obj, p)
    for action in (undo, undo, redo, undo):
        action()
    second = add_object()
    for p in points[:5]:
        _click(second, p)
    undo()


def test_desktop_and_web_drive_the_controller_alike(volume_file, tmp_path):
    path, points = volume_file
    # the Logic's calls, as WeakNetSlicer.py makes them
    assert {"open"} <= _logic_calls("sessionFor") and {"add_object"} <= _logic_calls("addObject")
    assert {"undo"} <= _logic_calls("undo") and {"redo"} <= _logic_calls("redo")
    assert {"start", "parse"} <= _logic_calls("startTraining")
    assert {"add_to_training_set"} <= _logic_calls("addToTrainingSet")
    assert {"use_prior"} <= _logic_calls("usePrior")  # the web panel's switch makes the same call (set_prior)

    # desktop: autosave root = the panel's autosave folder; the Logic opens, adds "Object 1" (the next free
    # name), undoes/redoes through the controller
    core_d = create_scene()
    desktop = AnnotationController(core_d.scene, tmp_path / "desktop")
    node_d = core_d.volumes.AddArchetypeVolume(str(path), "bean", 0)

    def d_open():
        desktop.open(node_d)
        return desktop.add_object(None)

    _scenario(d_open, lambda: desktop.add_object(None), desktop.undo, desktop.redo, points)

    # web: autosave root = <data root>/annotations; the panel opens (adding Object 1) and forwards the buttons
    core_w = create_scene()
    app = WebApp(core_w.scene, tmp_path / "web")
    node_w = core_w.volumes.AddArchetypeVolume(str(path), "bean", 0)
    panel = app.annotation

    def w_open():
        panel.open(node_w)
        return panel.controller.require().active

    def w_add():
        panel.add_object()
        return panel.controller.require().active

    _scenario(w_open, w_add, panel.undo, panel.redo, points)

    d, w = desktop.status(), panel.controller.status()
    assert (d.objects, d.active, d.points, d.total_points, d.clicks, d.can_undo, d.can_redo) == \
        (w.objects, w.active, w.points, w.total_points, w.clicks, w.can_undo, w.can_redo)
    assert (w.points, w.total_points, w.clicks, w.can_redo) == (4, 10, 13, True)
    assert (app.state.n_points, app.state.total_points, app.state.effort) == (4, 10, 13)  # mirrored in the page
    for a, b in zip(desktop.require().objects, panel.controller.require().objects):
        assert np.allclose(a.points_lps, b.points_lps)
        assert np.array_equal(desktop.require().template_mask(a), panel.controller.require().template_mask(b))

    # the same autosave layout under each root: <root>/bean/ with the same files and session.json
    folder_d, folder_w = tmp_path / "desktop" / "bean", tmp_path / "web" / ANNOTATIONS / "bean"
    assert desktop.require().autosave_dir == folder_d and panel.controller.require().autosave_dir == folder_w
    assert sorted(p.name for p in folder_d.iterdir()) == sorted(p.name for p in folder_w.iterdir())
    meta_d, meta_w = (json.loads((f / "session.json").read_text(encoding="utf-8")) for f in (folder_d, folder_w))
    assert meta_d["objects"] == meta_w["objects"] and meta_d["effort"] == meta_w["effort"] == 13

    # training settings: the same form text gives the same TrainConfig in both; empty = TrainConfig's default
    trainer = TrainingController()
    desktop_form = {name: FORM.get(name, "") for name in trainer.placeholders()}  # the parameter node's text
    for name in FORM_FIELDS:
        assert app.state[form_key(name)] == ""  # the web form starts empty, its placeholders are the defaults
        app.state[form_key(name)] = FORM.get(name, "")
    assert app.state.train_placeholders == trainer.placeholders()
    config_d = trainer.settings(trainer.parse(desktop_form))
    config_w = app.training.controller.settings(app.training.controller.parse(app.training.overrides()))
    assert config_d == config_w == TrainConfig(epochs=2, patch=(16, 16, 16), device="cpu")
