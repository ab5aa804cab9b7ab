"""Training and inference out of process, as the desktop module runs them: the real ``weaknet`` command line
in a child process started by Slicer's own ``slicer.util.launchConsoleProcess`` (slicer-core), its
``@weaknet {json}`` progress lines parsed, cancel killing the whole process tree (through a launcher that
starts the interpreter as its own child, as PythonSlicer does)."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from train_helpers import phantom_dataset
from weaknet.config import TrainConfig
from weaknet.errors import InputError
from weaknet.phantoms import make_phantom
from weaknet.progress_lines import PREFIX, format_line, parse_line
from weaknet.volume import read_volume, write_volume
from WeakNetSlicerLib import process
from WeakNetSlicerLib.process import predict_process, train_arguments, train_process

TINY = TrainConfig(epochs=1, steps_per_epoch=4, batch_size=2, patch=(16, 16, 16), base_channels=4, depth=2,
                   device="cpu", amp=False)


def _wait(run, until, timeout=180.0):
    deadline = time.monotonic() + timeout
    while not until(run) and time.monotonic() < deadline:
        run.poll()
        time.sleep(0.05)
    run.poll()
    assert until(run), f"{run.state}: {run.message}; log: {list(run.log)[-5:]}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("process")
    dataset = phantom_dataset(root / "set")
    (root / "set" / "DATASET.json").write_text(dataset.read_text(encoding="utf-8"), encoding="utf-8")
    run = train_process(dataset, root / "model", TINY)
    fractions = []
    _wait(run, lambda r: fractions.append(r.fraction) or r.finished)
    return run, fractions, root


def test_progress_line_protocol():
    event = {"event": "step", "image": "C:/Daten/肝臓.nrrd", "loss": 0.25, "val_iou": None}
    line = format_line(event)
    assert line.startswith(PREFIX) and line.isascii() and "\n" not in line
    assert parse_line(line) == event
    for other in ("epoch 1/2: loss 0.3", PREFIX + "{not json", PREFIX + '{"no": "event"}', PREFIX + "[1]"):
        assert parse_line(other) is None
    with pytest.raises(ValueError, match="event"):
        format_line({"loss": 1.0})


def test_train_out_of_process_reports_progress_and_the_model(trained):
    run, fractions, _ = trained
    assert run.state == "done" and run.returncode == 0, run.message
    kinds = [e["event"] for e in run.events]
    assert kinds[0] == "plan" and "config" in run.events[0]  # the self-configured plan comes first
    assert [k for k in kinds if k not in ("plan", "warning")] == ["start"] + ["step"] * 4 + ["epoch", "done"]
    steps = [f for f in fractions if 0 < f < 1]
    assert steps == sorted(steps) and run.fraction == 1.0  # 0.25, 0.5, 0.75 as steps arrive, then 1
    assert isinstance(run.output, Path) and (run.output / "model.json").is_file()
    assert (run.output / "model.safetensors").is_file()
    epoch = next(e for e in run.events if e["event"] == "epoch")
    assert epoch["epoch"] == 1 and np.isfinite(epoch["loss"])


def test_predict_out_of_process_writes_the_same_mask(trained, tmp_path):
    from weaknet.predict import predict_volume

    run, _, _ = trained
    ph = make_phantom("ellipsoid", "CT", size=(24, 24, 20), spacing=(1.0, 1.0, 1.5), seed=5, distractors=False)
    image = write_volume(ph.image, tmp_path / "new image.nrrd")
    pred = predict_process(run.output, image, tmp_path / "out" / "mask.nrrd", gamma=0.5, device="cpu",
                           on_done=lambda r: read_volume(r.result["masks"][0]))
    _wait(pred, lambda r: r.finished)
    assert pred.state == "done", pred.message
    assert [e["event"] for e in pred.events] == ["start", "step", "done"] and pred.fraction == 1.0
    expected, _ = predict_volume(run.output, read_volume(image), gamma=0.5, device="cpu")
    assert pred.output.geometry.matches(expected.geometry)
    assert np.array_equal(pred.output.array, expected.array) and expected.array.any()


def _launcher(folder: Path) -> Path:
    """Like PythonSlicer (a launcher that runs the real interpreter as its child, not exec)."""
    script = folder / "PythonLauncher"
    script.write_text(f'#!/bin/sh\n"{sys.executable}" "$@"\nexit $?\n', encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie) — Linux /proc."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads the process table from /proc")
def test_cancel_through_the_training_controller_kills_the_process_tree(trained, tmp_path):
    """As the Slicer Logic trains: TrainingController(job_factory=train_job), here through a launcher."""
    from functools import partial

    from WeakNetSlicerLib.training import TrainingController

    _, _, root = trained
    controller = TrainingController(job_factory=partial(process.train_job, python=str(_launcher(tmp_path))))
    slow = {**TINY.to_dict(), "epochs": 50, "steps_per_epoch": 50}
    controller.start(root / "set", tmp_path / "model", slow)
    run = controller.job
    _wait(run, lambda r: controller.poll().fraction > 0)
    assert controller.progress.state == "running" and 0 < controller.progress.fraction < 1
    children = process._children()
    tree, i = [run.pid], 0
    while i < len(tree):
        tree += children.get(tree[i], [])
        i += 1
    assert len(tree) >= 2, "the launcher runs the interpreter as its child"
    controller.cancel()
    progress = controller.poll()
    assert progress.state == "cancelled" and progress.model_dir is None, progress
    assert run.state == "cancelled" and run.output is None and run.returncode is not None
    assert not [p for p in tree if _alive(p)], "a process of the tree survived the cancel"
    assert not Path(f"/proc/{run.pid}").exists(), "the launcher was not reaped (zombie)"


def test_failures_are_one_clear_line(trained, tmp_path):
    run, _, root = trained
    with pytest.raises(InputError, match="no such"):
        train_process(tmp_path / "nowhere" / "dataset.json", tmp_path / "m", TINY)
    assert train_arguments(TrainConfig(augment=False, lambda_=1e-3)) == ["--lambda", "0.001", "--no-augment"]
    assert train_arguments(TrainConfig()) == []
    with pytest.raises(InputError, match="not a WeakNet model"):
        predict_process(tmp_path, tmp_path / "x.nrrd", tmp_path / "y.nrrd")
    # a failure inside the child: its error line becomes the message, nothing is reported as a result
    missing = predict_process(run.output, tmp_path / "no image.nrrd", tmp_path / "out.nrrd", device="cpu")
    _wait(missing, lambda r: r.finished)
    assert missing.state == "failed" and missing.returncode == 2 and missing.output is None
    assert "error:" in missing.message and "no image.nrrd" in missing.message and os.linesep not in missing.message


def test_apply_model_out_of_process_to_a_volume_node(trained, tmp_path):
    from WeakNetSlicerLib import nodes
    from WeakNetSlicerLib.process import apply_model_process
    from WeakNetSlicerLib.scene import create_scene
    from WeakNetSlicerLib.training import apply_model

    run, _, _ = trained
    core = create_scene()
    ph = make_phantom("ellipsoid", "CT", size=(24, 24, 20), spacing=(1.0, 1.0, 1.5), seed=6, distractors=False,
                      oblique=True)
    volume = core.volumes.AddArchetypeVolume(str(write_volume(ph.image, tmp_path / "ct.nrrd")), "ct", 0)
    applied = apply_model_process(core.scene, run.output, volume, gamma=0.5, device="cpu", modality="MRI")
    assert applied.scratch.is_dir() and core.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0
    _wait(applied, lambda r: r.finished)
    assert applied.state == "done", applied.message
    seg, warnings = applied.output
    assert any("trained on CT" in w for w in warnings) and not applied.scratch.exists()
    reference, _ = apply_model(core.scene, run.output, volume, gamma=0.5, device="cpu")
    got = nodes.segment_mask(seg, "weaknet_prediction", volume)
    assert np.array_equal(got, nodes.segment_mask(reference, "weaknet_prediction", volume)) and got.any()


def test_prediction_into_the_users_own_segment(trained, tmp_path):
    """Apply model into a segmentation and segment the user picked: the segment keeps its ID, colour and
    terminology (Segment Editor's masking and effects apply to it), only its voxels change; others untouched."""
    import slicer
    import vtk

    from WeakNetSlicerLib import nodes
    from WeakNetSlicerLib.process import apply_model_process
    from WeakNetSlicerLib.scene import create_scene

    run, _, _ = trained
    core = create_scene()
    ph = make_phantom("ellipsoid", "CT", size=(24, 24, 20), spacing=(1.0, 1.0, 1.5), seed=7, distractors=False)
    volume = core.volumes.AddArchetypeVolume(str(write_volume(ph.image, tmp_path / "ct.nrrd")), "ct", 0)
    mine = core.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my segmentation")
    mine.CreateDefaultDisplayNodes()
    mine.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    kidney = np.zeros(ph.image.array.shape, np.uint8)
    kidney[2:6, 2:6, 2:6] = 1
    nodes.set_segment(mine, "Segment_1", "liver", (0.8, 0.2, 0.2), np.zeros_like(kidney), ph.image.geometry)
    nodes.set_segment(mine, "Segment_2", "kidney", (0.2, 0.2, 0.8), kidney, ph.image.geometry)
    terminology = "SCT^123037004^Anatomical Structure~SCT^10200004^Liver~^^~Anatomic codes~^^~"
    mine.GetSegmentation().GetSegment("Segment_1").SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(),
                                                          terminology)
    applied = apply_model_process(core.scene, run.output, volume, gamma=0.5, device="cpu",
                                  segmentation_node=mine, segment_name="liver")
    _wait(applied, lambda r: r.finished)
    assert applied.state == "done", applied.message
    assert applied.output[0] is mine and core.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1
    segmentation = mine.GetSegmentation()
    assert list(segmentation.GetSegmentIDs()) == ["Segment_1", "Segment_2"]
    liver = segmentation.GetSegment("Segment_1")
    assert liver.GetName() == "liver" and tuple(round(c, 3) for c in liver.GetColor()) == (0.8, 0.2, 0.2)
    tag = vtk.reference("")
    assert liver.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), tag) and str(tag) == terminology
    from weaknet.predict import predict_volume

    expected, _ = predict_volume(run.output, read_volume(tmp_path / "ct.nrrd"), gamma=0.5, device="cpu")
    assert np.array_equal(nodes.segment_mask(mine, "Segment_1", volume), expected.array) and expected.array.any()
    assert np.array_equal(nodes.segment_mask(mine, "Segment_2", volume), kidney)
