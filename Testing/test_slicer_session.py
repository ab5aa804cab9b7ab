"""The annotation session on the real Slicer core (PyPI slicer-core): oblique volumes, live re-fits,
bad input, deleted nodes, autosave and reopen, several objects and volumes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import vtk
from vtk.util import numpy_support

from weaknet.asm import ActiveSurface
from weaknet.coords import lps_to_ras
from weaknet.metrics import iou
from weaknet.phantoms import make_phantom
from weaknet.rasterize import rasterize_mesh
from weaknet.points import read_points
from weaknet.sampling import sample_surface_points
from weaknet.volume import read_volume, write_volume
from WeakNetSlicerLib import nodes
from WeakNetSlicerLib.scene import create_scene
from WeakNetSlicerLib.session import AnnotationSession


@pytest.fixture(scope="module")
def oblique_file(tmp_path_factory):
    """An oblique (≈25°), anisotropic (0.9 × 1.1 × 2.5 mm) phantom written as NRRD, with 24 surface points."""
    ph = make_phantom("bean", "CT", size=(64, 60, 32), spacing=(0.9, 1.1, 2.5), seed=3, oblique=True)
    path = write_volume(ph.image, tmp_path_factory.mktemp("obl") / "bean.nrrd")
    points = sample_surface_points(ph.label.array, ph.label.geometry, 24, seed=1)
    return path, ph, points


@pytest.fixture
def core():
    return create_scene()


def _load(core, path, name="vol"):
    node = core.volumes.AddArchetypeVolume(str(path), name, 0)
    assert node is not None
    return node


def _click(obj, lps):
    """What a click in a Slicer view does: add a defined control point at a RAS position."""
    return obj.markups_node.AddControlPoint(vtk.vtkVector3d(*lps_to_ras(lps)))


def test_oblique_template_matches_library_fit_voxel_exactly(core, oblique_file):
    from weaknet.template import fit_template

    path, ph, points = oblique_file
    volume_node = _load(core, path)
    file_geometry = read_volume(path).geometry
    assert not np.allclose(file_geometry.direction_matrix, np.eye(3), atol=0.05)  # really oblique
    assert nodes.volume_geometry(volume_node).matches(file_geometry)
    session = AnnotationSession(core.scene, volume_node)
    obj = session.add_object("bean")
    with session.batch():  # all clicks at once → one fit from scratch, like the library
        nodes.set_control_points_lps(obj.markups_node, points)
    exported = session.template_mask(obj)  # Slicer's own segment → labelmap export on the volume grid
    reference = fit_template(points, file_geometry).mask
    assert exported.shape == reference.shape == ph.label.array.shape
    assert exported.sum() > 500
    # Same points, same geometry (node IJK→RAS equals the file's within 1e-4), same ASM and rasteriser:
    # expected identical; a voxel-centre lying within float rounding of the mesh could flip, hence ≥ 0.999.
    assert iou(exported, reference) >= 0.999, iou(exported, reference)
    print(f"oblique template vs library fit: IoU {iou(exported, reference):.6f}, "
          f"{int((exported != reference).sum())} differing voxels of {exported.size}")
    assert iou(exported, ph.label.array) > 0.6, iou(exported, ph.label.array)  # on the organ


def test_later_answers_a_click_at_once_and_refines_after(core, oblique_file):
    """With a front end's ``later`` (here a queue run by hand), a click shows the quick follow of the points
    and the fit of the points runs on a worker thread; shown through ``later``, the template is the one
    ``fit_template`` makes of the same points (IoU ≥ 0.999), at least as close to the truth as the warm-started
    one of a session without it. A refinement overtaken by a click is abandoned and the newest template refined
    instead; one overtaken by an undo, or due during a drag, is dropped (the drag's end starts one)."""
    import time

    from weaknet.template import fit_template

    path, ph, points = oblique_file
    volume = _load(core, path)
    queue: list = []

    def run_queue():
        while queue:
            queue.pop(0)()
            time.sleep(0.002)

    deferred = AnnotationSession(core.scene, volume)
    deferred.later = queue.append
    direct = AnnotationSession(core.scene, volume)
    a, b = deferred.add_object("deferred"), direct.add_object("direct")
    for p in points[:4]:
        _click(a, p)
        _click(b, p)
    refined = 0
    for p in points[4:16]:
        _click(a, p)
        _click(b, p)
        assert a.point_count == b.point_count and deferred.status_level == "info"
        assert np.array_equal(deferred.template_mask(a), a.mask)  # the quick follow is shown at once
        if queue:
            assert a.surface.needs_refine and a.refining is not None
            run_queue()
            assert not a.surface.needs_refine and a.refining is None
            assert np.array_equal(deferred.template_mask(a), a.mask)
            refined += 1
    assert refined == 12  # every click's quick follow is refined once shown
    # refined: the fit of the points, whatever the path; the warm-started one depends on it (and is worse here)
    fitted = fit_template(a.points_lps, deferred.geometry).mask
    assert iou(deferred.template_mask(a), fitted) >= 0.999, iou(deferred.template_mask(a), fitted)
    assert iou(a.mask, ph.label.array) >= iou(b.mask, ph.label.array) - 0.005, \
        (iou(a.mask, ph.label.array), iou(b.mask, ph.label.array))

    # clicks faster than the refinement: it is abandoned, the template of the last one is refined in the end
    for p in points[16:20]:
        _click(a, p)
        if a.refine_stop is None:
            queue.pop(0)()  # the refinement starts on the worker
        assert a.refining is not None
        stop = a.refine_stop
    _click(a, points[20])
    assert stop.is_set()
    run_queue()
    assert not a.surface.needs_refine and np.allclose(a.surface.points, a.points_lps)
    fitted = fit_template(a.points_lps, deferred.geometry).mask
    assert iou(deferred.template_mask(a), fitted) >= 0.999, iou(deferred.template_mask(a), fitted)
    # overtaken by an undo: the refinement is dropped, the undone template stays as it was shown
    _click(a, points[21])
    _click(a, points[22])
    assert queue
    deferred.undo()
    shown = a.mask.copy()
    run_queue()
    assert np.array_equal(a.mask, shown) and a.refining is None
    # due during a drag: none then, one at the drag's end
    a.dragging = True
    a.surface._refine = True
    deferred._refine_later(a)
    assert not queue
    deferred._on_drag(a, False)
    assert len(queue) == 1
    run_queue()
    assert not a.surface.needs_refine and deferred.status_level == "info"
    # settled before an export (Save, Add to training set): the fit of the points now, whether its refinement
    # was still queued or already running on the worker; the callbacks queued meanwhile change nothing
    for started in (False, True):
        _click(a, points[22 + started])
        if started:
            queue.pop(0)()
            assert a.refine_stop is not None
        assert a.surface.needs_refine
        deferred.settle()
        assert not a.surface.needs_refine and a.refining is None
        settled = deferred.template_mask(a)
        fitted = fit_template(a.points_lps, deferred.geometry).mask
        assert iou(settled, fitted) >= 0.999, iou(settled, fitted)
        run_queue()
        assert np.array_equal(deferred.template_mask(a), settled)


def test_live_refit_on_every_point_event_and_bad_input(core, oblique_file):
    path, ph, points = oblique_file
    session = AnnotationSession(core.scene, _load(core, path))
    seen = []
    session.add_listener(lambda s: seen.append((s.status_level, s.status)))
    obj = session.add_object("bean")
    for p in points[:3]:
        _click(obj, p)
    assert session.point_count == 3 and obj.mask is None
    assert "at least 4" in session.status and session.status_level == "warning"
    assert session.template_mask(obj).sum() == 0
    for p in points[3:]:
        _click(obj, p)
    assert session.point_count == 24 and session.effort == 24
    live = session.template_mask(obj)
    assert np.array_equal(live, obj.mask)
    # one fit at the 4th click, then one warm-started update per click: the library run the same way
    # gives the same voxels (the ASM's own accuracy is tested with the ASM)
    asm = ActiveSurface().fit(points[:4])
    for k in range(5, len(points) + 1):
        asm.update(points[:k])
    assert np.array_equal(live, rasterize_mesh(asm.vertices, asm.faces, read_volume(path).geometry))
    assert iou(live, ph.label.array) > 0.55, iou(live, ph.label.array)
    # the 3D view shows the fitted mesh itself (RAS), not a surface re-derived from the labelmap
    surface = session.segmentation_node.GetSegmentation().GetSegment(obj.segment_id).GetRepresentation(
        "Closed surface")
    shown = numpy_support.vtk_to_numpy(surface.GetPoints().GetData())
    assert np.allclose(shown, lps_to_ras(obj.surface.vertices), atol=1e-3)

    # move a point: incremental re-fit follows it
    before = obj.mask.copy()
    moved = points[0] + 3.0 * (points[0] - points.mean(axis=0)) / np.linalg.norm(points[0] - points.mean(axis=0))
    obj.markups_node.SetNthControlPointPosition(0, *lps_to_ras(moved))
    assert not np.array_equal(before, obj.mask) and session.status_level == "info"
    # only the template's box changed, in the mask and in the segment: both equal a whole-grid rasterisation
    whole = rasterize_mesh(obj.surface.vertices, obj.surface.faces, session.geometry)
    assert np.array_equal(obj.mask, whole) and np.array_equal(session.template_mask(obj), whole)
    labelmap = session.segmentation_node.GetSegmentation().GetSegment(obj.segment_id).GetRepresentation(
        "Binary labelmap")
    assert labelmap.GetNumberOfPoints() < whole.size / 4  # the segment stores the box, not the grid

    # a point outside the volume: clear message, the point stays, the last template stays
    before = obj.mask.copy()
    outside = ph.image.geometry.to_lps([[-20.0, 10.0, 10.0]])[0]
    obj.markups_node.SetNthControlPointPosition(1, *lps_to_ras(outside))
    assert "outside the image" in session.status and "point 2" in session.status
    assert session.point_count == 24
    assert np.allclose(obj.points_lps[1], outside)
    assert np.array_equal(session.template_mask(obj), before)
    obj.markups_node.SetNthControlPointPosition(1, *lps_to_ras(points[1]))  # moved back in: fits again
    assert session.status_level == "info" and "24 points" in session.status
    shown = obj.mask.copy()

    # undo / redo put back the points and the very template shown with them (the warm-started one)
    session.undo()
    assert np.allclose(obj.points_lps[1], outside) and np.array_equal(session.template_mask(obj), before)
    session.redo()
    assert np.allclose(obj.points_lps[1], points[1]) and np.array_equal(session.template_mask(obj), shown)
    session.clear_points()  # one edit
    assert session.point_count == 0 and session.template_mask(obj).sum() == 0 and session.effort == 24
    assert "at least 4" in session.status
    session.undo()
    assert session.point_count == 24 and np.array_equal(session.template_mask(obj), shown)
    assert any(level == "warning" for level, _ in seen)


def test_several_objects_and_volumes(core, oblique_file, tmp_path):
    path, ph, points = oblique_file
    other = make_phantom("ellipsoid", "MRI", size=(40, 40, 30), spacing=(1.0, 1.0, 1.5), seed=5)
    path2 = write_volume(other.image, tmp_path / "ell.nrrd")
    s1 = AnnotationSession(core.scene, _load(core, path, "bean"))
    s2 = AnnotationSession(core.scene, _load(core, path2, "ell"))
    a = s1.add_object("organ")
    with s1.batch():
        nodes.set_control_points_lps(a.markups_node, points)
    # a second, smaller object on the same volume: points on a sphere around the bean's centre
    centre = points.mean(axis=0)
    d = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1], [.6, .6, .5]])
    b = s1.add_object("core")
    with s1.batch():
        nodes.set_control_points_lps(b.markups_node, centre + 4.0 * d / np.linalg.norm(d, axis=1)[:, None])
    c = s2.add_object("organ")
    pts2 = sample_surface_points(other.label.array, other.label.geometry, 12, seed=0)
    with s2.batch():
        nodes.set_control_points_lps(c.markups_node, pts2)
    assert [o.name for o in s1.objects] == ["organ", "core"] and s2.objects[0] is c
    assert s1.segmentation_node is not s2.segmentation_node
    ids = s1.segmentation_node.GetSegmentation().GetSegmentIDs()
    assert set(ids) == {a.segment_id, b.segment_id}
    ma, mb, mc = s1.template_mask(a), s1.template_mask(b), s2.template_mask(c)
    assert 0 < mb.sum() < ma.sum() and (ma & mb).sum() == mb.sum()  # nested, both kept
    assert mc.shape == other.label.array.shape and iou(mc, other.label.array) > 0.6, iou(mc, other.label.array)
    with pytest.raises(Exception, match="already exists"):
        s1.add_object("organ")


