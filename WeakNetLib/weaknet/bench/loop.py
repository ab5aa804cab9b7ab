"""Model in the loop: clicks a simulated annotator needs to reach template IoU 0.85 on a new volume, starting
from a trained model's proposal or from the sphere, and following the suggestions or farthest-point clicks.

Data: the demo's phantoms (12 CT phantoms, bean/ellipsoid/banana with distracting structures, 40×40×24 at
1.6×1.6×2.67 mm, seed 0); Weak-Net is trained on the first 8 (25 farthest-point clicks each, their
templates; the library's ``train`` with a small CPU budget, one torch thread; the model is cached in the
output folder) and predicts the other 4. Annotators, each clicking on the true surface until IoU ≥ 0.85
(or ``--max-clicks``):

- *error* (the model-in-the-loop check): clicks the true surface point farthest from the current template;
  from the model's proposal (:class:`weaknet.proposal.Proposal`, 0 clicks to start) or from the sphere
  (the plain template, its first 6 clicks farthest-point, as it needs points to exist);
- *suggested*: clicks the true surface point nearest the first suggestion
  (:func:`weaknet.suggest.suggest_points` with the model's probability), from the proposal and from the
  sphere;
- *even*: the nested farthest-point clicks (spread evenly), from the proposal and from the sphere.

From the sphere every fit is from scratch (the plain template of the clicks so far).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..metrics import iou

TARGET = 0.85
START = 6  # farthest-point clicks before a template from clicks exists


def _template_iou(surface, label) -> float:
    from ..rasterize import rasterize_mesh

    return iou(rasterize_mesh(surface.vertices, surface.faces, label.geometry), label.array)


def clicks_to_target(label, next_click, start: np.ndarray | None = None, proposal=None,
                     max_clicks: int = 60, target: float = TARGET) -> tuple[int, list[float]]:
    """Clicks until the template's IoU with ``label`` reaches ``target`` (``max_clicks`` + 1 when never),
    and the IoU after each click count. ``next_click(surface, clicks) -> (3,)``; ``start``: first clicks
    (from the sphere); ``proposal``: a :class:`~weaknet.proposal.Proposal` to start from instead."""
    from ..asm import ActiveSurface

    clicks = np.zeros((0, 3)) if start is None else np.asarray(start, float)
    surface = proposal.surface if proposal is not None else ActiveSurface().fit(clicks)
    history = [_template_iou(surface, label)]
    while history[-1] < target and len(clicks) < max_clicks:
        clicks = np.vstack([clicks, next_click(surface, clicks)])
        surface = proposal.update(clicks) if proposal is not None else ActiveSurface().fit(clicks)
        history.append(_template_iou(surface, label))
    reached = history[-1] >= target
    return (len(clicks) if reached else max_clicks + 1), history


def error_clicker(truth_vertices: np.ndarray):
    """The annotator who clicks where the template is most wrong: the true surface vertex farthest from
    the current template mesh (never one already clicked)."""
    from ..mesh import point_distances

    def click(surface, clicks):
        d = point_distances(truth_vertices, surface.vertices, surface.faces)
        if len(clicks):
            d[np.linalg.norm(truth_vertices[:, None] - clicks[None], axis=2).min(axis=1) < 1e-6] = -1
        return truth_vertices[int(np.argmax(d))]

    return click


def suggestion_clicker(truth_vertices: np.ndarray, probability):
    """The annotator who follows the first suggestion: clicks the true surface vertex nearest to it (not
    one already clicked)."""
    from scipy.spatial import cKDTree

    from ..suggest import suggest_points

    tree = cKDTree(truth_vertices)

    def click(surface, clicks):
        s = suggest_points(surface.vertices, surface.faces, clicks, probability, count=1)
        if not s:  # nothing left to disagree about: the least constrained place
            s = suggest_points(surface.vertices, surface.faces, clicks, None, count=1)
        for i in tree.query(s[0].position, k=64)[1]:  # the nearest one not clicked yet
            if not len(clicks) or np.linalg.norm(clicks - truth_vertices[i], axis=1).min() > 1e-6:
                return truth_vertices[i]
        return truth_vertices[i]

    return click


def train_model(out: Path, budget_minutes: float, train: int = 8, progress=print) -> tuple[Path, list]:
    """The demo phantoms under ``out/data`` and a Weak-Net model under ``out/model`` trained on the first
    ``train`` (reused when it exists); returns (model dir, the held-out (image, label) Volumes)."""
    import torch

    from ..annotate import simulate_points
    from ..dataset import Case, write_dataset
    from ..demo import PLANS
    from ..phantoms import write_phantom_set
    from ..points import write_points
    from ..train import TrainConfig, train as train_weaknet
    from ..volume import read_volume

    plan = PLANS["quick"]
    paths = write_phantom_set(out / "data", plan.phantoms, plan.kinds, size=plan.size, spacing=plan.spacing, seed=0)
    model = out / "model"
    if not (model / "model.json").is_file():
        entries = []
        for i, (image, label_path) in enumerate(paths[:train]):
            label = read_volume(label_path)
            pts = write_points(simulate_points(label, 25, seed=i), out / "points" / f"case_{i}.csv")
            entries.append(Case(image=image, points=pts))
        dataset = write_dataset(out / "train.json", name="loop", modality="CT", training=entries)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        start = time.perf_counter()
        try:
            train_weaknet(dataset, model, TrainConfig(device="cpu", seed=0, budget_minutes=budget_minutes),
                          show_progress=False)
        finally:
            torch.set_num_threads(threads)
        progress(f"  trained Weak-Net on {train} phantoms in {time.perf_counter() - start:.0f} s → {model}")
    held = [(read_volume(i), read_volume(lab)) for i, lab in paths[train:]]
    return model, held


def loop_rows(model_dir: Path, held: list, max_clicks: int = 60) -> list[dict]:
    """Per held-out case: clicks to IoU 0.85 for each annotator, and the proposal's IoU before any click."""
    from ..predict import predict_volume
    from ..proposal import Proposal
    from ..sampling import mask_surface, sample_surface_points

    rows = []
    for k, (image, label) in enumerate(held):
        mask, prob = predict_volume(model_dir, image, device="cpu")
        truth, _ = mask_surface(label.array, label.geometry)
        fps = sample_surface_points(label.array, label.geometry, max_clicks)
        even = lambda s, c, fps=fps: fps[len(c)]  # noqa: E731
        row = {"case": k, "model_iou": iou(mask.array, label.array),
               "proposal_iou": _template_iou(Proposal(mask).surface, label)}
        row["proposal_error"], _ = clicks_to_target(label, error_clicker(truth), proposal=Proposal(mask),
                                                    max_clicks=max_clicks)
        row["proposal_suggested"], _ = clicks_to_target(label, suggestion_clicker(truth, prob),
                                                        proposal=Proposal(mask), max_clicks=max_clicks)
        row["proposal_even"], _ = clicks_to_target(label, even, proposal=Proposal(mask), max_clicks=max_clicks)
        row["sphere_error"], _ = clicks_to_target(label, error_clicker(truth), fps[:START], max_clicks=max_clicks)
        row["sphere_even"], _ = clicks_to_target(label, even, fps[:START], max_clicks=max_clicks)
        row["sphere_suggested"], _ = clicks_to_target(label, suggestion_clicker(truth, prob), fps[:START],
                                                      max_clicks=max_clicks)
        rows.append(row)
    return rows


