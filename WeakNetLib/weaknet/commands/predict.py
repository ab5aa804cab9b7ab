"""``weaknet predict``: segment a volume (or every volume in a folder) with a trained model."""

from __future__ import annotations

import argparse


def add_parser(sub):
    p = sub.add_parser("predict", help="segment volumes with a trained Weak-Net model",
                       description="Sliding-window inference with overlap blending; masks (and probabilities) "
                                   "are written on each input's exact grid.")
    p.add_argument("--model", required=True, help="model directory written by `weaknet train`")
    p.add_argument("--image", required=True, help="volume file, DICOM folder, or a folder of volumes")
    p.add_argument("--output", required=True, help="mask file (or folder, for a folder of images)")
    p.add_argument("--probabilities", help="also write foreground probabilities here (file or folder)")
    p.add_argument("--gamma", type=float, help="threshold (default: the model's gamma)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average over the 8 mirrorings of each volume (default: the model's setting, on)")
    p.add_argument("--progress-lines", action="store_true",
                   help="print one machine-readable '@weaknet {json}' line per progress event (for front ends)")
    return p


def run(args) -> int:
    from ..predict import predict_files
    from ..progress_lines import LinePrinter

    for path in predict_files(args.model, args.image, args.output, args.probabilities, args.gamma, args.device,
                              progress=LinePrinter() if args.progress_lines else None, tta=args.tta):
        print(path)
    return 0