def test_deleted_nodes_mid_session(core, oblique_file):
    path, ph, points = oblique_file
    volume_node = _load(core, path)
    session = AnnotationSession(core.scene, volume_node)
    obj = session.add_object("bean")
    with session.batch():
        nodes.set_control_points_lps(obj.markups_node, points)
    # segmentation deleted: the next point change makes a new one
    core.scene.RemoveNode(session.segmentation_node)
    assert session.status_level == "warning" and "segmentation was deleted" in session.status
    obj.markups_node.SetNthControlPointPosition(0, *lps_to_ras(points[0] + 0.5))
    assert core.scene.IsNodePresent(session.segmentation_node) and session.template_mask(obj).sum() > 500
    # points node deleted: object closed, template kept, no exception
    core.scene.RemoveNode(obj.markups_node)
    assert session.objects == [] and "points node was deleted" in session.status
    assert session.segmentation_node.GetSegmentation().GetSegment(obj.segment_id) is not None
    # volume deleted: the session closes itself
    core.scene.RemoveNode(volume_node)
    assert session.closed and session.status_level == "error" and "deleted" in session.status
    with pytest.raises(Exception, match="closed"):
        session.add_object("again")


def test_autosave_and_reopen(core, oblique_file, tmp_path):
    path, ph, points = oblique_file
    folder = tmp_path / "session"
    session = AnnotationSession(core.scene, _load(core, path), autosave_dir=folder)
    obj = session.add_object("bean")
    for p in points[:10]:
        _click(obj, p)
    assert (folder / "bean.mrk.json").is_file()  # the clicks at once; the templates within a second
    session.flush()
    assert (folder / "templates.seg.nrrd").is_file()
    meta = json.loads((folder / "session.json").read_text(encoding="utf-8"))
    assert meta["objects"][0]["point_count"] == 10 and meta["effort"] == 10
    # a bad click is saved too (nothing the user clicked is lost)
    outside = ph.image.geometry.to_lps([[-30.0, 5.0, 5.0]])[0]
    _click(obj, outside)
    saved = read_points(folder / "bean.mrk.json")
    assert len(saved) == 11 and np.allclose(saved[10], outside, atol=1e-6)
    obj.markups_node.RemoveNthControlPoint(10)
    template = session.template_mask(obj)
    session.flush()

    fresh = create_scene()
    reopened = AnnotationSession.reopen(fresh.scene, folder, volumes_logic=fresh.volumes)
    robj = reopened.object("bean")
    assert np.allclose(robj.points_lps, points[:10], atol=1e-6)
    assert robj.clicks == 11 and reopened.effort == 11
    assert np.array_equal(reopened.template_mask(robj), template)
    assert "reopened 1 object" in reopened.status
    _click(robj, points[10])  # keeps working: re-fits from the points
    assert reopened.point_count == 11 and reopened.status_level == "info"
    assert len(read_points(folder / "bean.mrk.json")) == 11


