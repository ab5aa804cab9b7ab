"""fit_template: points → Template (mask in the image grid, mesh, signed distance), validated."""

from __future__ import annotations

import numpy as np
import pytest

from weaknet.bench.asm import shape_geometry, shape_mask
from weaknet.metrics import iou
from weaknet.errors import InputError
from weaknet.sampling import sample_surface_points
from weaknet.template import fit_template


def test_template_mask_mesh_and_signed_distance():
    g = shape_geometry(spacing=(1.1, 0.9, 1.7))
    truth = shape_mask("banana", g)
    pts = sample_surface_points(truth, g, 60, seed=2)
    t = fit_template(pts, g)
    assert t.mask.dtype == np.uint8 and t.mask.shape == g.shape and iou(t.mask, truth) > 0.88
    assert t.vertices.shape == (2562, 3) and t.faces.shape == (5120, 3)
    assert t.volume().geometry == g
    sd = t.signed_distance()
    assert sd.dtype == np.float32 and (sd[t.mask == 1] < 0).all() and (sd[t.mask == 0] > 0).all()
    # the clicked points lie on the template boundary: |signed distance| about a voxel or less
    ijk = np.rint(g.to_index(pts)).astype(int)
    assert np.median(np.abs(sd[ijk[:, 2], ijk[:, 1], ijk[:, 0]])) < 1.0
    coarse = fit_template(pts, g, subdivisions=3, iterations=30)
    assert coarse.vertices.shape == (642, 3) and iou(coarse.mask, truth) > 0.8


def test_template_rejects_points_outside_the_image():
    g = shape_geometry()
    pts = sample_surface_points(shape_mask("sphere", g), g, 20)
    pts[4] += [0.0, 0.0, 200.0]
    with pytest.raises(InputError, match="point 5 .* outside the image"):
        fit_template(pts, g)
