"""Thin, curved anatomy phantoms (hippocampus-, caudate-like tubes, a folded sheet): one genus-0 object of
the intended size and thinness at isotropic and anisotropic spacing, with exact partial-volume boundaries."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from weaknet.phantoms import THIN_KINDS, make_label, make_phantom

# kind → (volume range mm³, largest inscribed radius range mm)
EXPECTED = {"hippocampus": ((2_500, 5_500), (4.0, 8.0)), "caudate": ((3_000, 7_000), (4.5, 9.0)),
            "sheet": ((3_500, 8_000), (1.5, 3.0))}


@pytest.mark.parametrize("spacing,size", [((1.0, 1.0, 1.0), (64, 64, 64)), ((0.9, 0.9, 2.5), (72, 72, 26))])
@pytest.mark.parametrize("kind", THIN_KINDS)
def test_thin_phantom_is_one_thin_genus0_object(kind, spacing, size):
    from skimage.measure import euler_number

    label = make_label(kind, size, spacing, seed=1, oblique=True)
    m = label.array
    assert m.dtype == np.uint8 and m.shape == size[::-1] and label.geometry.spacing == spacing
    assert ndimage.label(m)[1] == 1 and euler_number(m, connectivity=3) == 1  # genus 0, no cavity
    assert not m[[0, -1]].any() and not m[:, [0, -1]].any() and not m[:, :, [0, -1]].any()
    (vlo, vhi), (rlo, rhi) = EXPECTED[kind]
    assert vlo <= m.sum() * np.prod(spacing) <= vhi
    inscribed = ndimage.distance_transform_edt(m, sampling=spacing[::-1]).max()
    assert rlo <= inscribed <= rhi, inscribed


def test_partial_volume_and_label_agree():
    ph = make_phantom("hippocampus", "MRI", size=(64, 64, 64), spacing=(1.0, 1.0, 1.0), seed=2,
                      distractors=False)
    lab, occ = ph.label.array, ph.occupancy.array
    assert np.array_equal(lab, make_label("hippocampus", (64, 64, 64), (1.0, 1.0, 1.0), seed=2).array)
    assert occ.dtype == np.float32 and occ.min() >= 0 and occ.max() <= 1
    boundary = lab.astype(bool) & ~ndimage.binary_erosion(lab)
    partial = (occ > 0.02) & (occ < 0.98)
    assert partial[boundary].mean() > 0.6  # most boundary voxels are partly outside
    assert (occ[lab == 0] > 0).sum() > 0.3 * boundary.sum()  # and outside voxels partly inside
    assert abs(occ.sum() / lab.sum() - 1) < 0.05  # the same volume
    assert ((occ > 0.5) == lab.astype(bool))[partial].mean() > 0.85  # centre inside ⇔ mostly inside
    # the image follows the partial volume: brighter where more of the voxel is target
    img = ph.image.array
    assert np.corrcoef(img[partial], occ[partial])[0, 1] > 0.5


def test_thin_kinds_are_not_drawn_by_random():
    from weaknet.phantoms import KINDS

    assert not set(THIN_KINDS) & set(KINDS)
    assert all(make_phantom("random", "CT", size=(32, 32, 24), seed=s).kind in KINDS for s in range(3))
