"""Where to click next: surface places where the current template is most likely wrong.

With a model's foreground probability, a template vertex's score (mm) is the distance from it to the
model's surface (the γ-level of the probability, by the signed distance of the thresholded mask,
trilinearly interpolated) plus, where the vertex lies within ``probe_mm`` of that surface, 2 mm × the
model's doubt there: 1 − contrast, contrast = probability
``probe_mm`` inside minus ``probe_mm`` outside along the template's normal (1 where the model is sure of
an edge, 0 where it sees none); damped near the clicks already made (there the template is right by
construction). The suggestion is the model's surface point nearest to that vertex where the model is
sure (doubt < ½), else the vertex itself. Without a model, the
score is the distance to the nearest click: the place the fit is least constrained by points. Suggestions
are the best-scoring vertices, at least ``separation_mm`` apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from .volume import Volume


@dataclass
class Suggestion:
    """A place to click: position (3,) LPS mm, score (mm, see the module docstring) and reason ('model
    disagrees' or 'far from clicks')."""

    position: np.ndarray
    score: float
    reason: str


def model_distance(vertices: np.ndarray, probability: Volume, gamma: float = 0.5) -> np.ndarray:
    """(V,) mm from each vertex (V, 3) LPS mm to the model's surface (probability ≥ ``gamma``; signed
    distance of that mask, positive outside it, trilinearly interpolated; clamped at the grid's edge)."""
    from .rasterize import signed_distance

    sd = signed_distance(probability.array >= gamma, probability.geometry)
    ijk = probability.geometry.to_index(vertices)
    finite = np.where(np.isfinite(sd), sd, np.nanmax(np.where(np.isfinite(sd), sd, np.nan)))
    return ndimage.map_coordinates(finite, ijk[:, ::-1].T, order=1, mode="nearest")


def model_doubt(vertices: np.ndarray, faces: np.ndarray, probability: Volume, probe_mm: float = 1.0
                ) -> np.ndarray:
    """(V,) in [0, 1]: 1 − (probability ``probe_mm`` inside − ``probe_mm`` outside) along each vertex
    normal, clipped: how little the model sees an edge across the template's surface there."""
    from .mesh import vertex_normals

    n = vertex_normals(vertices, faces)
    sample = lambda x: ndimage.map_coordinates(  # noqa: E731
        probability.array.astype(np.float32), probability.geometry.to_index(x)[:, ::-1].T, order=1, mode="nearest")
    return 1.0 - np.clip(sample(vertices - probe_mm * n) - sample(vertices + probe_mm * n), 0.0, 1.0)


def suggest_points(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray,
                   probability: Volume | None = None, count: int = 3, separation_mm: float | None = None,
                   gamma: float = 0.5, probe_mm: float = 1.0) -> list[Suggestion]:
    """Up to ``count`` places to click next on a template (vertices (V, 3) LPS mm, faces (F, 3)) fitted
    through ``points`` (N, 3) LPS mm, best first. ``separation_mm``: minimum distance between suggestions
    (default: a quarter of the template's RMS radius)."""
    v = np.asarray(vertices, float)
    pts = np.asarray(points, float).reshape(-1, 3)
    to_click = cKDTree(pts).query(v)[0] if len(pts) else np.full(len(v), np.inf)
    if separation_mm is None:
        separation_mm = 0.25 * float(np.sqrt(((v - v.mean(0)) ** 2).sum(1).mean()))
    if probability is not None:
        off = np.abs(model_distance(v, probability, gamma))
        doubt = np.where(off < probe_mm, model_doubt(v, faces, probability, probe_mm), 0.0)  # on its edge only
        dist = off + 2.0 * doubt
        near = 0.5 * separation_mm
        score = dist * (1.0 - np.exp(-(to_click / near) ** 2))
        reason = "model disagrees"
        from .sampling import mask_surface

        model_surface = mask_surface(probability.array >= gamma, probability.geometry)[0] if (
            probability.array >= gamma).any() else None
    else:
        score, reason, model_surface = to_click, "far from clicks", None
    order = np.argsort(-score)
    chosen: list[int] = []
    for i in order:
        if len(chosen) >= count or not np.isfinite(score[i]) or score[i] <= 0:
            break
        if all(np.linalg.norm(v[i] - v[j]) >= separation_mm for j in chosen):
            chosen.append(int(i))
    out = []
    for i in chosen:
        pos = v[i]
        if model_surface is not None and doubt[i] < 0.5:  # a sure model: its edge is where to click
            pos = model_surface[cKDTree(model_surface).query(v[i])[1]]
        out.append(Suggestion(np.asarray(pos, float), float(score[i]), reason))
    return out
