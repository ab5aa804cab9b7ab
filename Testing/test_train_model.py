"""Training → model directory → prediction: geometry round trip, resume equivalence, supervision modes,
command line, and bad input (clear one-line errors, nothing lost)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file
from train_helpers import one_thread, phantom_dataset, tiny_config  # noqa: F401  (fixture)

from weaknet.checkpoint import CHECKPOINT, LOG, MODEL_JSON, WEIGHTS, ModelError
from weaknet.cli import main
from weaknet.dataset import read_dataset
from weaknet.errors import InputError
from weaknet.phantoms import make_phantom
from weaknet.postprocess import apply as apply_postprocess
from weaknet.predict import predict_volume
from weaknet.train import train
from weaknet.volume import Volume, read_volume, write_volume

pytestmark = pytest.mark.usefixtures("one_thread")


def test_round_trip_keeps_oblique_anisotropic_geometry(tmp_path):
    # training images with different spacings -> resampled to a common (median) spacing
    ds = phantom_dataset(tmp_path / "data", n=2, kind="full", size=(24, 20, 16), oblique=True,
                         spacings=[(1.0, 1.2, 2.0), (0.8, 0.8, 2.5), (0.9, 1.0, 2.25)], validation=True)
    model = train(ds, tmp_path / "model", tiny_config(supervision="full", epochs=1), show_progress=False)
    info = json.loads((model / MODEL_JSON).read_text(encoding="utf-8"))
    np.testing.assert_allclose(info["spacing"], [0.9, 1.0, 2.25], rtol=1e-6)
    assert info["config"]["supervision"] == "full"
    assert info["epochs_done"] == 1 and 0.0 <= info["last_val_iou"] <= 1.0
    log = [json.loads(ln) for ln in (model / LOG).read_text(encoding="utf-8").splitlines()]
    assert [r["epoch"] for r in log] == [1] and {"ce", "wmse", "val_iou", "loss"} <= set(log[0])

    ph = make_phantom("bean", "CT", size=(30, 18, 16), spacing=(0.7, 1.3, 3.1), seed=5, oblique=True)
    image = tmp_path / "new.nrrd"
    write_volume(ph.image, image)
    assert main(["predict", "--model", str(model), "--image", str(image), "--output", str(tmp_path / "m.nii.gz"),
                 "--probabilities", str(tmp_path / "p.nii.gz"), "--device", "cpu"]) == 0
    mask, prob = read_volume(tmp_path / "m.nii.gz"), read_volume(tmp_path / "p.nii.gz")
    for v in (mask, prob):
        assert v.geometry.size == ph.image.geometry.size
        np.testing.assert_allclose(v.geometry.spacing, ph.image.geometry.spacing, rtol=1e-6)
        np.testing.assert_allclose(v.geometry.origin, ph.image.geometry.origin, atol=1e-5)
        np.testing.assert_allclose(v.geometry.direction, ph.image.geometry.direction, atol=1e-6)
    assert set(np.unique(mask.array)) <= {0, 1} and 0 <= prob.array.min() <= prob.array.max() <= 1
    post = info["config"]["postprocess"]  # planned: largest component (every target is one object)
    assert post == "largest"
    np.testing.assert_array_equal(mask.array, apply_postprocess(prob.array >= 0.5, post))
    # smaller than the 16³ patch along k: padded, not a crash; gamma override honoured
    small = Volume(ph.image.array[:5, :9], ph.image.geometry.__class__.create(
        (30, 9, 5), ph.image.geometry.spacing, ph.image.geometry.origin, ph.image.geometry.direction_matrix))
    m2, p2 = predict_volume(model, small, gamma=0.9, device="cpu")
    assert m2.array.shape == (5, 9, 30) and np.array_equal(m2.array, apply_postprocess(p2.array >= 0.9, post))
    # a folder of images -> a folder of masks under the same names
    assert main(["predict", "--model", str(model), "--image", str(tmp_path / "data"), "--output",
                 str(tmp_path / "masks"), "--device", "cpu"]) == 0
    names = sorted(p.name for p in (tmp_path / "data").glob("*.nii.gz"))
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == names


def _interrupt_at(epoch: int, step: int):
    def progress(event):
        if event["event"] == "step" and event["epoch"] == epoch and event["step"] == step:
            raise KeyboardInterrupt
    return progress


def test_resume_after_interrupt_reaches_the_same_weights(tmp_path):
    ds = phantom_dataset(tmp_path / "data", n=2, kind="weak", dilate=1)
    cfg = tiny_config(epochs=3, steps_per_epoch=3, lambda_=1.0)  # with the reconstruction net
    full = train(ds, tmp_path / "full", cfg, show_progress=False)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in the middle of epoch 3
        train(ds, tmp_path / "cut", cfg, progress=_interrupt_at(3, 2), show_progress=False)
    done = json.loads((tmp_path / "cut" / MODEL_JSON).read_text(encoding="utf-8"))["epochs_done"]
    assert done == 2  # only epoch 3 lost
    with pytest.raises(InputError, match="--resume"):  # not resuming would overwrite: refused
        train(ds, tmp_path / "cut", cfg, show_progress=False)
    train(ds, tmp_path / "cut", cfg, resume=True, show_progress=False)
    a, b = load_file(full / WEIGHTS), load_file(tmp_path / "cut" / WEIGHTS)
    assert a.keys() == b.keys() and any(k.startswith("recon.") for k in a)
    for k in a:
        assert np.array_equal(a[k].numpy(), b[k].numpy()), k
    log = [json.loads(ln)["epoch"] for ln in (tmp_path / "cut" / LOG).read_text(encoding="utf-8").splitlines()]
    assert log == [1, 2, 3]


def test_slice_supervision_only_labels_the_annotated_slices(tmp_path):
    from weaknet.prepare import prepare

    ds = read_dataset(phantom_dataset(tmp_path / "data", n=1, kind="slices"))
    prep = prepare(ds, "slices", boundary_distance=5.0)
    t = prep.training[0].target
    k = ds.training[0].slices[0][1]
    labelled = t != 255
    assert labelled[k].all() and labelled[:, 12].all()
    assert labelled.sum() == t.shape[1] * t.shape[2] + t.shape[0] * t.shape[2] - t.shape[2]
    assert (t == 1).sum() > 0 and prep.training[0].weight is None
    model = train(ds, tmp_path / "model", tiny_config(supervision="slices"), show_progress=False)
    assert not any(k.startswith("recon.") for k in load_file(model / WEIGHTS))  # CE only: no reconstruction net


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    ds = phantom_dataset(tmp_path / "data", n=1, kind="weak")
    doc = json.loads(ds.read_text(encoding="utf-8"))

    def run_with(entry_patch: dict, *extra) -> str:
        bad = dict(doc, training=[dict(doc["training"][0], **entry_patch)])
        p = tmp_path / "data" / "bad.json"
        p.write_text(json.dumps(bad), encoding="utf-8")
        code = main(["train", "--dataset", str(p), "--output", str(tmp_path / "out"), "--epochs", "1",
                     "--device", "cpu", "--patch", "16", "--depth", "2", *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        return err

    assert "missing.nii.gz, which does not exist" in run_with({"image": "missing.nii.gz"})
    # template on another grid
    ph = make_phantom("ellipsoid", "CT", size=(20, 20, 20), spacing=(1, 1, 1), seed=0, distractors=False)
    write_volume(ph.label, tmp_path / "data" / "other.nii.gz")
    assert "does not match image" in run_with({"template": "other.nii.gz"})
    empty = read_volume(tmp_path / "data" / "tpl0.nii.gz")
    write_volume(empty.like(np.zeros_like(empty.array)), tmp_path / "data" / "empty.nii.gz")
    assert "is empty" in run_with({"template": "empty.nii.gz"})
    assert "CUDA is not available" in run_with({}, "--device", "cuda")
    assert "multiple of 2" in run_with({}, "--patch", "15")
    assert not (tmp_path / "out" / WEIGHTS).exists()


def test_foreign_or_corrupt_model_directory_is_refused(tmp_path):
    ds = phantom_dataset(tmp_path / "data", n=1, kind="weak")
    model = train(ds, tmp_path / "model", tiny_config(), show_progress=False)
    vol = read_volume(tmp_path / "data" / "img0.nii.gz")
    info = json.loads((model / MODEL_JSON).read_text(encoding="utf-8"))
    (model / MODEL_JSON).write_text(json.dumps(dict(info, format=99, weaknet_version="9.0")))
    with pytest.raises(ModelError, match="format 99 written by weaknet 9.0"):
        predict_volume(model, vol, device="cpu")
    (model / MODEL_JSON).write_text(json.dumps(info), encoding="utf-8")
    ckpt = (model / CHECKPOINT).read_bytes()
    (model / CHECKPOINT).write_bytes(ckpt[: len(ckpt) // 2])
    with pytest.raises(ModelError, match="corrupt checkpoint"):
        train(ds, model, tiny_config(epochs=2), resume=True, show_progress=False)
    (model / WEIGHTS).write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="corrupt weights"):
        predict_volume(model, vol, device="cpu")
    with pytest.raises(ModelError, match="not a WeakNet model directory"):
        predict_volume(tmp_path / "data", vol, device="cpu")


def test_points_entries_are_fitted_once_and_cached(tmp_path, monkeypatch):
    from weaknet import template as template_mod
    from weaknet.dataset import Case, write_dataset
    from weaknet.metrics import iou
    from weaknet.points import write_points
    from weaknet.prepare import prepare
    from weaknet.sampling import sample_surface_points

    ph = make_phantom("ellipsoid", "CT", size=(32, 32, 24), spacing=(1.0, 1.0, 1.5), seed=1, distractors=False)
    write_volume(ph.image, tmp_path / "img.nii.gz")
    write_points(sample_surface_points(ph.label.array, ph.label.geometry, 12, seed=0), tmp_path / "p.mrk.json")
    ds = read_dataset(write_dataset(tmp_path / "dataset.json", modality="CT", training=[
        Case(image=tmp_path / "img.nii.gz", points=tmp_path / "p.mrk.json")]))
    calls = []
    real_fit = template_mod.fit_template
    monkeypatch.setattr(template_mod, "fit_template", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    first = prepare(ds, "weak", 3.0, cache_dir=tmp_path / "cache")
    again = prepare(ds, "weak", 3.0, cache_dir=tmp_path / "cache")
    assert len(calls) == 1 and len(list((tmp_path / "cache").glob("*.nrrd"))) == 1
    np.testing.assert_array_equal(first.training[0].target, again.training[0].target)
    assert iou(first.training[0].target, ph.label.array) > 0.6  # the template is a rough version of the truth
    w = first.training[0].weight
    assert set(np.unique(w)) == {np.float32(0.1), np.float32(1.0)}
    # moving one point changes the key: a new fit
    pts = sample_surface_points(ph.label.array, ph.label.geometry, 12, seed=0)
    pts[0] += 1.0
    write_points(pts, tmp_path / "p.mrk.json")
    prepare(ds, "weak", 3.0, cache_dir=tmp_path / "cache")
    assert len(calls) == 2


def test_msd_task_folder_is_read_directly(tmp_path):
    ph = make_phantom("ellipsoid", "MRI", size=(16, 16, 16), spacing=(1, 1, 1), seed=0, distractors=False)
    for name in ("case_001", "case_002"):
        write_volume(ph.image, tmp_path / "Task01" / "imagesTr" / f"{name}.nii.gz")
        write_volume(ph.label, tmp_path / "Task01" / "labelsTr" / f"{name}.nii.gz")
    (tmp_path / "Task01" / "dataset.json").write_text(json.dumps({
        "name": "Task01", "modality": {"0": "T2"}, "labels": {"0": "background", "1": "organ"},
        "training": [{"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"}
                     for n in ("case_001", "case_002")], "test": []}))
    ds = read_dataset(tmp_path / "Task01")
    assert ds.modality == "MRI" and [c.name for c in ds.training] == ["case_001", "case_002"]
    (tmp_path / "Task01" / "dataset.json").unlink()  # a bare imagesTr/labelsTr folder pairs files by name
    assert [c.label.name for c in read_dataset(tmp_path / "Task01").training] == ["case_001.nii.gz",
                                                                                 "case_002.nii.gz"]
