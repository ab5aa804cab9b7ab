"""The paper's comparison on a dataset with true masks: template alone, Weak-Net, the slice baseline and full
supervision, trained on annotated training cases and scored on held-out test cases.

Protocol (seeded, so a rerun gives the same numbers on the same device):

1. The labelled cases are shuffled with ``seed``; the first ``n_test`` are held out for testing, the
   first P of the rest (for each P in ``samples``) are annotated.
2. Points (Weak-Net): N points on each annotated case's true surface, on each object's where the label holds
   several (instance values 1..K; :func:`weaknet.annotate.simulate_instance_points`), fitted to templates
   (:func:`weaknet.template.fit_templates`, their union);
   Weak-Net trains on the templates. *Template alone* = the same annotation of N points on each *test*
   case, its template taken as the segmentation. With ``ablation``, a second net trains on the same
   templates with λ = 0 (cross-entropy only), isolating what the reconstruction term adds.
3. Slices (baseline): S random slices per annotated case, fully labelled; a U-Net trains on them.
4. Full: every voxel labelled.
5. Each model predicts the test cases; IoU, Dice, HD95 and mean surface distance against the truth.
   Effort = annotation per training case as % of full annotation (mean over the annotated cases).

Writes into ``output``: ``results.csv`` (one row per method × setting × test case), ``summary.csv`` and
``summary.md`` (Table-1 style), plots and overlays (see :mod:`weaknet.report`), and ``runs/`` (datasets,
templates and trained models).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .annotate import (choose_slices, effort_percent, full_effort, points_effort, simulate_instance_points,
                       slices_effort)
from .dataset import Case, Dataset, read_dataset, write_dataset
from .errors import InputError
from .metrics import evaluate, iou
from .realdata import labelled_cases
from .volume import Volume, read_volume, write_volume

METHODS = ("template", "weaknet", "weaknet0", "slices", "full")


@dataclass
class ExperimentConfig:
    """What to run. ``train`` holds the training settings shared by every model (supervision is set per
    method); ``samples`` None = all non-test cases; ``n_test`` None = a quarter of the cases (≥ 1)."""

    points: list[int] = field(default_factory=lambda: [10, 25, 50])
    slices: list[int] = field(default_factory=lambda: [1, 2, 4])
    samples: list[int] | None = None
    n_test: int | None = None
    full: bool = True
    ablation: bool = False  # also train on the same templates with λ = 0 (CE only, no reconstruction)
    jitter_mm: float = 0.0
    seed: int = 0
    train: object = None  # weaknet.train.TrainConfig; default built in run_experiment

    def validate(self, n_cases: int) -> None:
        if any(n < 4 for n in self.points):
            raise InputError(f"points per sample must be ≥ 4 (a template needs 4 non-coplanar points): "
                             f"{self.points}")
        if any(s < 1 for s in self.slices):
            raise InputError(f"slices per sample must be ≥ 1: {self.slices}")
        if n_cases < 2:
            raise InputError(f"an experiment needs ≥ 2 labelled cases (one to train, one to test), got {n_cases}")


@dataclass
class Labelled:
    """A loaded labelled case: image, its binary truth (uint8 (D, H, W), same geometry) and its objects (the
    label file's values: 0 background, one value per object)."""

    name: str
    image_path: Path
    image: Volume
    label: Volume
    objects: Volume


def _load(cases: list[Case]) -> list[Labelled]:
    out = []
    for c in cases:
        image, label = read_volume(c.image), read_volume(c.label)
        image.geometry.require_match(label.geometry, f"label {c.label.name}", f"image {c.image.name}")
        out.append(Labelled(c.name, c.image, image, label.like((label.array > 0).astype(np.uint8)), label))
    return out


def split(cases: list[Case], n_test: int | None, seed: int) -> tuple[list[Case], list[Case]]:
    """(training pool, test cases): a seeded shuffle, the first ``n_test`` held out."""
    order = np.random.default_rng(seed).permutation(len(cases))
    n_test = max(1, len(cases) // 4) if n_test is None else int(n_test)
    if not 1 <= n_test < len(cases):
        raise InputError(f"need 1 ≤ test cases < {len(cases)} cases, got {n_test}")
    shuffled = [cases[i] for i in order]
    return shuffled[n_test:], shuffled[:n_test]


class Experiment:
    """Runs the comparison; ``progress(message)`` receives one line per stage."""

    def __init__(self, dataset: Dataset | str | Path, output: str | Path, config: ExperimentConfig,
                 progress: Callable[[str], None] = print, show_training: bool = True):
        from .train import TrainConfig

        self.dataset = dataset if isinstance(dataset, Dataset) else read_dataset(dataset)
        self.output = Path(output)
        self.config = config
        self.train_config = config.train or TrainConfig()
        self.progress = progress
        self.show_training = show_training
        self.rows: list[dict] = []
        self.report: dict = {}
        self.templates: dict[tuple[int, str], np.ndarray] = {}  # (N, test case) -> template mask
        self.predictions: dict[tuple[str, int, int, str], np.ndarray] = {}  # (method, P, param, case) -> mask
        self.models: dict[str, dict] = {}  # run name -> its model.json (the plan each model trained with)
        cases = labelled_cases(self.dataset)
        config.validate(len(cases))
        pool, test = split(cases, config.n_test, config.seed)
        self.pool, self.test = _load(pool), _load(test)
        self.samples = sorted(set(config.samples or [len(self.pool)]))
        if max(self.samples) > len(self.pool) or min(self.samples) < 1:
            raise InputError(f"samples P must lie in 1..{len(self.pool)} (the non-test cases), got {self.samples}")

    # ------------------------------------------------------------------------------------------ run
    def run(self) -> list[dict]:
        """Run every method and setting; returns the result rows (also kept in ``self.rows``)."""
        t0 = time.perf_counter()
        self.progress(f"{len(self.pool)} training-pool cases, {len(self.test)} test cases "
                      f"({', '.join(c.name for c in self.test)}); samples P = {self.samples}")
        self._full = {c.name: full_effort(c.label.array) for c in self.pool + self.test}
        for n in self.config.points:
            self._template_alone(n)
        for p in self.samples:
            train_cases = self.pool[:p]
            for n in self.config.points:
                self._weaknet(train_cases, n)
            for s in self.config.slices:
                self._slices(train_cases, s)
            if self.config.full:
                self._full_supervision(train_cases)
        self.progress(f"experiment done in {time.perf_counter() - t0:.0f} s")
        return self.rows

    def _annotate(self, c: Labelled, n: int, seed: int) -> tuple[np.ndarray, float]:
        """The simulated annotator's template of case ``c`` (uint8 (D, H, W): N points on each object, the
        union of their fits) and its effort in % of full annotation."""
        from .template import fit_templates

        sets = simulate_instance_points(c.objects, n, seed=seed, jitter_mm=self.config.jitter_mm)
        mask = fit_templates(sets, c.label.geometry)
        return mask, effort_percent(points_effort(n * len(sets)), self._full[c.name])

    def _template_alone(self, n: int) -> None:
        self.progress(f"template alone: fitting N={n} points on {len(self.test)} test cases")
        for i, c in enumerate(self.test):
            mask, effort = self._annotate(c, n, self.config.seed * 7919 + 104729 + i)
            self.templates[(n, c.name)] = mask
            self._score("template", 0, n, c, mask, effort, 0.0)

    def _weaknet(self, train_cases: list[Labelled], n: int) -> None:
        run = self.output / "runs" / f"weaknet_P{len(train_cases)}_N{n}"
        entries, efforts, t_ious = [], [], []
        for i, c in enumerate(train_cases):
            tmpl, effort = self._annotate(c, n, self.config.seed * 7919 + i)
            t_ious.append(iou(tmpl, c.label.array))
            path = write_volume(c.label.like(tmpl), run / "templates" / f"{c.name}.nii.gz")
            entries.append(Case(image=c.image_path, template=path))
            efforts.append(effort)
        self.progress(f"Weak-Net P={len(train_cases)} N={n}: templates fitted, training-template IoU "
                      f"{np.mean(t_ious):.3f}; training ...")
        extra = {"train_template_iou": float(np.mean(t_ious))}
        self._train_and_score("weaknet", train_cases, n, entries, float(np.mean(efforts)), run, extra=extra)
        if self.config.ablation and self.train_config.lambda_ > 0:
            self.progress(f"ablation P={len(train_cases)} N={n}: the same templates, λ = 0; training ...")
            self._train_and_score("weaknet0", train_cases, n, entries, float(np.mean(efforts)),
                                  run.with_name(run.name + "_lambda0"), extra=extra)

    def _slices(self, train_cases: list[Labelled], s: int) -> None:
        run = self.output / "runs" / f"slices_P{len(train_cases)}_S{s}"
        entries, efforts = [], []
        for i, c in enumerate(train_cases):
            chosen = choose_slices(c.label.array, s, seed=self.config.seed * 7919 + i)
            entries.append(Case(image=c.image_path, label=self._label_path(c), slices=chosen))
            efforts.append(effort_percent(slices_effort(c.label.array, chosen), self._full[c.name]))
        self.progress(f"slice baseline P={len(train_cases)} S={s}: effort {np.mean(efforts):.1f}% of full; "
                      f"training ...")
        self._train_and_score("slices", train_cases, s, entries, float(np.mean(efforts)), run)

    def _full_supervision(self, train_cases: list[Labelled]) -> None:
        run = self.output / "runs" / f"full_P{len(train_cases)}"
        entries = [Case(image=c.image_path, label=self._label_path(c)) for c in train_cases]
        self.progress(f"full supervision P={len(train_cases)}: training ...")
        self._train_and_score("full", train_cases, 0, entries, 100.0, run)

    def _label_path(self, c: Labelled) -> Path:
        """The case's binary label as a file (labels with several values are merged to 0/1 once)."""
        path = self.output / "runs" / "labels" / f"{c.name}.nii.gz"
        if not path.exists():
            write_volume(c.label, path)
        return path

    def _train_and_score(self, method: str, train_cases: list[Labelled], param: int, entries: list[Case],
                         effort: float, run: Path, extra: dict | None = None) -> None:
        from .predict import load_model, predict_volume
        from .train import train

        supervision = {"weaknet": "weak", "weaknet0": "weak", "slices": "slices", "full": "full"}[method]
        ds_path = write_dataset(run / "DATASET.json", name=f"{self.dataset.name}-{run.name}",
                                modality=self.dataset.modality, training=entries)
        cfg = replace(self.train_config, supervision=supervision, seed=self.config.seed)
        if method == "weaknet0":
            cfg = replace(cfg, lambda_=0.0)
        t0 = time.perf_counter()
        model_dir = run / "model"
        if not _finished(model_dir, cfg):
            if model_dir.exists():  # an interrupted or differently configured earlier run: start afresh
                shutil.rmtree(model_dir)
            train(read_dataset(ds_path), model_dir, cfg, show_progress=self.show_training)
        seconds = time.perf_counter() - t0
        model = load_model(model_dir, cfg.device)
        self.models[run.name] = model.info
        scores = []
        for c in self.test:
            mask, _ = predict_volume(model, c.image)
            scores.append(self._score(method, len(train_cases), param, c, mask.array, effort, seconds, extra))
        self.progress(f"  {method} P={len(train_cases)} {'S' if method == 'slices' else 'N'}={param}: "
                      f"test IoU {np.mean(scores):.3f} ± {np.std(scores):.3f} (trained in {seconds:.0f} s)")

    def _score(self, method: str, p: int, param: int, c: Labelled, mask: np.ndarray, effort: float,
               seconds: float, extra: dict | None = None) -> float:
        m = evaluate(mask, c.label.array, c.label.geometry)
        self.predictions[(method, p, param, c.name)] = np.asarray(mask, np.uint8)
        points = param if method in ("template", "weaknet", "weaknet0") else ""
        self.rows.append({"method": method, "samples": p, "points": points,
                          "slices": param if method == "slices" else "", "case": c.name, **m,
                          "effort_pct": effort, "train_seconds": round(seconds, 1), **(extra or {})})
        return m["iou"]


def _finished(model_dir: Path, cfg) -> bool:
    """True when ``model_dir`` holds a model trained to the end with exactly these settings (reused)."""
    try:
        info = json.loads((model_dir / "model.json").read_text())
    except (OSError, ValueError):
        return False
    return ((model_dir / "model.safetensors").is_file() and info.get("epochs_done") == info["config"]["epochs"]
            and info.get("requested") == json.loads(json.dumps(cfg.to_dict())))


def run_experiment(dataset: Dataset | str | Path, output: str | Path, config: ExperimentConfig | None = None,
                   progress: Callable[[str], None] = print, show_training: bool = True,
                   overlays: bool = True, title: str = "WeakNet experiment", notes: list[str] | None = None
                   ) -> "Experiment":
    """Run the experiment and write its report files (CSV, summary table, plots, overlays, report.html);
    ``exp.report`` holds {'summary', 'headline', 'files'} (see :func:`weaknet.report.write_report`)."""
    from .report import write_report

    exp = Experiment(dataset, output, config or ExperimentConfig(), progress, show_training)
    exp.run()
    exp.report = write_report(exp, overlays=overlays, title=title, notes=notes)
    return exp
