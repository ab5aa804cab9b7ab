"""``weaknet demo``: the paper's comparison end to end on phantoms with distracting edges, sized for a laptop.

Generates a phantom set, simulates N-point annotation on the training phantoms and fits their templates,
trains Weak-Net, the slice baseline and full supervision, predicts the held-out phantoms and writes a
report folder (report.html with the table, the IoU-vs-effort plot and overlays). ``quick`` (the default)
fits in about 5 minutes on 2 CPU cores; ``full`` runs the whole grid (N, S and P, with iso-IoU curves) and
wants a GPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass
class DemoPlan:
    """Everything a demo mode fixes: the phantom set, the annotation grid and the training budget. The training
    settings themselves are the command line's defaults, planned from the data like any `weaknet train`."""

    phantoms: int
    kinds: tuple[str, ...]
    n_test: int
    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    points: list[int]
    slices: list[int]
    samples: list[int] | None
    budget_minutes: float | None = None  # per model, on the planned device (None: the plan's default)
    ablation: bool = True


PLANS = {
    "quick": DemoPlan(phantoms=12, kinds=("bean", "ellipsoid", "banana"), n_test=4, size=(40, 40, 24),
                      spacing=(1.6, 1.6, 2.67), points=[25], slices=[1, 2], samples=None, budget_minutes=0.6),
    "full": DemoPlan(phantoms=24, kinds=("bean", "ellipsoid", "banana", "c_shape"), n_test=6, size=(48, 48, 32),
                     spacing=(1.33, 1.33, 2.0), points=[10, 25, 50], slices=[1, 2, 4], samples=[6, 12, 18]),
}


def run_demo(output: str | Path = "weaknet-demo", mode: str = "quick", device: str = "auto", seed: int = 0,
             modality: str = "CT", progress: Callable[[str], None] = print, show_training: bool = True):
    """Run the demo into ``output``; returns the :class:`~weaknet.experiment.Experiment` (``.report`` filled)."""
    import torch

    from .errors import InputError

    if mode not in PLANS:
        raise InputError(f"unknown demo mode {mode!r}; use {' or '.join(PLANS)}")
    # one torch thread: the same numbers on every machine (float sums differ with the thread count, and the
    # demo's margins are small), and no slow-down from oversubscribed cores
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(output, mode, device, seed, modality, progress, show_training)
    finally:
        torch.set_num_threads(threads)


def _run(output, mode, device, seed, modality, progress, show_training):
    from .experiment import ExperimentConfig, run_experiment
    from .phantoms import write_phantom_set
    from .train import TrainConfig

    plan = PLANS[mode]
    out = Path(output)
    t0 = time.perf_counter()
    progress(f"[demo] {plan.phantoms} {modality} phantoms {plan.size} voxels at {plan.spacing} mm with "
             f"distracting structures → {out / 'data'}")
    write_phantom_set(out / "data", plan.phantoms, plan.kinds, modality=modality, size=plan.size,
                      spacing=plan.spacing, seed=seed)
    progress(f"[demo] phantoms written in {time.perf_counter() - t0:.1f} s")
    cfg = ExperimentConfig(points=plan.points, slices=plan.slices, samples=plan.samples, n_test=plan.n_test,
                           ablation=plan.ablation, seed=seed,
                           train=TrainConfig(device=device, seed=seed, budget_minutes=plan.budget_minutes))
    notes = [f"demo mode '{mode}': {plan.phantoms} phantoms, {plan.n_test} held out; wall time is printed by "
             f"the command"]
    exp = run_experiment(out / "data" / "DATASET.json", out, cfg, progress=lambda m: progress(f"[demo] {m}"),
                         show_training=show_training, title=f"WeakNet demo ({mode}) — phantoms with distractors",
                         notes=notes)
    exp.seconds = time.perf_counter() - t0
    return exp
