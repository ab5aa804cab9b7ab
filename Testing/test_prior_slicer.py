"""Where to click next through the workflow layer (AnnotationController.suggestions) on the real Slicer core:
RAS positions a front end can jump its views to, on the model's surface where the template disagrees with
it, or far from the points without a model."""

from __future__ import annotations

import numpy as np
import pytest
import vtk
from scipy import ndimage

from weaknet.coords import lps_to_ras, ras_to_lps
from weaknet.errors import InputError
from weaknet.mesh import point_distances
from weaknet.phantoms import make_phantom
from weaknet.sampling import mask_surface, sample_surface_points
from weaknet.volume import Volume, write_volume
from WeakNetSlicerLib.annotation import AnnotationController
from WeakNetSlicerLib.scene import create_scene


def test_suggestions_in_ras_for_the_active_object(tmp_path):
    ph = make_phantom("banana", "CT", size=(48, 48, 32), spacing=(1.0, 1.0, 1.5), seed=4)
    path = write_volume(ph.image, tmp_path / "banana.nrrd")
    core = create_scene()
    ctl = AnnotationController(core.scene, tmp_path / "auto")
    ctl.open(core.volumes.AddArchetypeVolume(str(path), "banana", 0))
    obj = ctl.add_object("banana")
    with pytest.raises(InputError, match="no template yet"):
        ctl.suggestions()
    points = sample_surface_points(ph.label.array, ph.label.geometry, 8)
    for p in points:
        obj.markups_node.AddControlPoint(vtk.vtkVector3d(*lps_to_ras(p)))
    assert obj.surface is not None
    # without a model: the template's places farthest from the points
    far = ctl.suggestions(count=2)
    assert len(far) == 2
    lps = ras_to_lps(np.array(far))
    nearest_click = np.linalg.norm(lps[:, None] - points[None], axis=2).min(axis=1)
    assert nearest_click[0] == pytest.approx(
        np.linalg.norm(obj.surface.vertices[:, None] - points[None], axis=2).min(axis=1).max())
    # with a model that is right: suggestions lie on the true surface where the template is off
    probability = Volume(ndimage.gaussian_filter(ph.label.array.astype(np.float32), 0.7), ph.label.geometry)
    found = ras_to_lps(np.array(ctl.suggestions(count=3, probability=probability)))
    truth_v, truth_f = mask_surface(ph.label.array, ph.label.geometry)
    d = point_distances(found, truth_v, truth_f)
    assert d[0] < 1.0 and np.all(d < 2.0)  # on the model's edge (or at the template where the model hesitates)
    err = point_distances(obj.surface.vertices, truth_v, truth_f)
    near = err[np.argsort(np.linalg.norm(obj.surface.vertices - found[0], axis=1))[:20]].max()
    assert near > np.percentile(err, 75)