def test_reopen_refits_templates_older_than_points(core, oblique_file, tmp_path):
    """The clicks are saved at once, the templates up to a second later: a session closed in between (a crash)
    leaves templates older than the points. Reopening re-fits those objects from their points, whether the
    templates file is ours (points fingerprint per segment) or Slicer's own (no fingerprint: file times)."""
    import os
    import shutil

    from weaknet.template import fit_template

    path, ph, points = oblique_file
    folder = tmp_path / "session"
    session = AnnotationSession(core.scene, _load(core, path), autosave_dir=folder)
    obj = session.add_object("bean")
    for p in points[:8]:
        _click(obj, p)
    session.flush()
    old = session.template_mask(obj)
    shutil.copy(folder / "templates.seg.nrrd", tmp_path / "old.seg.nrrd")
    slicer_written = nodes.write_node(session.segmentation_node, tmp_path / "slicer.seg.nrrd")  # no fingerprint
    for p in points[8:14]:
        _click(obj, p)
    session.close()  # everything written: now put the 8-point templates back, as a crash would leave them
    refit = fit_template(points[:14], read_volume(path).geometry).mask
    assert iou(old, refit) < 0.98

    for saved in (tmp_path / "old.seg.nrrd", slicer_written):
        shutil.copy(saved, folder / "templates.seg.nrrd")
        stamp = (folder / "bean.mrk.json").stat().st_mtime
        os.utime(folder / "templates.seg.nrrd", (stamp - 5, stamp - 5))
        fresh = create_scene()
        reopened = AnnotationSession.reopen(fresh.scene, folder, volumes_logic=fresh.volumes, autosave=False)
        robj = reopened.object("bean")
        assert robj.point_count == 14
        shown = reopened.template_mask(robj)
        assert iou(shown, refit) >= 0.999, (saved.name, iou(shown, refit))  # the re-fit, not the old template
        reopened.close()
    # templates as new as the points (the fingerprint matches): shown as saved, not re-fitted
    fresh = create_scene()
    reopened = AnnotationSession.reopen(fresh.scene, folder, volumes_logic=fresh.volumes)
    reopened.object("bean").markups_node.RemoveNthControlPoint(13)  # 13 points: written within a second
    reopened.close()
    last = create_scene()
    again = AnnotationSession.reopen(last.scene, folder, volumes_logic=last.volumes)
    assert again.object("bean").point_count == 13 and again.object("bean").surface is None  # not re-fitted