COLUMNS = ("proposal_error", "sphere_error", "sphere_even", "proposal_suggested", "proposal_even",
           "sphere_suggested")


def print_loop_table(rows: list[dict], max_clicks: int) -> None:
    print(f"\nClicks to template IoU {TARGET} on held-out demo phantoms ({max_clicks + 1} = not reached within "
          f"{max_clicks}); start + annotator")
    print(f"{'case':>4} | {'model IoU':>9} {'proposal IoU':>12} | " + " ".join(f"{c.replace('_', '+'):>18}"
                                                                            for c in COLUMNS))
    for r in rows:
        print(f"{r['case']:>4} | {r['model_iou']:>9.3f} {r['proposal_iou']:>12.3f} | "
              + " ".join(f"{r[c]:>18}" for c in COLUMNS))
    mean = {c: float(np.mean([r[c] for r in rows])) for c in COLUMNS}
    print(f"{'mean':>4} | {'':>9} {'':>12} | " + " ".join(f"{mean[c]:>18.1f}" for c in COLUMNS))
    sphere = min(mean["sphere_error"], mean["sphere_even"])
    print(f"model in the loop: the proposal needs {sphere / max(mean['proposal_error'], 1e-9):.1f}× fewer clicks "
          f"than the better sphere annotator (target ≥ 2×)")
    print(f"suggestions: {mean['proposal_even'] - mean['proposal_suggested']:+.1f} clicks fewer than farthest-point "
          f"on the proposal, {mean['sphere_even'] - mean['sphere_suggested']:+.1f} from the sphere")


def add_arguments(parser) -> None:
    parser.add_argument("--output", default="weaknet-bench-loop", help="folder for the phantoms and the "
                                                                        "cached model (default weaknet-bench-loop)")
    parser.add_argument("--budget-minutes", type=float, default=1.5, help="CPU training budget (default 1.5)")
    parser.add_argument("--max-clicks", type=int, default=60, help="give up after this many clicks (default 60)")


def run(args) -> int:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch

    torch.set_num_threads(1)
    model, held = train_model(Path(args.output), args.budget_minutes)
    print_loop_table(loop_rows(model, held, args.max_clicks), args.max_clicks)
    return 0
