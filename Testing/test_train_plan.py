"""The self-configured plan, the one padding policy, augmentation, validation from the weak labels, and the
command line's defaults on several sizes, modalities and spacings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from train_helpers import one_thread, phantom_dataset  # noqa: F401  (fixture)

from weaknet.checkpoint import MODEL_JSON
from weaknet.cli import main
from weaknet.config import TrainConfig, parse_setting
from weaknet.dataset import Case, write_dataset
from weaknet.errors import InputError
from weaknet.metrics import iou
from weaknet.nets import build_unet
from weaknet.padding import pad, pads_for
from weaknet.patches import PatchSampler
from weaknet.phantoms import make_phantom
from weaknet.plan import FULL_STEPS, PATCH_VOXELS, Fingerprint, plan_training
from weaknet.predict import foreground_probability, load_model, predict_volume
from weaknet.prepare import TrainingCase
from weaknet.train import train
from weaknet.volume import Geometry, Volume, read_volume, write_volume

pytestmark = pytest.mark.usefixtures("one_thread")


def _fp(shape, spacing=(1.0, 1.0, 1.0), cases=10) -> Fingerprint:
    return Fingerprint(cases, "CT", shape, shape, spacing, max(spacing) / min(spacing), 0.05, (10, 10, 10), 1, {})


@pytest.mark.parametrize("shape,spacing", [((48, 64, 64), (0.9, 0.9, 1.8)), ((24, 40, 40), (1.6, 1.6, 2.67)),
                                           ((25, 256, 256), (0.78, 0.78, 6.5)), ((300, 512, 512), (0.7, 0.7, 1.0)),
                                           ((13, 18, 18), (1.0, 1.0, 1.0))])
def test_plan_fits_the_median_image_and_the_device(shape, spacing):
    cfg, notes = plan_training(TrainConfig(), _fp(shape, spacing), "cpu")
    m = 2 ** (cfg.depth - 1)
    assert all(p % m == 0 for p in cfg.patch) and 2 <= cfg.depth <= 5
    # never larger than the median image where that fits the net; small sides padded to one multiple
    assert all(p <= max(s, m) for p, s in zip(cfg.patch, shape))
    assert np.prod(cfg.patch) <= 1.3 * PATCH_VOXELS["cpu"]  # nearest multiples may pass the budget a little
    assert cfg.epochs * cfg.steps_per_epoch >= 20 and cfg.base_channels == 16 and cfg.batch_size == 2
    assert any("patch" in n for n in notes) and any("budget" in n for n in notes)
    cfg.validate()
    gpu, _ = plan_training(TrainConfig(), _fp(shape, spacing), "cuda")
    assert np.prod(gpu.patch) >= np.prod(cfg.patch) and gpu.base_channels == 32


def test_every_planned_value_is_overridable():
    given = TrainConfig(patch=(16, 32, 32), depth=3, base_channels=8, batch_size=4, epochs=3, steps_per_epoch=7)
    cfg, _ = plan_training(given, _fp((48, 64, 64)), "cpu")
    assert (cfg.patch, cfg.depth, cfg.base_channels, cfg.batch_size, cfg.epochs, cfg.steps_per_epoch) == \
        ((16, 32, 32), 3, 8, 4, 3, 7)
    # a budget sets the step count; doubling it doubles the steps
    one, _ = plan_training(TrainConfig(budget_minutes=1), _fp((48, 64, 64)), "cpu")
    two, _ = plan_training(TrainConfig(budget_minutes=2), _fp((48, 64, 64)), "cpu")
    assert abs(two.epochs * two.steps_per_epoch - 2 * one.epochs * one.steps_per_epoch) <= two.epochs
    # full supervision (exact masks) gets FULL_STEPS × the budget's steps, weak and slice labels the budget's
    full, notes = plan_training(TrainConfig(budget_minutes=1, supervision="full"), _fp((48, 64, 64)), "cpu")
    slices, _ = plan_training(TrainConfig(budget_minutes=1, supervision="slices"), _fp((48, 64, 64)), "cpu")
    assert abs(full.epochs * full.steps_per_epoch - FULL_STEPS * one.epochs * one.steps_per_epoch) <= full.epochs
    assert (slices.epochs, slices.steps_per_epoch) == (one.epochs, one.steps_per_epoch)
    assert any("full supervision" in n for n in notes)


def test_front_end_text_is_parsed_with_the_command_line_limits():
    assert parse_setting("epochs", "12") == 12 and parse_setting("epochs", "") is None
    assert parse_setting("patch", "32") == (32, 32, 32) and parse_setting("patch", "16,32,32") == (16, 32, 32)
    for name, text in [("epochs", "1e12"), ("epochs", "2.5"), ("patch", "100000"), ("lambda_", "-1"),
                       ("depth", "1"), ("supervision", "strong")]:
        with pytest.raises(InputError):
            parse_setting(name, text)


def test_prediction_pads_a_small_volume_exactly_as_training_does():
    torch.manual_seed(0)
    from weaknet.config import NetConfig

    core = build_unet(NetConfig(4, 2, 0), 1, 2).eval()
    image = np.random.default_rng(0).standard_normal((9, 13, 11)).astype(np.float32)
    patch = (16, 16, 16)
    prob = foreground_probability(core, image, patch, 0.25, torch.device("cpu"))
    pads = pads_for(image.shape, patch)
    with torch.inference_mode():
        x = torch.from_numpy(pad(image, pads))[None, None]
        ref = torch.softmax(core(x), 1)[0, 1].numpy()
    ref = ref[tuple(slice(a, ref.shape[i] - b) for i, (a, b) in enumerate(pads))]
    assert prob.shape == image.shape
    np.testing.assert_allclose(prob, ref, atol=1e-5)
    # training's padded case: the same image padding (plus the augmentation margin)
    tc = TrainingCase("c", image, np.ones(image.shape, np.uint8), None, Geometry.create(image.shape[::-1]))
    s = PatchSampler([tc], patch, 1, augment=False)
    m = s.augmenter.margin
    core_region = s.cases[0].image[tuple(slice(mi, mi + p) for mi, p in zip(m, patch))]
    np.testing.assert_array_equal(core_region, pad(image, pads))


def test_mirroring_makes_the_prediction_equivariant_to_flips():
    """Test-time mirroring: the mean over the 8 flips, so flipping the input flips the probability exactly
    (one window: the tiling is symmetric), while the plain net is not flip-equivariant."""
    torch.manual_seed(0)
    from weaknet.config import NetConfig

    core = build_unet(NetConfig(4, 2, 0), 1, 2).eval()
    image = np.random.default_rng(1).standard_normal((16, 16, 16)).astype(np.float32)
    args = ((16, 16, 16), 0.25, torch.device("cpu"))
    flipped = np.ascontiguousarray(image[::-1, :, ::-1])
    plain = foreground_probability(core, image, *args)
    tta = foreground_probability(core, image, *args, mirror=True)
    tta_flipped = foreground_probability(core, flipped, *args, mirror=True)
    np.testing.assert_allclose(tta_flipped, tta[::-1, :, ::-1], atol=1e-5)
    assert np.abs(foreground_probability(core, flipped, *args) - plain[::-1, :, ::-1]).max() > 1e-3
    assert np.abs(tta - plain).max() > 1e-3


def test_augmented_batches_are_deterministic_and_keep_labels():
    rng = np.random.default_rng(0)
    target = np.zeros((20, 24, 24), np.uint8)
    target[6:14, 8:16, 8:16] = 1
    tc = TrainingCase("c", rng.standard_normal(target.shape).astype(np.float32), target,
                      np.ones(target.shape, np.float32), Geometry.create(target.shape[::-1]))
    s = PatchSampler([tc], (16, 16, 16), 2, augment=True)
    a = list(s.epoch(3, 1, 6))
    b = list(s.epoch(3, 1, 6))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_array_equal(x.target, y.target)
    values = np.unique(np.concatenate([x.target.ravel() for x in a]))
    assert set(values.tolist()) <= {0, 1, 255} and 1 in values
    assert any(not np.array_equal(x.image, y.image) for x, y in zip(a, list(s.epoch(3, 2, 6))))


def _small_and_large(root, n: int):
    """The same ellipsoid phantoms twice: cut to the object's bounding box plus 2 voxels (at most 27 voxels a
    side, smaller than the 32³ patch along every axis) and whole (36×48×48 voxels, larger along every axis).
    Each test case is (image, label, the object's box in it)."""
    small, large = [], []
    for s in range(n):
        ph = make_phantom("ellipsoid", "CT", size=(48, 48, 36), spacing=(1.0, 1.0, 1.0), seed=40 + s,
                          distractors=False)
        lab = ph.label.array
        idx = np.argwhere(lab)
        lo, hi = np.maximum(idx.min(0) - 2, 0), np.minimum(idx.max(0) + 3, lab.shape)
        sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        g = Geometry.create(tuple(int(v) for v in (hi - lo)[::-1]), (1.0, 1.0, 1.0))
        assert max(hi - lo) < 32
        small.append((Volume(ph.image.array[sl].copy(), g), Volume(lab[sl].copy(), g), ...))
        large.append((ph.image, ph.label, sl))
    out = {}
    for name, cases in (("small", small), ("large", large)):
        entries = []
        for i, (img, lab, _) in enumerate(cases[:-3]):
            write_volume(img, root / name / f"img{i}.nii.gz")
            write_volume(lab, root / name / f"lab{i}.nii.gz")
            entries.append(Case(image=root / name / f"img{i}.nii.gz", template=root / name / f"lab{i}.nii.gz"))
        out[name] = (write_dataset(root / name / "dataset.json", name=name, modality="CT", training=entries),
                     cases[-3:])
    return out


@pytest.mark.slow
def test_volumes_smaller_than_the_patch_score_as_larger_ones(tmp_path):
    sets = _small_and_large(tmp_path, 9)
    scores = {}
    for name, (ds, test) in sets.items():
        cfg = TrainConfig(patch=32, depth=3, base_channels=8, epochs=8, steps_per_epoch=50,
                          lambda_=0.0, device="cpu", val_fraction=0.0)
        model = load_model(train(ds, tmp_path / f"model_{name}", cfg, show_progress=False), "cpu")
        # scored on the object's box in both (far-field false positives of the larger field are another matter)
        scores[name] = np.mean([iou(predict_volume(model, img)[0].array[box], lab.array[box])
                                for img, lab, box in test])
    print(scores)
    assert scores["large"] > 0.75 and abs(scores["small"] - scores["large"]) <= 0.03


def test_cli_defaults_on_several_sizes_modalities_and_spacings(tmp_path, capsys):
    """Only --dataset, --output (and a short budget for the test): the plan adapts to each dataset; the model
    predicts on the input's own grid; model.json records the plan, held-out cases and best epoch."""
    for modality, size, spacing in [("CT", (20, 24, 16), (1.6, 1.6, 3.0)), ("MRI", (40, 36, 20), (0.9, 0.9, 1.8)),
                                    ("EM", (18, 18, 18), (1.0, 1.0, 1.0))]:
        root = tmp_path / modality
        ds = phantom_dataset(root / "data", n=5, kind="weak", size=size, spacing=spacing, modality=modality,
                             oblique=True, dilate=1)
        assert main(["train", "--dataset", str(ds), "--output", str(root / "model"), "--device", "cpu",
                     "--budget-minutes", "0.08"]) == 0
        out = capsys.readouterr().out
        assert "plan: patch" in out and "held out" in out
        info = json.loads((root / "model" / MODEL_JSON).read_text(encoding="utf-8"))
        m = 2 ** (info["config"]["depth"] - 1)
        median_dhw = size[::-1]
        assert all(p <= max(s, m) for p, s in zip(info["config"]["patch"], median_dhw))
        assert len(info["held_out"]) == 1 and info["best_epoch"] >= 1 and info["plan"]
        img = root / "data" / "img0.nii.gz"
        assert main(["predict", "--model", str(root / "model"), "--image", str(img),
                     "--output", str(root / "mask.nii.gz")]) == 0
        mask = read_volume(root / "mask.nii.gz")
        assert mask.geometry.matches(read_volume(img).geometry)


def test_progress_lines_and_the_agreement_warning(tmp_path, capsys):
    ds = phantom_dataset(tmp_path / "data", n=4, kind="weak", size=(20, 20, 16))
    assert main(["train", "--dataset", str(ds), "--output", str(tmp_path / "m"), "--device", "cpu",
                 "--patch", "16", "--base-channels", "4", "--depth", "2", "--epochs", "1",
                 "--steps-per-epoch", "1", "--progress-lines"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("@weaknet ")]
    events = [json.loads(ln[len("@weaknet "):]) for ln in lines]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "plan" and "start" in kinds and "epoch" in kinds and kinds[-1] == "done"
    # one step of training cannot agree with the templates: the warning names the causes
    warn = [e["message"] for e in events if e["event"] == "warning"]
    assert warn and "λ too strong" in warn[0] and "too little training" in warn[0]
    info = json.loads((tmp_path / "m" / MODEL_JSON).read_text(encoding="utf-8"))
    assert info["warnings"] == warn and info["train_agreement_iou"] < 0.5


def test_best_epoch_is_kept(tmp_path):
    ds = phantom_dataset(tmp_path / "data", n=5, kind="weak", size=(20, 20, 16))
    cfg = TrainConfig(patch=16, depth=2, base_channels=4, epochs=3, steps_per_epoch=4, device="cpu",
                      learning_rate=0.0)  # lr 0: every epoch scores the same, so epoch 1 stays the best
    out = train(ds, tmp_path / "m", cfg, show_progress=False)
    info = json.loads((out / MODEL_JSON).read_text(encoding="utf-8"))
    assert info["best_epoch"] == 1 and info["epochs_done"] == 3 and len(info["held_out"]) == 1
    log = [json.loads(ln) for ln in (out / "training_log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["best_epoch"] for r in log] == [1, 1, 1] and all(r["val_iou_templates"] is not None for r in log)
