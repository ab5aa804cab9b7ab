"""The dataset families of ``weaknet bench families`` / ``sweep``: the look-alike neighbour and the clean family."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage

from weaknet import families
from weaknet.phantoms import make_phantom


def test_the_lookalike_touches_the_target_with_its_intensity_and_leaves_the_label():
    ph = make_phantom("bean", "CT", (48, 48, 32), (1.0, 1.0, 1.5), seed=3, distractors=False)
    image = families.add_lookalike(ph.image, ph.label, 3)
    added = image.array - ph.image.array
    inside = ph.label.array > 0
    blob = added > 0.5 * added.max()
    assert not (blob & inside).any() and blob.sum() > 0.05 * inside.sum()
    sp = np.asarray(ph.label.geometry.spacing[::-1])
    gap = ndimage.distance_transform_edt(~inside, sampling=sp)[blob].min()
    assert gap <= 2.5  # touching: 0.5–1.5 mm plus the partial-volume blur and one voxel
    core = ndimage.binary_erosion(blob, iterations=1)
    level = np.median(ph.image.array[ndimage.binary_erosion(inside, iterations=1)])
    assert abs(np.median(image.array[core]) - level) < 0.25 * abs(level - 40.0)  # the target's level, not the bg
    assert image.geometry == ph.image.geometry


def test_the_clean_family_has_no_distractor_and_no_lookalike(monkeypatch):
    monkeypatch.setitem(families.FAMILIES, "clean", replace(families.FAMILIES["clean"], count=2))
    monkeypatch.setitem(families.FAMILIES, "ct", replace(families.FAMILIES["ct"], count=2))
    clean, modality = families.family_cases("clean")
    busy, _ = families.family_cases("ct")
    assert modality == "CT" and len(clean) == 2
    for c in clean:
        assert c.image.array.shape == tuple(families.FAMILIES["clean"].size[::-1])
    def far_spread(cases):  # intensity spread away from the target: background texture and noise only when clean
        vals = []
        for c in cases:
            sp = np.asarray(c.label.geometry.spacing[::-1])
            far = ndimage.distance_transform_edt(c.label.array == 0, sampling=sp) > 4
            vals.append(np.percentile(c.image.array[far], 99.5) - np.percentile(c.image.array[far], 0.5))
        return max(vals)
    assert far_spread(clean) < 150 < far_spread(busy)  # CT: background 40 ± texture/noise; distractors 700 / −400