def test_saved_with_the_scene_and_resumed(core, oblique_file, tmp_path):
    """The clicks and templates travel with a saved .mrml scene; loading it again resumes the session."""
    path, ph, points = oblique_file
    session = AnnotationSession(core.scene, _load(core, path), autosave_dir=tmp_path / "s")
    obj = session.add_object("bean")
    for p in points[:8]:
        _click(obj, p)
    template = session.template_mask(obj)
    session.flush()
    core.scene.SetURL(str(tmp_path / "s" / "scene.mrml"))
    assert core.scene.Commit()  # the markups/segmentation storage nodes point at the autosaved files

    fresh = create_scene()
    fresh.scene.SetURL(str(tmp_path / "s" / "scene.mrml"))
    assert fresh.scene.Connect()
    volume_node = fresh.scene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
    resumed = AnnotationSession.from_scene(fresh.scene, volume_node)
    robj = resumed.object("bean")
    assert np.allclose(robj.points_lps, points[:8], atol=1e-6) and resumed.effort == 8
    assert np.array_equal(resumed.template_mask(robj), template)
    assert "resumed 1 object" in resumed.status
    _click(robj, points[8])
    assert resumed.point_count == 9 and resumed.status_level == "info"


def test_errors_never_lose_a_click(core, oblique_file, tmp_path):
    path, ph, points = oblique_file
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the autosave folder should be", encoding="utf-8")
    session = AnnotationSession(core.scene, _load(core, path), autosave_dir=blocked / "s")
    obj = session.add_object("bean")
    for p in points[:6]:
        _click(obj, p)
    # autosave cannot write: fitting goes on, the status says so, every point is still in the scene
    assert session.point_count == 6 and obj.mask is not None and obj.mask.sum() > 0
    assert session.status_level == "warning" and "autosave" in session.status and "points are kept" in session.status
    with pytest.raises(Exception, match="could not be written|Not a directory|File exists"):
        session.save()
    assert session.save(tmp_path / "elsewhere") == tmp_path / "elsewhere"
    assert len(read_points(tmp_path / "elsewhere" / "bean.mrk.json")) == 6

    # a failing fit (here: an impossible ASM option) is reported, the observer does not raise, points stay
    broken = AnnotationSession(core.scene, session.volume_node, fit_options={"subdivisions": -1},
                               autosave_dir=tmp_path / "b")
    other = broken.add_object("other")
    for p in points[:5]:
        _click(other, p)
    assert broken.status_level == "error" and "fit failed" in broken.status and "points are kept" in broken.status
    assert broken.point_count == 5 and len(read_points(tmp_path / "b" / "other.mrk.json")) == 5


