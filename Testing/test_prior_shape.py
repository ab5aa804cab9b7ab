"""The statistical shape prior end to end: ``weaknet fit-template --mesh`` on real image files, ``weaknet
shape-prior`` from those meshes, ``weaknet fit-template --prior`` on a new case; the prior file loads
without pickle; every bad input exits 2 with one line."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from weaknet.cli import main
from weaknet.errors import InputError
from weaknet.mesh import check_mesh, icosphere, write_mesh
from weaknet.metrics import iou
from weaknet.phantoms import make_label
from weaknet.points import write_points
from weaknet.sampling import sample_surface_points
from weaknet.shape_prior import PULLS, PriorRestShape, ShapePrior, build_prior
from weaknet.template import fit_template
from weaknet.volume import Volume, read_volume, write_volume

SIZE, SPACING = (64, 64, 48), (1.0, 1.0, 2.0)


def run_cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _case(root, name, seed, clicks):
    """An image of a bean phantom (oblique grid) and ``clicks`` farthest-point clicks on its surface."""
    label = make_label("bean", SIZE, SPACING, seed, oblique=True)
    image = write_volume(Volume((40.0 + 60.0 * label.array).astype(np.float32), label.geometry),
                         root / f"{name}.nrrd")
    pts = sample_surface_points(label.array, label.geometry, clicks)
    return label, image, write_points(pts, root / f"{name}.mrk.json"), pts


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """Four earlier fits of the structure 'bean', written by the real CLI as .vtp meshes."""
    root = tmp_path_factory.mktemp("prior")
    meshes = []
    for k in range(4):
        _, image, points, _ = _case(root, f"bean_{k}", 100 + k, 50)
        mesh = root / f"bean_{k}.vtp"
        assert main(["fit-template", "--image", str(image), "--points", str(points), "--output",
                     str(root / f"bean_{k}.nii.gz"), "--mesh", str(mesh)]) == 0
        meshes.append(mesh)
    return root, meshes


@pytest.fixture(scope="module")
def built(earlier):
    """The prior written once by ``weaknet shape-prior`` from the earlier fits: (its path, what it printed)."""
    root, meshes = earlier
    out_path = root / "bean.npz"
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["shape-prior", "--meshes", *map(str, meshes), "--output", str(out_path)]) == 0
    return out_path, out.getvalue()


def test_shape_prior_cli_writes_a_pickle_free_prior(earlier, built):
    root, _ = earlier
    out_path, out = built
    assert "'bean'" in out and "4 meshes" in out  # the structure's name from the files' common stem
    assert "chosen leaving each mesh out" in out and "without the prior" in out
    with np.load(out_path, allow_pickle=False) as z:
        assert z["mean"].shape == (2562, 3) and z["modes"].shape == (3, 2562, 3)
        assert str(z["structure"]) == "bean"
        assert float(z["normal_pull"]) in PULLS
        older = {k: z[k] for k in z.files if k != "normal_pull"}  # a prior written before normal_pull
    prior = ShapePrior.load(out_path)
    assert f"normal pull {prior.normal_pull:g}," in out
    assert set(prior.tuning) == {*PULLS, "plain"}  # the leave-one-out errors travel with the file
    np.savez(root / "older.npz", **older)
    assert ShapePrior.load(root / "older.npz").normal_pull == PULLS[0]
    # the mean shape is normalised, closed and outward; the modes are orthonormal, largest first
    assert np.allclose(prior.mean.mean(axis=0), 0, atol=1e-9)
    assert np.sqrt((prior.mean ** 2).sum(1).mean()) == pytest.approx(1.0)
    assert check_mesh(prior.mean, prior.faces).ok
    flat = prior.modes.reshape(len(prior.modes), -1)
    assert np.allclose(flat @ flat.T, np.eye(len(flat)), atol=1e-9)
    assert np.all(np.diff(prior.variances) <= 0)


def test_prior_reproduces_an_earlier_shape_in_a_new_pose(earlier):
    """An earlier fit moved by a rotation, scaling and shift is recovered by the prior's pose and modes
    from 25 of its points, far closer than the plain template through the same points."""
    from scipy.spatial.transform import Rotation

    from weaknet.mesh import read_mesh

    _, meshes = earlier
    shapes = [read_mesh(m) for m in meshes]
    prior = build_prior(shapes, "bean", tune=False)
    v, f = shapes[2]
    rot = Rotation.from_euler("xyz", [40, -70, 25], degrees=True).as_matrix()
    moved = 1.3 * (v - v.mean(0)) @ rot.T + np.array([5.0, -3.0, 8.0])
    from weaknet.sampling import farthest_point_sampling

    pts = moved[farthest_point_sampling(moved, 25)]
    fit = prior.fit(pts)
    assert fit.scale / prior.size_mm == pytest.approx(1.3, rel=0.05)
    from weaknet.asm import ActiveSurface
    from weaknet.mesh import point_distances

    plain = ActiveSurface().fit(pts)
    err = np.median(point_distances(moved, fit.vertices, f))  # the shape's surface to the prior's fit
    assert err < 0.02 * fit.scale
    assert err < 0.5 * np.median(point_distances(moved, plain.vertices, plain.faces))


def test_fit_template_with_prior_on_a_new_case(earlier, built, capsys):
    root, _ = earlier
    prior_path, _ = built
    label, image, points, pts = _case(root, "new", 7, 10)
    code, out, err = run_cli(["fit-template", "--image", str(image), "--points", str(points), "--output",
                              str(root / "new.nii.gz"), "--mesh", str(root / "new.vtp"), "--prior",
                              str(prior_path), "--structure", "bean"], capsys)
    assert code == 0, err
    assert "prior 'bean'" in out
    mask = read_volume(root / "new.nii.gz")
    assert mask.geometry.matches(label.geometry)
    with_prior = iou(mask.array, label.array)
    plain = iou(fit_template(pts, label.geometry).mask, label.array)
    assert with_prior > 0.5 and with_prior >= plain - 0.05


def test_bad_input_is_one_clear_line(earlier, built, tmp_path, capsys):
    _, meshes = earlier
    good, _ = built
    _, image, points, _ = _case(tmp_path, "case", 9, 12)
    fit = ["fit-template", "--image", str(image), "--points", str(points), "--output", str(tmp_path / "m.nii.gz")]

    def fails(argv, *words):
        code, out, err = run_cli(argv, capsys)
        assert code == 2, (out, err)
        line = err.strip()
        assert "\n" not in line and all(w in line for w in words), line

    fails(["shape-prior", "--meshes", *map(str, meshes[:2]), "--output", str(tmp_path / "p.npz")], "at least 3")
    v3, f3 = icosphere(3)
    write_mesh(10 * v3, f3, tmp_path / "coarse.vtp")
    fails(["shape-prior", "--meshes", *map(str, meshes), str(tmp_path / "coarse.vtp"), "--output",
           str(tmp_path / "p.npz")], "coarse.vtp", "topology")
    fails(fit + ["--prior", str(good), "--subdivisions", "3"], "subdivisions 4")
    fails(fit + ["--prior", str(good), "--structure", "liver"], "'bean'", "'liver'")
    (tmp_path / "broken.npz").write_bytes(b"not a zip file")
    fails(fit + ["--prior", str(tmp_path / "broken.npz")], "broken.npz", "not a readable shape prior")
    np.savez(tmp_path / "pickled.npz", mean=np.array([object()], dtype=object))
    fails(fit + ["--prior", str(tmp_path / "pickled.npz")], "pickled.npz")
    fails(fit + ["--prior", str(tmp_path / "missing.npz")], "missing.npz")


def test_build_prior_rejects_foreign_meshes_in_the_library():
    v, f = icosphere(4)
    with pytest.raises(InputError, match="at least 3"):
        build_prior([(v, f), (v, f)], "x")
    with pytest.raises(InputError, match="topology"):
        build_prior([(v, f), (v, f), (v[:, ::-1].copy(), f[:, ::-1].copy())], "x")


def test_prior_rest_shape_drives_the_active_surface_warm(earlier):
    """Clicks added one by one keep the prior's fit warm, and the template passes through the clicks."""
    from weaknet.asm import ActiveSurface
    from weaknet.mesh import read_mesh

    _, meshes = earlier
    prior = build_prior([read_mesh(m) for m in meshes], "bean", tune=False)
    label = make_label("bean", SIZE, SPACING, 11, oblique=True)
    pts = sample_surface_points(label.array, label.geometry, 16)
    rest = PriorRestShape(prior)
    surface = ActiveSurface(rest_shape=rest).fit(pts[:12])
    first = rest.last
    for k in range(13, 17):
        surface.update(pts[:k])
    assert rest.last is not first and rest.last.points == 16
    d = np.linalg.norm(pts[:, None] - surface.vertices[None], axis=2).min(axis=1)
    assert np.median(d) < 1.0
    assert check_mesh(surface.vertices, surface.faces).ok


