"""Volume I/O keeps the full geometry (oblique direction, anisotropic spacing) through NIfTI, NRRD, MHA
and a DICOM series folder written and read back with SimpleITK; bad volumes get one clear line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from weaknet.cli import main
from weaknet.errors import GeometryError, InputError
from weaknet.volume import Geometry, Volume, read_volume, write_volume


def oblique_geometry() -> Geometry:
    a, b = np.radians(20.0), np.radians(-12.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return Geometry.create((23, 19, 11), (0.7, 0.9, 2.5), (-31.5, 12.25, 87.0), rz @ rx)


@pytest.fixture
def volume():
    g = oblique_geometry()
    arr = np.random.default_rng(0).integers(-1000, 2000, g.shape).astype(np.int16)
    return Volume(arr, g)


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_round_trip_keeps_voxels_and_oblique_anisotropic_geometry(tmp_path, volume, ext):
    path = write_volume(volume, tmp_path / "deep" / f"ct{ext}")
    back = read_volume(path)
    assert np.array_equal(back.array, volume.array) and back.array.dtype == np.int16
    assert back.geometry.matches(volume.geometry), (back.geometry, volume.geometry)
    # a voxel's LPS position survives too
    ijk = np.array([[3.0, 17.0, 9.0]])
    assert np.allclose(back.geometry.to_lps(ijk), volume.geometry.to_lps(ijk), atol=1e-3)


def test_dicom_series_folder_round_trip(tmp_path, volume):
    """Write one DICOM file per slice (positions along the oblique slice normal) and read the folder."""
    g = volume.geometry
    d = g.direction_matrix
    folder = tmp_path / "series"
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    uid = "1.2.826.0.1.3680043.2.1125.1." + "4242"
    orientation = "\\".join(f"{v:.10f}" for v in np.concatenate([d[:, 0], d[:, 1]]))
    for k in range(g.size[2]):
        sl = sitk.GetImageFromArray(volume.array[k][None])  # one (1, H, W) slice
        sl.SetSpacing(g.spacing)  # the writer takes Pixel Spacing from the image
        pos = g.to_lps(np.array([[0.0, 0.0, k]]))[0]
        tags = {"0008|0060": "CT", "0020|000d": uid + ".1", "0020|000e": uid + ".2", "0020|0052": uid + ".3",
                "0008|0018": f"{uid}.10.{k}", "0020|0013": str(k + 1), "0020|0037": orientation,
                "0020|0032": "\\".join(f"{v:.10f}" for v in pos), "0018|0050": f"{g.spacing[2]:.10f}"}
        for key, value in tags.items():
            sl.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(sl)
    back = read_volume(folder)
    assert np.array_equal(back.array, volume.array)
    assert back.geometry.size == g.size
    assert np.allclose(back.geometry.spacing, g.spacing, atol=1e-4)
    assert np.allclose(back.geometry.origin, g.origin, atol=1e-4)
    assert np.allclose(back.geometry.direction_matrix, d, atol=1e-5)


def test_bad_volumes_raise_one_line(tmp_path):
    cases = {
        "missing.nii.gz": (None, "no such file"),
        "empty.nrrd": (b"", "file is empty"),
        "corrupt.nrrd": (b"NRRD0004\ntype: what\ndimension: 3\n\n\x00\x01", "cannot read as a volume"),
        "random.nii.gz": (np.random.default_rng(0).bytes(500), "cannot read as a volume"),
    }
    for name, (data, expected) in cases.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(InputError, match=expected) as err:
            read_volume(path)
        assert name in str(err.value) and "\n" not in str(err.value)
    sitk.WriteImage(sitk.Image(8, 8, sitk.sitkFloat32), str(tmp_path / "flat.nrrd"))
    with pytest.raises(InputError, match="2-D"):
        read_volume(tmp_path / "flat.nrrd")
    sitk.WriteImage(sitk.Image([6, 6, 6], sitk.sitkVectorFloat32, 3), str(tmp_path / "rgb.nrrd"))
    with pytest.raises(InputError, match="scalar volume"):
        read_volume(tmp_path / "rgb.nrrd")
    (tmp_path / "nodicom").mkdir()
    (tmp_path / "nodicom" / "notes.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(InputError, match="no DICOM series"):
        read_volume(tmp_path / "nodicom")


def test_mismatched_geometry_is_named(volume):
    g = volume.geometry
    other = Geometry.create(g.size, (0.7, 0.9, 3.0), g.origin, g.direction_matrix)
    with pytest.raises(GeometryError, match=r"spacing .* resample it onto"):
        g.require_match(other, "the template", "the image")
    moved = Geometry.create(g.size, g.spacing, np.add(g.origin, 5.0), g.direction_matrix)
    with pytest.raises(GeometryError, match="origin"):
        g.require_match(moved)
    g.require_match(Geometry.create(g.size, g.spacing, g.origin, g.direction_matrix))


def test_mismatched_template_geometry_through_the_cli(tmp_path, volume, capsys):
    """`weaknet train` on a dataset whose template lies on another grid: exit 2, one line naming both."""
    write_volume(Volume(volume.array.astype(np.float32), volume.geometry), tmp_path / "img.nii.gz")
    g = volume.geometry
    wrong = Geometry.create(g.size, (1.0, 1.0, 1.0), g.origin, g.direction_matrix)
    write_volume(Volume(np.ones(g.shape, np.uint8), wrong), tmp_path / "tpl.nii.gz")
    (tmp_path / "dataset.json").write_text(json.dumps({
        "name": "mismatch", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "organ"},
        "training": [{"image": "img.nii.gz", "template": "tpl.nii.gz"}]}))
    code = main(["train", "--dataset", str(tmp_path / "dataset.json"), "--output", str(tmp_path / "model"),
                 "--epochs", "1", "--steps-per-epoch", "1", "--patch", "8", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "does not match" in err and "tpl.nii.gz" in err and err.strip().count("\n") == 0
