"""The workflow layer both front ends drive (WeakNetSlicerLib.annotation / .training) on the real Slicer core:
collision-free object files, every object shown and saved, undo/redo that restores the template shown, the
autosave layout, place mode in step with the interaction node, typed status counts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import slicer
import vtk

from weaknet.coords import lps_to_ras
from weaknet.errors import InputError
from weaknet.filenames import safe_stem, split_suffix, unique_stem
from weaknet.phantoms import make_phantom
from weaknet.points import read_points
from weaknet.sampling import sample_surface_points
from weaknet.volume import write_volume
from WeakNetSlicerLib import nodes
from WeakNetSlicerLib.annotation import AnnotationController
from WeakNetSlicerLib.scene import create_scene
from WeakNetSlicerLib.session import AnnotationSession


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    ph = make_phantom("bean", "CT", size=(40, 40, 24), spacing=(1.0, 1.1, 2.0), seed=2)
    path = write_volume(ph.image, tmp_path_factory.mktemp("ph") / "bean.nrrd")
    return path, ph, sample_surface_points(ph.label.array, ph.label.geometry, 14, seed=1)


def _click(obj, lps):
    obj.markups_node.AddControlPoint(vtk.vtkVector3d(*lps_to_ras(lps)))


def _sphere(centre, radius=4.0):
    d = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1], [.6, .6, .5]], float)
    return centre + radius * d / np.linalg.norm(d, axis=1)[:, None]


def test_file_stems_never_collide():
    assert safe_stem("肝臓") == "object" and safe_stem(" a/b ") == "a_b" and safe_stem("", "volume") == "volume"
    taken = []
    for name in ("肝臓", "脾臓", "Object 1", "Object_1", "Liver", "liver"):
        taken.append(unique_stem(name, taken))
    assert taken == ["object", "object_2", "Object_1", "Object_1_2", "Liver", "liver_2"]
    assert split_suffix("a.b.nii.gz") == ("a.b", ".nii.gz") and split_suffix("x.seg.nrrd") == ("x", ".seg.nrrd")
    assert split_suffix("pts.mrk.json") == ("pts", ".mrk.json") and split_suffix("noext") == ("noext", "")


def test_objects_with_colliding_names_each_keep_their_files(phantom, tmp_path):
    """Six names that clean up alike: six points files, six segments, all reopened with their own points."""
    path, ph, points = phantom
    core = create_scene()
    volume = core.volumes.AddArchetypeVolume(str(path), "bean", 0)
    session = AnnotationSession(core.scene, volume, autosave_dir=tmp_path / "s")
    names = ["肝臓", "脾臓", "Object 1", "Object_1", "Liver", "liver"]
    centre = points.mean(axis=0)
    for i, name in enumerate(names):
        obj = session.add_object(name)
        for p in _sphere(centre + [i - 2.5, 0.0, 0.0], 3.0 + 0.5 * i):
            _click(obj, p)
        assert obj.mask is not None and obj.mask.sum() > 0, name
    files = sorted(p.name for p in (tmp_path / "s").glob("*.mrk.json"))
    assert len(files) == 6 and len({f.lower() for f in files}) == 6
    assert len(set(session.segmentation_node.GetSegmentation().GetSegmentIDs())) == 6
    session.flush()  # the templates file is written within a second of the last click

    fresh = create_scene()
    reopened = AnnotationSession.reopen(fresh.scene, tmp_path / "s", volumes_logic=fresh.volumes)
    assert [o.name for o in reopened.objects] == names
    for i, obj in enumerate(reopened.objects):
        assert np.allclose(obj.points_lps, _sphere(centre + [i - 2.5, 0.0, 0.0], 3.0 + 0.5 * i), atol=1e-6)
        assert np.array_equal(reopened.template_mask(obj), session.template_mask(session.objects[i]))
        # each object keeps its colour: points, segment and the next autosave (issue 13.5)
        colour = session.objects[i].color
        assert np.allclose(obj.color, colour)
        assert np.allclose(obj.markups_node.GetDisplayNode().GetSelectedColor(), colour)
        segment = reopened.segmentation_node.GetSegmentation().GetSegment(obj.segment_id)
        assert np.allclose(segment.GetColor(), colour, atol=1e-3)
    _click(reopened.objects[0], points[0])  # an autosave after the restart
    saved = json.loads((tmp_path / "s" / "session.json").read_text(encoding="utf-8"))["objects"]
    assert [tuple(e["color"]) for e in saved] == [tuple(o.color) for o in session.objects]


def test_second_object_is_shown_and_saved_after_autosave(phantom, tmp_path):
    """Issue 13.1: once the templates were written while object 2 was still empty, its later fits showed and
    exported no voxel (label value 2 over a 0/1 mask)."""
    path, ph, points = phantom
    core = create_scene()
    session = AnnotationSession(core.scene, core.volumes.AddArchetypeVolume(str(path), "bean", 0),
                                autosave_dir=tmp_path / "s")
    first, second = session.add_object("A"), session.add_object("B")
    for obj in (first, second):
        for p in points:
            _click(obj, p)  # the clicks autosave templates.seg.nrrd, B's first ones while it is empty
    assert second.mask.sum() > 300
    assert np.array_equal(session.template_mask(second), second.mask)  # what Slicer shows and exports
    session.flush()  # the templates file is written within a second of the last click
    fresh = create_scene()
    saved = nodes.read_node(fresh.scene, "vtkMRMLSegmentationNode", tmp_path / "s" / "templates.seg.nrrd")
    reference = fresh.volumes.AddArchetypeVolume(str(path), "ref", 0)
    assert np.array_equal(nodes.segment_mask(saved, second.segment_id, reference), second.mask)


def test_undo_redo_restore_points_and_the_template_shown(phantom, tmp_path):
    path, ph, points = phantom
    core = create_scene()
    ctl = AnnotationController(core.scene, tmp_path / "auto")
    seen = []
    ctl.add_listener(seen.append)
    ctl.open(core.volumes.AddArchetypeVolume(str(path), "bean", 0))
    a = ctl.add_object("A")
    for p in points[:10]:
        _click(a, p)
    shown_10 = a.mask.copy()
    _click(a, points[10])
    b = ctl.add_object("B")
    for p in _sphere(points.mean(axis=0)):
        _click(b, p)
    # a drag is one edit, recorded when it starts
    node = a.markups_node
    node.InvokeEvent(slicer.vtkMRMLMarkupsNode.PointStartInteractionEvent)
    for step in range(1, 4):
        node.SetNthControlPointPosition(0, *lps_to_ras(points[0] + [step, 0.0, 0.0]))
    node.InvokeEvent(slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent)
    assert seen[-1].can_undo and not seen[-1].can_redo
    shown_dragged = a.mask.copy()

    ctl.undo()  # the drag, in one step: point 0 back, A active
    assert np.allclose(a.points_lps[0], points[0]) and ctl.status().active == "A"
    ctl.undo()  # B's last click, though A is active: one stack, in the order made
    status = ctl.status()
    assert status.active == "B" and status.points == 6 and "B: undid" in status.message
    for _ in range(7):
        ctl.undo()  # B's other clicks, then A's 11th point
    assert b.point_count == 0 and a.point_count == 10
    assert np.array_equal(ctl.require().template_mask(a), shown_10)  # the warm-started template, exactly
    for _ in range(8):
        ctl.redo()
    assert b.point_count == 7 and a.point_count == 11
    ctl.redo()
    assert np.array_equal(ctl.require().template_mask(a), shown_dragged) and not ctl.status().can_redo
    # a new edit after an undo drops the redo stack; effort counts clicks, never undos
    ctl.undo()
    ctl.delete_point(3)
    assert not ctl.status().can_redo and ctl.status().clicks == 11 + 7
    ctl.clear()
    assert ctl.status().points == 0
    ctl.undo()
    assert ctl.status().points == 10
    saved = read_points(ctl.require().autosave_dir / a.points_file)  # autosaved after every undo
    assert np.allclose(saved, a.points_lps, atol=1e-6)


def test_status_counts_active_and_all_objects(phantom, tmp_path):
    path, ph, points = phantom
    core = create_scene()
    ctl = AnnotationController(core.scene)
    assert ctl.status().active is None and ctl.status().points == 0
    with pytest.raises(InputError, match="open a volume"):
        ctl.add_object()
    ctl.open(core.volumes.AddArchetypeVolume(str(path), "bean", 0))
    with pytest.raises(InputError, match="add an object first"):
        ctl.set_placing(True)
    a = ctl.add_object()
    for p in points[:5]:
        _click(a, p)
    b = ctl.add_object()
    for p in points[:3]:
        _click(b, p)
    s = ctl.status()
    assert (s.objects, s.active, s.points, s.total_points, s.clicks) == (("Object 1", "Object 2"), "Object 2",
                                                                           3, 8, 8)
    assert s.level == "warning" and "at least 4" in s.message and s.folder is None
    assert s.counts == "Object 2: 3 points · 2 object(s), 8 points, effort 8 clicks"
    ctl.select("Object 1")
    assert ctl.status().points == 5


def test_place_mode_follows_the_interaction_node(phantom):
    path, ph, points = phantom
    core = create_scene()
    ctl = AnnotationController(core.scene)
    seen = []
    ctl.add_listener(seen.append)
    ctl.open(core.volumes.AddArchetypeVolume(str(path), "bean", 0))
    a = ctl.add_object("A")
    ctl.set_placing(True)
    interaction = core.scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
    selection = core.scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
    assert interaction.GetCurrentInteractionMode() == interaction.Place
    assert selection.GetActivePlaceNodeID() == a.markups_node.GetID() and seen[-1].placing
    b = ctl.add_object("B")  # new clicks go to the new object
    assert selection.GetActivePlaceNodeID() == b.markups_node.GetID()
    interaction.SetCurrentInteractionMode(interaction.ViewTransform)  # Esc or Slicer's toolbar
    assert not ctl.placing and not seen[-1].placing
    ctl.set_placing(True)
    assert interaction.GetCurrentInteractionMode() == interaction.Place and ctl.status().placing


def test_autosave_layout_one_folder_per_volume(phantom, tmp_path):
    """Volumes with the same file name in different folders, and a volume without a file, each get their own
    session folder under the root, and find it again in a fresh scene."""
    path, ph, points = phantom
    other = tmp_path / "other" / "bean.nrrd"
    write_volume(make_phantom("ellipsoid", "CT", size=(32, 32, 20), seed=4).image, other)
    root = tmp_path / "auto"
    folders = {}
    for run in range(2):
        core = create_scene()
        ctl = AnnotationController(core.scene, root)
        volumes = [core.volumes.AddArchetypeVolume(str(p), "bean", 0) for p in (path, other)]
        volumes.append(nodes.add_volume_node(core.scene, ph.image, "phantom 1"))
        for i, volume in enumerate(volumes):
            session = ctl.open(volume)
            if run == 0:
                obj = ctl.add_object(f"o{i}")
                centre = session.geometry.to_lps([(np.array(session.geometry.size) - 1) / 2])[0]
                for p in _sphere(centre, 3.0 + i):
                    _click(obj, p)
                folders[i] = session.autosave_dir
            else:
                assert session.autosave_dir == folders[i] and [o.name for o in session.objects] == [f"o{i}"]
                assert "reopened" in session.status
    assert sorted(f.name for f in folders.values()) == ["bean", "bean_2", "phantom_1"]
    assert json.loads((root / "phantom_1" / "session.json").read_text(encoding="utf-8"))["volume_file"] == \
        "volume.nrrd"
