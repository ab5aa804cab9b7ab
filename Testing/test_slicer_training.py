"""From annotated volumes in a real Slicer core scene to DATASET.json, background training, and a model
applied to a volume node."""

from __future__ import annotations

import time

import numpy as np
import pytest

from weaknet.dataset import read_dataset
from weaknet.errors import InputError
from weaknet.phantoms import make_phantom
from weaknet.sampling import sample_surface_points
from weaknet.volume import read_volume, write_volume
from WeakNetSlicerLib import nodes
from WeakNetSlicerLib.scene import create_scene
from WeakNetSlicerLib.session import AnnotationSession
from WeakNetSlicerLib.training import (TrainingController, TrainingSet, apply_model, build_training_set,
                                       model_warnings)

TINY = dict(epochs=1, steps_per_epoch=2, batch_size=1, patch=(16, 16, 16), base_channels=4, depth=2,
            device="cpu", amp=False, augment=False)


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    """A scene with two annotated CT phantoms (one oblique; spacings differ, so the model records the spacing it
    trains at) and one volume without annotation."""
    folder = tmp_path_factory.mktemp("train")
    core = create_scene()
    sessions = []
    for i, (oblique, spacing) in enumerate(((False, (1.2, 1.2, 1.6)), (True, (1.3, 1.3, 1.5)))):
        ph = make_phantom("ellipsoid", "CT", size=(32, 32, 24), spacing=spacing, seed=i, oblique=oblique)
        node = core.volumes.AddArchetypeVolume(str(write_volume(ph.image, folder / f"ct{i}.nrrd")), f"ct{i}", 0)
        s = AnnotationSession(core.scene, node)
        obj = s.add_object("organ")
        with s.batch():
            nodes.set_control_points_lps(obj.markups_node,
                                         sample_surface_points(ph.label.array, ph.label.geometry, 14, seed=0))
        sessions.append(s)
    bare = make_phantom("bean", "CT", size=(32, 32, 24), spacing=(1.2, 1.2, 1.6), seed=7)
    core.volumes.AddArchetypeVolume(str(write_volume(bare.image, folder / "bare.nrrd")), "bare", 0)
    return core, sessions, folder


def test_no_annotated_volume_is_a_clear_error(tmp_path):
    core = create_scene()
    ph = make_phantom("ellipsoid", "CT", size=(24, 24, 16), seed=1)
    node = core.volumes.AddArchetypeVolume(str(write_volume(ph.image, tmp_path / "a.nrrd")), "a", 0)
    with pytest.raises(InputError, match="no annotated volume in the scene"):
        build_training_set(core.scene, tmp_path / "set", "CT")
    s = AnnotationSession(core.scene, node)
    obj = s.add_object("organ")
    nodes.set_control_points_lps(obj.markups_node, ph.label.geometry.to_lps([[5, 5, 5], [9, 5, 5], [5, 9, 5]]))
    with pytest.raises(InputError, match="no annotated volume.*4 points"):  # 3 points: no template yet
        build_training_set(core.scene, tmp_path / "set", "CT")
    with pytest.raises(InputError, match="training set is empty"):
        TrainingSet(tmp_path / "set2", "CT").write()
    assert not (tmp_path / "set" / "DATASET.json").exists()


def test_training_set_from_scene(annotated, tmp_path):
    core, sessions, _ = annotated
    path = build_training_set(core.scene, tmp_path / "set", modality="CT", name="organ")
    ds = read_dataset(path)
    assert ds.modality == "CT" and ds.name == "organ" and len(ds.training) == 2  # the bare volume is left out
    for case, s in zip(sorted(ds.training, key=lambda c: c.image.name), sessions):
        image, template = read_volume(case.image), read_volume(case.template)
        assert image.geometry.matches(s.geometry) and template.geometry.matches(s.geometry)
        assert np.array_equal(image.array, nodes.volume_array(s.volume_node))
        assert np.array_equal(template.array, s.template_mask(s.objects[0]))
        assert template.array.sum() > 300
    # "Add to training set" one session at a time keeps earlier entries and replaces the same volume
    more = TrainingSet(tmp_path / "set", modality="CT")
    more.add_session(sessions[0])
    assert len(read_dataset(more.write()).training) == 2
    with pytest.raises(InputError, match="another modality"):
        TrainingSet(tmp_path / "set", modality="MRI")


