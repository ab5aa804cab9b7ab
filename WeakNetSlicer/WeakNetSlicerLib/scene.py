"""A Slicer core scene with the logics WeakNet needs registered, for use without Slicer's GUI.

Desktop Slicer and trame-slicer's ``SlicerApp`` create their own scene; everything in this package takes
any existing ``vtkMRMLScene`` and only needs :func:`create_scene` when there is none (tests, scripts).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import slicer


@dataclass
class SlicerCore:
    """A scene plus its application logic and the module logics registered on it."""

    scene: "slicer.vtkMRMLScene"
    app_logic: "slicer.vtkSlicerApplicationLogic"
    colors: "slicer.vtkSlicerColorLogic"
    volumes: "slicer.vtkSlicerVolumesLogic"
    segmentations: "slicer.vtkSlicerSegmentationsModuleLogic"
    markups: "slicer.vtkSlicerMarkupsLogic"


def create_scene(scene: "slicer.vtkMRMLScene | None" = None) -> SlicerCore:
    """Create (or take) a scene and register the Colors, Volumes, Segmentations and Markups logics on it.

    Without an application logic the Volumes logic cannot find colour tables and labelmaps get none,
    hence the order: application logic → colour logic with the default colour nodes → module logics.
    """
    scene = scene if scene is not None else slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    # slicer-core ships no colour files; pointing home/share at its folder makes the search quietly find none
    core_dir = str(Path(importlib.import_module("slicer_core").__file__).parent)
    app.SetHomeDirectory(core_dir)
    app.SetShareDirectory("share")
    colors = slicer.vtkSlicerColorLogic()
    colors.SetMRMLApplicationLogic(app)
    colors.SetMRMLScene(scene)
    if scene.GetFirstNodeByClass("vtkMRMLColorTableNode") is None:
        colors.AddDefaultColorNodes()
    app.SetModuleLogic("Colors", colors)
    logics = {"Volumes": slicer.vtkSlicerVolumesLogic(),
              "Segmentations": slicer.vtkSlicerSegmentationsModuleLogic(),
              "Markups": slicer.vtkSlicerMarkupsLogic()}
    for name, logic in logics.items():
        logic.SetMRMLApplicationLogic(app)
        logic.SetMRMLScene(scene)
        app.SetModuleLogic(name, logic)
    return SlicerCore(scene, app, colors, logics["Volumes"], logics["Segmentations"], logics["Markups"])