def test_prior_without_modes_fits_the_pose_of_the_mean_shape(earlier):
    """``max_modes=0`` keeps only the mean shape: the fit is a similarity transform of it."""
    from weaknet.mesh import read_mesh

    _, meshes = earlier
    prior = build_prior([read_mesh(m) for m in meshes], "bean", max_modes=0, tune=False)
    assert prior.modes.shape == (0, 2562, 3) and prior.variances.shape == (0,)
    label = make_label("bean", SIZE, SPACING, 12, oblique=True)
    pts = sample_surface_points(label.array, label.geometry, 25)
    fit = prior.fit(pts)
    d = np.linalg.norm(pts[:, None] - fit.vertices[None], axis=2).min(axis=1)
    assert np.median(d) < 0.15 * fit.scale


def test_normal_pull_is_chosen_by_leaving_earlier_fits_out(earlier):
    """Earlier fits that are one shape in four poses: the prior of any three reproduces the fourth, so the
    leave-one-out choice holds the prior's shape (the lowest pull) and beats the plain template."""
    from scipy.spatial.transform import Rotation

    from weaknet.mesh import read_mesh

    _, meshes = earlier
    v, f = read_mesh(meshes[0])
    copies = []
    for k in range(4):
        rot = Rotation.from_euler("xyz", [30 * k, -20 * k, 45 * k], degrees=True).as_matrix()
        copies.append(((1 + 0.1 * k) * (v - v.mean(0)) @ rot.T + 10.0 * k, f))
    prior = build_prior(copies, "bean")
    assert prior.normal_pull == min(PULLS)
    assert prior.tuning[prior.normal_pull] < 0.5 * prior.tuning["plain"]
    assert set(prior.tuning) == {*PULLS, "plain"} and not prior.worse_than_plain
