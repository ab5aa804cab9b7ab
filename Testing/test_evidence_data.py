"""Evidence data: phantoms, metrics, simulated annotation and effort, real-data loaders and dataset readers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from weaknet import annotate, metrics
from weaknet.dataset import read_dataset
from weaknet.errors import InputError
from weaknet.phantoms import KINDS, make_phantom, write_phantom_set
from weaknet.realdata import (chaos_ct_cases, labelled_cases, msd_dataset, nuclei_cases, pyradiomics_cases,
                              stardist_cases, write_labelled_dataset)
from weaknet.volume import Geometry, Volume, read_volume, write_volume


# ------------------------------------------------------------------------------------------ phantoms

@pytest.mark.parametrize("kind,modality", [("ellipsoid", "CT"), ("bean", "MRI"), ("banana", "EM"),
                                           ("c_shape", "CT")])
def test_phantom_is_one_genus0_object_with_distractors_nearby(kind, modality):
    from skimage.measure import euler_number

    ph = make_phantom(kind, modality, seed=3)
    lab, dis, img = ph.label.array, ph.distractors.array, ph.image.array
    assert img.dtype == np.float32 and lab.dtype == np.uint8 and img.shape == (48, 64, 64)
    assert ph.image.geometry.spacing == (1.0, 1.0, 2.0)
    assert ndimage.label(lab)[1] == 1 and euler_number(lab, connectivity=3) == 1  # genus 0, no cavity
    assert not lab[[0, -1]].any() and not lab[:, [0, -1]].any() and not lab[:, :, [0, -1]].any()
    assert set(np.unique(dis)) == {0, 1, 2, 3} and not np.any((dis > 0) & (lab > 0))
    # every distractor lies within 8 mm of the target's surface
    dist = ndimage.distance_transform_edt(lab == 0, sampling=(2.0, 1.0, 1.0))
    for k in (1, 2, 3):
        assert dist[dis == k].min() <= 8.0
    # distractors' edges are stronger than the target's: larger contrast against the background
    bg = np.median(img[(lab == 0) & (dis == 0)])
    target_contrast = abs(np.median(img[ndimage.binary_erosion(lab, iterations=1)]) - bg)
    strongest = max(abs(np.median(img[dis == k]) - bg) for k in (1, 2, 3))
    assert strongest > 2 * target_contrast > 0


def test_phantom_is_reproducible_and_seed_dependent():
    a, b = make_phantom("random", "MRI", seed=11), make_phantom("random", "MRI", seed=11)
    c = make_phantom("random", "MRI", seed=12)
    assert a.kind == b.kind and a.kind in KINDS
    assert np.array_equal(a.image.array, b.image.array) and np.array_equal(a.label.array, b.label.array)
    assert not np.array_equal(a.label.array, c.label.array)


def test_phantom_options_oblique_no_distractors_and_bad_input():
    ph = make_phantom("bean", "CT", size=(40, 36, 24), spacing=(1.2, 1.2, 2.5), seed=1, distractors=False,
                      oblique=True)
    g = ph.image.geometry
    assert ph.image.array.shape == (24, 36, 40) and not np.allclose(g.direction_matrix, np.eye(3))
    assert np.allclose(g.to_lps([[19.5, 17.5, 11.5]]), 0.0, atol=1e-6)  # centred at LPS 0
    assert not ph.distractors.array.any() and ph.label.array.sum() > 300
    with pytest.raises(InputError, match="kind"):
        make_phantom("donut")
    with pytest.raises(InputError, match="modality"):
        make_phantom("bean", "PET")


def test_write_phantom_set_round_trips(tmp_path):
    paths = write_phantom_set(tmp_path, 2, size=(32, 32, 24), seed=5)
    assert len(labelled_cases(read_dataset(tmp_path / "DATASET.json"))) == 2
    assert [p.name for p, _ in paths] == ["phantom_000.nii.gz", "phantom_001.nii.gz"]
    img, lab = read_volume(paths[1][0]), read_volume(paths[1][1])
    ref = make_phantom("random", "CT", (32, 32, 24), (1.0, 1.0, 2.0), 5001)
    assert np.array_equal(lab.array, ref.label.array) and np.allclose(img.array, ref.image.array)
    assert img.geometry.matches(ref.image.geometry)


# ------------------------------------------------------------------------------------------ metrics

def test_overlap_metrics_by_hand():
    a = np.zeros((10, 10, 10), bool)
    a[2:6, 2:6, 2:6] = True
    b = np.roll(a, 1, axis=0)  # 48 of 64 voxels shared, union 80
    assert metrics.iou(a, b) == pytest.approx(0.6) and metrics.dice(a, b) == pytest.approx(0.75)
    assert metrics.iou(a, a) == 1.0 and metrics.iou(a, np.zeros_like(a)) == 0.0
    assert metrics.iou(np.zeros_like(a), np.zeros_like(a)) == 1.0


@pytest.mark.parametrize("axis,spacing,expected", [(0, (0.5, 1.0, 2.0), 6.0), (2, (0.5, 1.0, 2.0), 1.5)])
def test_surface_distances_by_hand_use_spacing_per_axis(axis, spacing, expected):
    # two 1-voxel-thick plates 3 voxels apart along one array axis: every distance is 3 voxels
    a = np.zeros((12, 12, 12), bool)
    b = np.zeros_like(a)
    sl_a, sl_b = [slice(1, 11)] * 3, [slice(1, 11)] * 3
    sl_a[axis], sl_b[axis] = 2, 5
    a[tuple(sl_a)], b[tuple(sl_b)] = True, True
    assert metrics.hd95(a, b, spacing) == pytest.approx(expected)
    assert metrics.mean_surface_distance(a, b, spacing) == pytest.approx(expected)
    g = Geometry.create((12, 12, 12), spacing)
    m = metrics.evaluate(Volume(a.astype(np.uint8), g), Volume(b.astype(np.uint8), g))
    assert m["iou"] == 0.0 and m["hd95_mm"] == pytest.approx(expected)
    assert np.isnan(metrics.hd95(a, np.zeros_like(a), spacing))


def test_surface_distances_agree_with_monai():
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
    import torch

    truth = make_phantom("bean", "CT", size=(40, 40, 30), seed=2).label.array.astype(bool)
    pred = ndimage.binary_dilation(truth, iterations=2) & ~np.roll(truth, 3, axis=2)
    spacing = (1.0, 1.0, 2.0)

    def onehot(m):
        return torch.from_numpy(np.stack([~m, m]).astype(np.float32))[None]

    kw = dict(include_background=False, spacing=spacing[::-1])
    hd = float(compute_hausdorff_distance(onehot(pred), onehot(truth), percentile=95, **kw))
    asd = float(compute_average_surface_distance(onehot(pred), onehot(truth), symmetric=True, **kw))
    assert metrics.hd95(pred, truth, spacing) == pytest.approx(hd, rel=0.05)
    assert metrics.mean_surface_distance(pred, truth, spacing) == pytest.approx(asd, rel=0.05)


# ------------------------------------------------------------------------------------------ annotation

def test_effort_of_a_box_by_hand():
    m = np.zeros((8, 12, 14), bool)
    m[2:6, 3:9, 4:9] = True  # d, h, w = 4, 6, 5; skimage's 4-neighbour perimeter of an a×b rectangle: 2(a+b)-4
    assert annotate.contour_length(m[3]) == pytest.approx(2 * (6 + 5) - 4)
    axial, coronal, sagittal = 4 * (2 * (6 + 5) - 4), 6 * (2 * (4 + 5) - 4), 5 * (2 * (4 + 6) - 4)
    assert annotate.full_effort(m) == pytest.approx((axial + coronal + sagittal) / 3)
    sl = [("axial", 3), ("sagittal", 6), ("coronal", 0)]  # the last misses the object: 0
    assert annotate.slices_effort(m, sl) == pytest.approx(18 + 16 + 0)
    assert annotate.effort_percent(annotate.points_effort(25), 250.0) == pytest.approx(10.0)
    known = annotate.slices_mask(m.shape, sl)
    assert known[3].all() and known[:, :, 6].all() and known.sum() == 12 * 14 + 8 * 12 + 8 * 14 - 12 - 14 - 8 + 1


def test_chosen_slices_cut_the_object_cover_planes_and_are_seeded():
    m = make_phantom("banana", "CT", seed=4).label.array
    s = annotate.choose_slices(m, 6, seed=1)
    assert s == annotate.choose_slices(m, 6, seed=1) and s != annotate.choose_slices(m, 6, seed=2)
    assert len(set(s)) == 6 and {p for p, _ in s} == {"axial", "coronal", "sagittal"}
    for plane, i in s:
        assert np.take(m, i, axis=annotate.PLANES[plane]).any()
    assert 0 < annotate.slices_effort(m, s[:1]) < annotate.full_effort(m)


def test_simulated_points_lie_on_the_true_surface():
    ph = make_phantom("bean", "CT", seed=6)
    pts = annotate.simulate_points(ph.label, 25, seed=0)
    assert pts.shape == (25, 3) and len(np.unique(pts.round(3), axis=0)) == 25
    ijk = np.round(ph.label.geometry.to_index(pts)).astype(int)
    dist = ndimage.distance_transform_edt(ph.label.array == 0, sampling=(2.0, 1.0, 1.0))
    inside = ndimage.distance_transform_edt(ph.label.array > 0, sampling=(2.0, 1.0, 1.0))
    at = (ijk[:, 2], ijk[:, 1], ijk[:, 0])
    assert np.all(np.maximum(dist[at], inside[at]) <= 2.0)  # within a voxel of the boundary


# ------------------------------------------------------------------------------------------ real data

def test_pyradiomics_cases_are_cropped_lesions(data_dir, tmp_path):
    cases = pyradiomics_cases(data_dir / "pyradiomics")
    assert [c.name for c in cases] == ["brain1", "brain2", "breast1", "lung1", "lung2"]
    full = read_volume(data_dir / "pyradiomics" / "lung1_label.nrrd")
    lung1 = cases[3]
    assert lung1.label.array.sum() == full.array.sum() == 837  # the crop keeps the whole lesion
    assert lung1.image.array.shape[1] < 512 and lung1.image.geometry.spacing == full.geometry.spacing
    # the crop sits where the lesion was: its first voxel maps to the same LPS point in both grids
    k = np.argwhere(lung1.label.array)[0]
    lps = lung1.label.geometry.to_lps(k[::-1][None])
    assert full.array[tuple(np.round(full.geometry.to_index(lps)[0][::-1]).astype(int))] == 1
    ds = read_dataset(write_labelled_dataset(tmp_path / "pyrad", cases, "pyradiomics", "CT"))
    assert len(labelled_cases(ds)) == 5


def test_nuclei_cases_are_single_nuclei(data_dir):
    cases = nuclei_cases(data_dir / "napari")
    assert 15 <= len(cases) <= 20
    for c in cases:
        assert ndimage.label(c.label.array)[1] == 1
        assert c.image.geometry.spacing == pytest.approx((0.52, 0.52, 0.29))
    # other nuclei remain in the crops as unlabeled neighbours
    assert any(c.image.array[c.label.array == 0].max() > np.median(c.image.array[c.label.array > 0])
               for c in cases)


def test_stardist_tiles_cover_the_image_and_keep_the_instances(data_dir):
    cases = stardist_cases(data_dir / "stardist")
    full = tifffile.imread(data_dir / "stardist" / "mask3d.tif")
    assert len(cases) == 9 and sum(c.label.array.size for c in cases) == full.size
    assert sum((c.label.array > 0).sum() for c in cases) == (full > 0).sum()
    for c in cases:  # each tile sits where it was cut: its voxel (0, 0, 0) maps to the full image's
        k0, j0, i0 = np.round(c.label.geometry.to_lps(np.zeros((1, 3)))[0][::-1]).astype(int)
        assert np.array_equal(c.label.array, full[:, j0:j0 + c.label.array.shape[1], i0:i0 + c.label.array.shape[2]])
        assert k0 == 0 and c.image.geometry.spacing == (1.0, 1.0, 1.0) and len(np.unique(c.label.array)) >= 6


def test_msd_hippocampus_layout(tmp_path):
    task = tmp_path / "Task04_Hippocampus"
    g = Geometry.create((20, 24, 18), (1.0, 1.0, 1.0))
    entries = []
    for n in (1, 3):
        lab = np.zeros(g.shape, np.uint8)
        lab[5:10, 6:12, 4:9] = 1
        lab[10:13, 6:12, 4:9] = 2  # anterior + posterior
        write_volume(Volume(np.random.default_rng(n).random(g.shape, np.float32), g),
                     task / "imagesTr" / f"hippocampus_{n:03d}.nii.gz")
        write_volume(Volume(lab, g), task / "labelsTr" / f"hippocampus_{n:03d}.nii.gz")
        entries.append({"image": f"./imagesTr/hippocampus_{n:03d}.nii.gz",
                        "label": f"./labelsTr/hippocampus_{n:03d}.nii.gz"})
    (task / "dataset.json").write_text(json.dumps({
        "name": "Hippocampus", "modality": {"0": "MRI"}, "labels": {"0": "background", "1": "Anterior",
                                                                     "2": "Posterior"},
        "numTraining": 2, "training": entries, "test": []}))
    ds = msd_dataset(task)
    cases = labelled_cases(ds)
    assert ds.modality == "MRI" and [c.name for c in cases] == ["hippocampus_001", "hippocampus_003"]
    assert (read_volume(cases[0].label).array > 0).sum() == 8 * 6 * 5
    with pytest.raises(InputError, match="MSD"):
        msd_dataset(tmp_path)


def test_chaos_ct_layout_maps_png_masks_onto_dicom_slices(tmp_path):
    import SimpleITK as sitk
    from PIL import Image

    patient = tmp_path / "CT" / "1"
    (patient / "DICOM_anon").mkdir(parents=True)
    (patient / "Ground").mkdir()
    n, rows, cols = 6, 16, 20
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(n):
        sl = np.full((rows, cols), -100, np.int16)
        sl[4:10, 5:5 + 2 * z + 2] = 200  # the "liver" widens with z
        img = sitk.GetImageFromArray(sl[None])
        img.SetSpacing((0.8, 0.8, 2.5))
        for tag, value in [("0008|0060", "CT"), ("0010|0020", "p1"), ("0020|000d", "1.2.3"),
                           ("0020|000e", "1.2.3.4"), ("0020|0013", str(z + 1)),
                           ("0020|0032", f"0\\0\\{2.5 * z}"), ("0020|0037", "1\\0\\0\\0\\1\\0"),
                           ("0018|0050", "2.5"), ("0028|0030", "0.8\\0.8")]:
            img.SetMetaData(tag, value)
        # file names run opposite to slice position; PNG n belongs to DICOM file n in name order
        name = n - 1 - z
        writer.SetFileName(str(patient / "DICOM_anon" / f"IMG-{name:04d}.dcm"))
        writer.Execute(img)
        Image.fromarray(((sl > 0) * 255).astype(np.uint8)).save(patient / "Ground" / f"liver_GT_{name:03d}.png")
    (case,) = chaos_ct_cases(tmp_path / "CT")
    img, lab = case.image.array, case.label.array
    assert img.shape == lab.shape == (n, rows, cols) and case.image.geometry.spacing[2] == pytest.approx(2.5)
    assert np.array_equal(lab > 0, img > 0)  # each mask sits on its own slice
    with pytest.raises(InputError, match="DICOM_anon"):
        chaos_ct_cases(tmp_path)
