"""Start an object from the model's proposal through the workflow layer (AnnotationController) on the real
Slicer core: the template is the predicted object, clicks correct it where the model was wrong (undoable),
it is autosaved and reopened as it was, beside an ordinary clicked object; bad input is one clear line.
The "model" is a known mask (the phantom's truth with one end cut off), so the outcomes are exact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import vtk
from scipy import ndimage

from weaknet.coords import lps_to_ras
from weaknet.errors import InputError
from weaknet.mesh import point_distances
from weaknet.metrics import iou
from weaknet.phantoms import make_phantom
from weaknet.sampling import mask_surface, sample_surface_points
from weaknet.volume import write_volume
from WeakNetSlicerLib import nodes
from WeakNetSlicerLib.annotation import AnnotationController
from WeakNetSlicerLib.scene import create_scene
from WeakNetSlicerLib.session import PROPOSAL_SUFFIX


@pytest.fixture(scope="module")
def bean(tmp_path_factory):
    """(volume file, phantom, the model's prediction: the truth without its last 25 % along i, the cut
    rounded as a blurred probability thresholded at 0.5 would be)."""
    ph = make_phantom("bean", "CT", size=(48, 48, 32), spacing=(1.0, 1.0, 1.5), seed=4)
    path = write_volume(ph.image, tmp_path_factory.mktemp("proposal") / "bean.nrrd")
    truth = ph.label.array > 0
    i = np.nonzero(truth.any(axis=(0, 1)))[0]
    cut = truth.copy()
    cut[:, :, int(i[0] + 0.75 * (i[-1] - i[0])):] = False
    return path, ph, ph.label.like((ndimage.gaussian_filter(cut.astype(float), 1.0) >= 0.5).astype(np.uint8))


def _click(obj, lps):
    obj.markups_node.AddControlPoint(vtk.vtkVector3d(*lps_to_ras(lps)))


def test_proposed_object_is_corrected_by_clicks_saved_and_reopened(bean, tmp_path):
    path, ph, predicted = bean
    core = create_scene()
    ctl = AnnotationController(core.scene, tmp_path / "auto")
    volume = core.volumes.AddArchetypeVolume(str(path), "bean", 0)
    session = ctl.open(volume)
    fresh = ctl.add_object()  # as the browser app does on opening a volume: an empty "Object 1"
    obj = ctl.start_from_prediction(predicted)
    assert obj is fresh and obj.proposal is not None and session.objects == [obj]
    proposed = session.template_mask(obj)  # Slicer's own export of the segment
    assert iou(proposed, predicted.array) > 0.9
    assert "proposal" in ctl.status().message and ctl.status().points == 0

    # a click on the true surface where the model missed the end pulls the template there
    truth_v, truth_f = mask_surface(ph.label.array, ph.label.geometry)
    off = point_distances(truth_v, obj.surface.vertices, obj.surface.faces)
    click = truth_v[int(np.argmax(off))]
    assert off.max() > 4.0
    _click(obj, click)
    assert point_distances(click[None], obj.surface.vertices, obj.surface.faces)[0] < 1.5
    corrected = session.template_mask(obj)
    assert iou(corrected, ph.label.array) > iou(proposed, ph.label.array) + 0.03
    assert "corrected by 1 point" in ctl.status().message

    ctl.undo()  # the click: back to the proposal
    assert obj.point_count == 0 and iou(session.template_mask(obj), proposed) > 0.999
    ctl.redo()
    assert obj.point_count == 1 and iou(session.template_mask(obj), corrected) > 0.999

    # an ordinary clicked object beside it
    other = ctl.add_object("clicked")
    for p in sample_surface_points(ph.label.array, ph.label.geometry, 8, seed=2):
        _click(other, p + [0.0, 0.0, 0.0])
    assert other.proposal is None and session.template_mask(other).sum() > 0
    assert iou(session.template_mask(obj), corrected) > 0.999  # untouched by the other object
    ctl.flush()

    folder = ctl.session_folder(volume)
    meta = json.loads((folder / "session.json").read_text(encoding="utf-8"))
    assert [o.get("proposal") for o in meta["objects"]] == [obj.stem + PROPOSAL_SUFFIX, None]
    assert (folder / (obj.stem + PROPOSAL_SUFFIX)).is_file()

    # reopened in a new scene: the same two templates, and the proposal is back (a click corrects it alike)
    again = create_scene()
    ctl2 = AnnotationController(again.scene, tmp_path / "auto")
    reopened = ctl2.open(again.volumes.AddArchetypeVolume(str(path), "bean", 0))
    a, b = reopened.objects
    assert a.proposal is not None and b.proposal is None and a.point_count == 1
    assert iou(reopened.template_mask(a), corrected) > 0.99
    assert iou(reopened.template_mask(b), session.template_mask(other)) > 0.99
    second = truth_v[int(np.argsort(off)[-40])]
    ctl2.select(a.name)
    _click(a, second)
    _click(obj, second)
    assert iou(reopened.template_mask(a), session.template_mask(obj)) > 0.99

    # starting from the model was itself one undoable step
    ctl.undo()  # the second click
    ctl.undo()  # the other object's clicks, one by one ...
    while session.history.undo and session.history.undo[-1].obj is other:
        ctl.undo()
    ctl.undo()  # the first correcting click
    ctl.undo()  # the start from the model
    assert obj.proposal is None and obj.surface is None and session.template_mask(obj).sum() == 0
    ctl.redo()
    assert obj.proposal is not None and iou(session.template_mask(obj), proposed) > 0.999


def test_bad_predictions_and_missing_models_are_one_clear_line(bean, tmp_path):
    path, ph, predicted = bean
    core = create_scene()
    ctl = AnnotationController(core.scene, tmp_path / "auto")
    with pytest.raises(InputError, match="open a volume"):
        ctl.start_from_prediction(predicted)
    volume = core.volumes.AddArchetypeVolume(str(path), "bean", 0)
    ctl.open(volume)
    with pytest.raises(InputError, match="no object"):
        ctl.start_from_prediction(predicted.like(np.zeros_like(predicted.array)))
    with pytest.raises(InputError, match="no model"):
        ctl.start_from_model(None)
    with pytest.raises(InputError, match="not a WeakNet model"):
        ctl.start_from_model(tmp_path / "no-model")
    assert ctl.require().objects == []  # nothing was added

    # the segmentation Apply model makes (one segment) is a prediction too; several segments need a choice
    seg = core.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "bean WeakNet")
    seg.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    nodes.set_segment(seg, "weaknet_prediction", "bean", (0.3, 0.8, 0.4), predicted.array, predicted.geometry)
    obj = ctl.start_from_prediction(seg)
    assert iou(ctl.require().template_mask(obj), predicted.array) > 0.9
    nodes.set_segment(seg, "other", "other", (0.3, 0.3, 0.8), predicted.array, predicted.geometry)
    with pytest.raises(InputError, match="2 segments"):
        ctl.start_from_prediction(seg)
    second = ctl.start_from_prediction(seg, segment_id="other")
    assert second is not obj and [o.name for o in ctl.require().objects] == ["Object 1", "Object 2"]


def test_proposal_travels_with_a_saved_scene(bean, tmp_path):
    """A saved .mrml scene resumes the proposed object with its proposal (the points node names its file)."""
    from WeakNetSlicerLib.session import AnnotationSession

    path, ph, predicted = bean
    core = create_scene()
    ctl = AnnotationController(core.scene, tmp_path / "auto")
    ctl.open(core.volumes.AddArchetypeVolume(str(path), "bean", 0))
    obj = ctl.start_from_prediction(predicted)
    truth_v, _ = mask_surface(ph.label.array, ph.label.geometry)
    far = point_distances(truth_v, obj.surface.vertices, obj.surface.faces)
    _click(obj, truth_v[int(np.argmax(far))])
    ctl.flush()
    core.scene.SetURL(str(tmp_path / "scene.mrml"))
    assert core.scene.Commit()

    fresh = create_scene()
    fresh.scene.SetURL(str(tmp_path / "scene.mrml"))
    assert fresh.scene.Connect()
    resumed = AnnotationSession.from_scene(fresh.scene, fresh.scene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode"))
    (robj,) = resumed.objects
    assert robj.proposal is not None
    assert iou(resumed.template_mask(robj), ctl.require().template_mask(obj)) > 0.99
    second = truth_v[int(np.argsort(far)[-40])]
    _click(robj, second)
    _click(obj, second)
    assert iou(resumed.template_mask(robj), ctl.require().template_mask(obj)) > 0.99