def test_apply_model_to_volume_node_and_warnings(annotated, tmp_path):
    from weaknet.predict import predict_volume
    from weaknet.train import TrainConfig, train

    core, sessions, folder = annotated
    ds = build_training_set(core.scene, tmp_path / "set", modality="CT")
    model = train(ds, tmp_path / "model", TrainConfig(**TINY), show_progress=False)
    volume_node = sessions[1].volume_node
    seg, warnings = apply_model(core.scene, model, volume_node, gamma=0.5, modality="CT")
    assert warnings == []
    assert core.scene.IsNodePresent(seg) and seg.GetSegmentation().GetNumberOfSegments() == 1
    got = nodes.segment_mask(seg, "weaknet_prediction", volume_node)
    expected, _ = predict_volume(model, read_volume(folder / "ct1.nrrd"), gamma=0.5)
    assert np.array_equal(got, expected.array)  # same voxels as the library on the file
    # another modality and a 3× coarser spacing are flagged
    mri = make_phantom("ellipsoid", "MRI", size=(16, 16, 16), spacing=(3.6, 3.6, 4.8), seed=2)
    mri_node = core.volumes.AddArchetypeVolume(str(write_volume(mri.image, tmp_path / "mri.nrrd")), "mri", 0)
    warnings = model_warnings(model, mri_node, modality="MRI")
    assert any("trained on CT" in w for w in warnings) and any("spacing" in w for w in warnings)
    with pytest.raises(InputError, match="not a WeakNet model"):
        apply_model(core.scene, tmp_path, volume_node)


def _until_finished(controller: TrainingController, deadline: float, done=lambda p: p.state.finished):
    while not done(controller.progress) and time.monotonic() < deadline:
        controller.poll()
        time.sleep(0.2)
    return controller.progress


def test_background_training_progress_and_cancel(annotated, tmp_path):
    core, _, _ = annotated
    folder = build_training_set(core.scene, tmp_path / "set", "CT").parent
    controller = TrainingController()
    with pytest.raises(InputError, match="mps"):  # an absent device is refused before anything starts
        controller.start(folder, tmp_path / "model", {**TINY, "device": "mps"})
    with pytest.raises(InputError, match="no training set in"):
        controller.start(tmp_path / "nowhere", tmp_path / "model", TINY)
    with pytest.raises(InputError, match="unknown training setting"):
        controller.start(folder, tmp_path / "model", {"epoch": 3})
    assert controller.progress.state == "idle" and controller.job is None
    controller.start(folder, tmp_path / "model", TINY)
    with pytest.raises(InputError, match="already running"):
        controller.start(folder, tmp_path / "model", TINY)
    deadline = time.monotonic() + 120
    progress = _until_finished(controller, deadline)
    assert progress.state == "done", progress.message
    assert progress.fraction == 1.0 and (progress.model_dir / "model.json").is_file()
    assert len(progress.losses) == TINY["epochs"] * TINY["steps_per_epoch"]

    # a second run into the same folder goes to model-2: a model is never overwritten
    controller.start(folder, tmp_path / "model", {**TINY, "epochs": 50, "steps_per_epoch": 50})
    _until_finished(controller, deadline, lambda p: p.losses)
    controller.cancel()
    progress = _until_finished(controller, deadline)
    assert progress.state == "cancelled", progress.message
    assert 0 < progress.fraction < 1 and controller.job.output_dir == tmp_path / "model-2"
    with pytest.raises(InputError, match="no training is running"):
        controller.cancel()
    # stop (the application exits) ends a running training too, and is harmless when nothing runs
    controller.start(folder, tmp_path / "model", {**TINY, "epochs": 50, "steps_per_epoch": 50})
    _until_finished(controller, deadline, lambda p: p.losses)
    controller.stop()
    assert _until_finished(controller, deadline).state == "cancelled"
    controller.stop()
