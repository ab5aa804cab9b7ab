"""``weaknet experiment``: template alone vs Weak-Net vs slice baseline vs full supervision on a dataset with
true masks (held-out test cases, CSV, Table-1 summary, IoU-vs-effort and iso-IoU plots, overlays)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .train import add_config_arguments

BUILTIN = ("phantoms", "nuclei", "stardist", "pyradiomics")


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def add_parser(sub):
    p = sub.add_parser(
        "experiment", help="compare template, Weak-Net, slice baseline and full supervision on labelled data",
        description="Simulate point and slice annotation on the training cases of a dataset with true masks, "
                    "train Weak-Net, the slice baseline and full supervision, and score them (IoU, Dice, HD95, "
                    "MSD) on held-out test cases. Writes results.csv, summary.md, iou_vs_effort.png, "
                    "iso_iou.png (with several --samples), overlays/ and report.html.")
    p.add_argument("--dataset", required=True,
                   help="DATASET.json, an MSD task folder, a CHAOS CT folder (<patient>/DICOM_anon + Ground), or "
                        "one of: phantoms, nuclei (data/napari), stardist (data/stardist), "
                        "pyradiomics (data/pyradiomics)")
    p.add_argument("--output", required=True, type=Path, help="folder for the results (created)")
    p.add_argument("--points", type=_ints, default=[10, 25, 50], help="points per case N (default 10,25,50)")
    p.add_argument("--slices", type=_ints, default=[1, 2, 4], help="slices per case S (default 1,2,4)")
    p.add_argument("--samples", type=_ints, help="annotated training cases P (default: all non-test cases)")
    p.add_argument("--test", type=int, help="held-out test cases (default: a quarter)")
    p.add_argument("--no-full", action="store_true", help="skip the full-supervision reference")
    p.add_argument("--ablation", action="store_true",
                   help="also train on the same templates with λ = 0 (what the reconstruction term adds)")
    p.add_argument("--phantoms", type=int, default=16, help="with --dataset phantoms: how many (default 16)")
    p.add_argument("--modality", default="CT", choices=["CT", "MRI", "EM"], help="with --dataset phantoms")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="where nuclei/pyradiomics data live")
    add_config_arguments(p, skip=("supervision",))
    return p


def resolve_dataset(spec: str, output: Path, args) -> Path:
    """A dataset path for ``spec``: a built-in name is written under ``output/data`` first."""
    from ..errors import InputError
    from ..realdata import chaos_ct_cases, nuclei_cases, pyradiomics_cases, stardist_cases, write_labelled_dataset

    folder = output / "data"
    if spec == "phantoms":
        from ..phantoms import write_phantom_set

        write_phantom_set(folder, args.phantoms, modality=args.modality, seed=args.seed or 0)
        return folder / "DATASET.json"
    if spec == "nuclei":
        return write_labelled_dataset(folder, nuclei_cases(args.data_dir / "napari"), "nuclei", "EM")
    if spec == "stardist":
        return write_labelled_dataset(folder, stardist_cases(args.data_dir / "stardist"), "stardist", "EM")
    if spec == "pyradiomics":
        return write_labelled_dataset(folder, pyradiomics_cases(args.data_dir / "pyradiomics"), "pyradiomics", "CT")
    path = Path(spec)
    if not path.exists():
        raise InputError(f"{spec}: no such dataset file or folder, and not one of {', '.join(BUILTIN)}")
    if path.is_dir() and any((d / "DICOM_anon").is_dir() for d in path.iterdir()):
        return write_labelled_dataset(folder, chaos_ct_cases(path), path.name, "CT")
    return path


def run(args) -> int:
    from ..experiment import ExperimentConfig, run_experiment
    from ..report import table_text, verdict
    from .train import config_from_args

    args.output.mkdir(parents=True, exist_ok=True)
    dataset = resolve_dataset(args.dataset, args.output, args)
    train = config_from_args(args)
    cfg = ExperimentConfig(points=args.points, slices=args.slices, samples=args.samples, n_test=args.test,
                           full=not args.no_full, ablation=args.ablation, seed=train.seed, train=train)
    exp = run_experiment(dataset, args.output, cfg, progress=lambda m: print(m, flush=True))
    print()
    print(table_text(exp.report["summary"]))
    for line in verdict(exp.report["headline"]):
        print("-", line)
    print(f"\nreport: {args.output / 'report.html'}")
    return 0
