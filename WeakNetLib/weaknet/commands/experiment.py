"""``weaknet experiment``: template alone vs Weak-Net vs slice baseline vs full supervision on a dataset with
true masks (held-out test cases, CSV, Table-1 summary, IoU-vs-effort and iso-IoU plots, overlays)."""

from __future__ import annotations

import argparse
from pathlib import Path

BUILTIN = ("phantoms", "nuclei", "pyradiomics")


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """Training flags shared with ``weaknet demo`` (defaults None = the library's TrainConfig defaults)."""
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, help="epochs per model")
    g.add_argument("--steps", type=int, help="steps per epoch")
    g.add_argument("--patch", type=_ints, help="patch D,H,W voxels (or one value)")
    g.add_argument("--base-channels", type=int, help="U-Net base channels")
    g.add_argument("--depth", type=int, help="U-Net levels")
    g.add_argument("--lr", type=float, help="learning rate")
    g.add_argument("--lambda", dest="lambda_", type=float, help="reconstruction weight λ")
    g.add_argument("--boundary-distance", type=float, help="d, mm: W is high within d of the template boundary")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default auto)")


def train_config(args, **defaults):
    """A TrainConfig from ``defaults`` overridden by the flags the user gave."""
    from ..train import TrainConfig

    given = {"epochs": args.epochs, "steps_per_epoch": args.steps, "base_channels": args.base_channels,
             "depth": args.depth, "learning_rate": args.lr, "lambda_": args.lambda_,
             "boundary_distance": args.boundary_distance,
             "patch": (tuple(args.patch) * 3)[:3] if args.patch and len(args.patch) == 1 else args.patch}
    settings = {**defaults, **{k: v for k, v in given.items() if v is not None}, "device": args.device}
    if settings.get("patch") is not None:
        settings["patch"] = tuple(settings["patch"])
    return TrainConfig(**settings)


def add_parser(sub):
    p = sub.add_parser(
        "experiment", help="compare template, Weak-Net, slice baseline and full supervision on labelled data",
        description="Simulate point and slice annotation on the training cases of a dataset with true masks, "
                    "train Weak-Net, the slice baseline and full supervision, and score them (IoU, Dice, HD95, "
                    "MSD) on held-out test cases. Writes results.csv, summary.md, iou_vs_effort.png, "
                    "iso_iou.png (with several --samples), overlays/ and report.html.")
    p.add_argument("--dataset", required=True,
                   help="DATASET.json, an MSD task folder, a CHAOS CT folder (<patient>/DICOM_anon + Ground), or "
                        "one of: phantoms, nuclei (data/napari), pyradiomics (data/pyradiomics)")
    p.add_argument("--output", required=True, type=Path, help="folder for the results (created)")
    p.add_argument("--points", type=_ints, default=[10, 25, 50], help="points per case N (default 10,25,50)")
    p.add_argument("--slices", type=_ints, default=[1, 2, 4], help="slices per case S (default 1,2,4)")
    p.add_argument("--samples", type=_ints, help="annotated training cases P (default: all non-test cases)")
    p.add_argument("--test", type=int, help="held-out test cases (default: a quarter)")
    p.add_argument("--no-full", action="store_true", help="skip the full-supervision reference")
    p.add_argument("--ablation", action="store_true",
                   help="also train on the same templates with λ = 0 (what the reconstruction term adds)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--phantoms", type=int, default=16, help="with --dataset phantoms: how many (default 16)")
    p.add_argument("--modality", default="CT", choices=["CT", "MRI", "EM"], help="with --dataset phantoms")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="where nuclei/pyradiomics data live")
    add_training_arguments(p)
    return p


def resolve_dataset(spec: str, output: Path, args) -> Path:
    """A dataset path for ``spec``: a built-in name is written under ``output/data`` first."""
    from ..errors import InputError
    from ..realdata import chaos_ct_cases, nuclei_cases, pyradiomics_cases, write_labelled_dataset

    folder = output / "data"
    if spec == "phantoms":
        from ..phantoms import write_phantom_set

        write_phantom_set(folder, args.phantoms, modality=args.modality, seed=args.seed)
        return folder / "DATASET.json"
    if spec == "nuclei":
        return write_labelled_dataset(folder, nuclei_cases(args.data_dir / "napari"), "nuclei", "EM")
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

    args.output.mkdir(parents=True, exist_ok=True)
    dataset = resolve_dataset(args.dataset, args.output, args)
    cfg = ExperimentConfig(points=args.points, slices=args.slices, samples=args.samples, n_test=args.test,
                           full=not args.no_full, ablation=args.ablation, seed=args.seed, train=train_config(args))
    exp = run_experiment(dataset, args.output, cfg, progress=lambda m: print(m, flush=True))
    print()
    print(table_text(exp.report["summary"]))
    for line in verdict(exp.report["headline"]):
        print("-", line)
    print(f"\nreport: {args.output / 'report.html'}")
    return 0
