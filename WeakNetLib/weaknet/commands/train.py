"""``weaknet train``: train Weak-Net (or the full / slice references) from a DATASET.json or MSD folder."""

from __future__ import annotations

import argparse


def _patch(text: str) -> tuple[int, int, int]:
    try:
        v = [int(x) for x in text.replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("patch must be N or D,H,W voxels") from None
    if len(v) not in (1, 3):
        raise argparse.ArgumentTypeError("patch must be N or D,H,W voxels")
    return tuple(v * 3 if len(v) == 1 else v)


def add_parser(sub):
    from ..config import TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="train Weak-Net from weak templates (or full masks / annotated slices)",
                       description="Train into MODEL_DIR (weights, model.json, training log, checkpoint). "
                                   "Ctrl-C loses at most the current epoch; --resume continues. Runs under "
                                   "torchrun --nproc_per_node=N for DistributedDataParallel.")
    p.add_argument("--dataset", required=True, help="DATASET.json (MSD style) or an MSD task folder")
    p.add_argument("--output", required=True, help="model directory to write")
    p.add_argument("--supervision", choices=("weak", "slices", "full"), default=d.supervision,
                   help="weak: templates/points (default); slices: annotated 2-D slices only; full: masks")
    p.add_argument("--lambda", dest="lambda_", type=float, default=d.lambda_,
                   help=f"weight of the reconstruction term, summed over patch voxels (default {d.lambda_:g})")
    p.add_argument("--gamma", type=float, default=d.gamma,
                   help=f"threshold on the foreground probability at prediction (default {d.gamma})")
    p.add_argument("--boundary-distance", type=float, default=d.boundary_distance,
                   help=f"d in mm: reconstruction weight W is high within d of the template boundary "
                        f"(default {d.boundary_distance})")
    p.add_argument("--weight-near", type=float, default=d.weight_near, help="W within d (default 1)")
    p.add_argument("--weight-far", type=float, default=d.weight_far, help="W elsewhere (default 0.1)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--steps-per-epoch", type=int, default=d.steps_per_epoch)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--patch", type=_patch, default=d.patch, help="patch size N or D,H,W voxels (default 64)")
    p.add_argument("--base-channels", type=int, default=d.base_channels, help="U-Net width (default 16)")
    p.add_argument("--depth", type=int, default=d.depth, help="U-Net levels (default 4)")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--device", default=d.device, help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    p.add_argument("--no-amp", action="store_true", help="disable bfloat16 autocast on CUDA")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--resume", action="store_true", help="continue MODEL_DIR's last checkpoint")
    return p


def run(args) -> int:
    from ..train import TrainConfig, train

    config = TrainConfig(supervision=args.supervision, lambda_=args.lambda_, gamma=args.gamma,
                         boundary_distance=args.boundary_distance, weight_near=args.weight_near,
                         weight_far=args.weight_far, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                         batch_size=args.batch_size, patch=args.patch, base_channels=args.base_channels,
                         depth=args.depth, learning_rate=args.learning_rate, device=args.device,
                         amp=not args.no_amp, seed=args.seed)
    out = train(args.dataset, args.output, config, resume=args.resume)
    print(f"model written to {out}")
    return 0