def test_real_mri_lesion(core, data_dir):
    """pyradiomics' brain1 T1 MRI (0.78 × 0.78 × 6.5 mm, flipped j axis) with its lesion label: points on the
    labelled surface → the template in Slicer equals the library's fit on the file, and lies on the lesion.

    Slicer's reader stores this file's slices in reverse order (k axis flipped, origin at the other end: the
    same physical grid), so masks are compared in physical space, on the file's grid."""
    from weaknet.resample import resample
    from weaknet.template import fit_template
    from weaknet.volume import Volume

    image_path = data_dir / "pyradiomics" / "brain1_image.nrrd"
    label = read_volume(data_dir / "pyradiomics" / "brain1_label.nrrd")
    volume_node = _load(core, image_path, "brain1")
    node_geometry = nodes.volume_geometry(volume_node)
    assert np.allclose(node_geometry.to_lps([[0, 0, 0]]), label.geometry.to_lps([[0, 0, 24]]))  # reversed k
    points = sample_surface_points(label.array, label.geometry, 20, seed=0)
    session = AnnotationSession(core.scene, volume_node)
    obj = session.add_object("lesion")
    with session.batch():
        nodes.set_control_points_lps(obj.markups_node, points)
    on_file_grid = resample(Volume(session.template_mask(obj), node_geometry), label.geometry, "nearest").array
    reference = fit_template(points, read_volume(image_path).geometry).mask
    assert np.array_equal(on_file_grid, reference)
    # a rough template (that is what Weak-Net learns from): 20 points over a lesion ~5 slices of 6.5 mm thick
    assert iou(on_file_grid, label.array) > 0.3, iou(on_file_grid, label.array)
