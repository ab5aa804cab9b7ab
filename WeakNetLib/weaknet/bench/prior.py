"""Shape prior, suggestions and the model's proposal, by simulated annotation (IoU of templates vs truth).

Prior: per family, 5 earlier fits (``--train-clicks`` farthest-point clicks each on 5 cases) build a
:class:`~weaknet.shape_prior.ShapePrior`; on held-out cases of the family the template fitted with the
prior at N clicks is compared with the plain (sphere) template at N and at 2N clicks, the same nested
farthest-point clicks. Families: phantoms of :mod:`weaknet.phantoms` (compact concave kinds on the
evidence grid, 64×64×48 at 1×1×2 mm; thin kinds at 72³, 1 mm; all oblique) and napari's confocal nuclei
(:func:`weaknet.realdata.nuclei_cases`, the first 5 nuclei for the prior, the next ones held out).
"""

from __future__ import annotations

import os
import time

import numpy as np

from ..metrics import iou

FAMILIES = ("bean", "banana", "hippocampus", "caudate", "nuclei")
THIN = ("hippocampus", "caudate", "sheet")


def family_labels(family: str, train: int = 5, test: int = 4, data: str = "data") -> tuple[list, list]:
    """(earlier cases, held-out cases) of a family: label Volumes."""
    if family == "nuclei":
        labels = [c.label for c in _nuclei(data)]
        return labels[:train], labels[train:train + test]
    from ..phantoms import make_label

    size, spacing = ((72, 72, 72), (1.0, 1.0, 1.0)) if family in THIN else ((64, 64, 48), (1.0, 1.0, 2.0))
    make = lambda seed: make_label(family, size, spacing, seed, oblique=True)  # noqa: E731
    return [make(100 + s) for s in range(train)], [make(s) for s in range(test)]


def _nuclei(data: str) -> list:
    from ..realdata import nuclei_cases

    return nuclei_cases(os.path.join(data, "napari"))


def fit_mask(label, points, **options) -> np.ndarray:
    """The template fitted through points (N, 3) (``options``: ActiveSurface's) on ``label``'s grid, uint8."""
    from ..asm import ActiveSurface
    from ..rasterize import rasterize_mesh

    surface = ActiveSurface(**options).fit(points)  # not fit_template: clicks on a crop's border are fine here
    return rasterize_mesh(surface.vertices, surface.faces, label.geometry)


def fit_iou(label, points, **options) -> float:
    """IoU with ``label`` of the template fitted through points (N, 3) (``options``: ActiveSurface's)."""
    return iou(fit_mask(label, points, **options), label.array)


def prior_rows(family: str, ns=(10, 25), train_clicks: int = 50, train: int = 5, test: int = 4,
               data: str = "data", figure: str | None = None) -> list[dict]:
    """Per N: mean IoU over the held-out cases of the sphere template at N and 2N clicks and of the prior's
    at N, with the per-case lists and the prior's build time. ``figure``: a PNG of the first held-out case
    at the smallest N (nuclei only: the phantoms have no image here), the three templates and the truth."""
    from ..asm import ActiveSurface
    from ..sampling import sample_surface_points
    from ..shape_prior import build_prior

    earlier, held_out = family_labels(family, train, test, data)
    meshes = []
    for label in earlier:
        t = ActiveSurface().fit(sample_surface_points(label.array, label.geometry, train_clicks))
        meshes.append((t.vertices, t.faces))
    start = time.perf_counter()
    prior = build_prior(meshes, family)
    build_s = time.perf_counter() - start
    scores = {(kind, n): [] for n in ns for kind in ("sphere", "sphere2", "prior")}
    for label in held_out:
        clicks = sample_surface_points(label.array, label.geometry, 2 * max(ns))
        for n in ns:
            scores["sphere", n].append(fit_iou(label, clicks[:n]))
            scores["sphere2", n].append(fit_iou(label, clicks[:2 * n]))
            scores["prior", n].append(fit_iou(label, clicks[:n], **prior.surface_options()))
    if figure and family == "nuclei":
        _figure(figure, _nuclei(data)[train], prior, min(ns))
    return [dict(family=family, n=n, build_s=build_s, modes=len(prior.variances), normal_pull=prior.normal_pull,
                 **{k: float(np.mean(scores[k, n])) for k in ("sphere", "sphere2", "prior")},
                 cases={k: scores[k, n] for k in ("sphere", "sphere2", "prior")}) for n in ns]


def _figure(path: str, case, prior, n: int) -> None:
    """Axial and coronal slices of ``case`` with its truth and the templates through n and 2n of the clicks the
    table used: the sphere's at n and 2n, the prior's at n."""
    from ..report import plot_overlay
    from ..sampling import sample_surface_points

    label = case.label
    clicks = sample_surface_points(label.array, label.geometry, 2 * n)  # the table's clicks: 2·max(N), nested
    masks = {"truth": label.array, "sphere": fit_mask(label, clicks[:n]), "sphere2": fit_mask(label, clicks),
             "prior": fit_mask(label, clicks[:n], **prior.surface_options())}
    scores = {k: iou(m, label.array) for k, m in masks.items()}
    styles = {"sphere": ("#ffd000", f"sphere, {n} clicks (IoU {scores['sphere']:.2f})"),
              "sphere2": ("#30a0ff", f"sphere, {2 * n} clicks ({scores['sphere2']:.2f})"),
              "prior": ("#ff2020", f"prior of 5 earlier nuclei, {n} clicks ({scores['prior']:.2f})")}
    plot_overlay(case.image.array, case.image.geometry.spacing, masks, path,
                 f"{case.name}, the first held-out nucleus (napari)", styles)
    print(f"  wrote {path}")


def print_prior_table(rows: list[dict], train_clicks: int) -> None:
    print(f"\nShape prior from 5 earlier fits ({train_clicks} clicks each) vs the sphere template; mean IoU "
          "over held-out cases, the same nested farthest-point clicks; pull: the prior's normal_pull, chosen "
          "when it was built (leave one earlier fit out)")
    print(f"{'family':>12} {'N':>4} | {'sphere N':>8} {'sphere 2N':>9} | {'prior N':>7} {'pull':>5} |"
          f" {'prior − sphere 2N':>17} | {'held':>4}")
    for r in rows:
        gain = r["prior"] - r["sphere2"]
        print(f"{r['family']:>12} {r['n']:>4} | {r['sphere']:>8.3f} {r['sphere2']:>9.3f} | {r['prior']:>7.3f} "
              f"{r['normal_pull']:>5.2f} | {gain:>+17.3f} | {'yes' if gain >= 0 else 'no':>4}")


def add_arguments(parser) -> None:
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help=f"comma-separated families (default {','.join(FAMILIES)})")
    parser.add_argument("--train-clicks", type=int, default=50, help="clicks of each earlier fit (default 50)")
    parser.add_argument("--test", type=int, default=4, help="held-out cases per family (default 4)")
    parser.add_argument("--data", default="data", help="folder holding napari/ (default data)")
    parser.add_argument("--figure", help="also write a PNG of the first held-out nucleus with the templates")


def run(args) -> int:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    rows = []
    for family in [f.strip() for f in args.families.split(",") if f.strip()]:
        rows += prior_rows(family, train_clicks=args.train_clicks, test=args.test, data=args.data,
                           figure=args.figure)
        print(f"  {family}: done", flush=True)
    print_prior_table(rows, args.train_clicks)
    return 0
