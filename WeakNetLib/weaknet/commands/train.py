"""``weaknet train``: train Weak-Net (or the full / slice references) from a DATASET.json or MSD folder.

The training flags of ``train``, ``experiment`` and ``demo`` are generated here from the fields of
:class:`weaknet.config.TrainConfig` (one spelling, one default, one set of bounds): ``--field-name``
(``--lambda`` for ``lambda_``), booleans as ``--x/--no-x``; an omitted flag keeps the library default or
lets the plan decide.
"""

from __future__ import annotations

import argparse

def _parser_for(f):
    from ..config import parse_setting
    from ..errors import InputError

    def parse(text: str):
        try:
            return parse_setting(f.name, text)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def add_config_arguments(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per TrainConfig field (defaults None: the library default or the plan applies)."""
    from ..config import config_fields, field_kind

    g = p.add_argument_group("training settings (omitted: library default, or planned from the dataset)")
    for f in config_fields():
        if f.name in skip:
            continue
        meta = f.metadata
        flag = "--" + (meta["flag"] or f.name.replace("_", "-"))
        default = "planned" if meta["planned"] else f.default
        if field_kind(f) == "bool":
            g.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                           help=f"{meta['help']} (default {'on' if f.default else 'off'})")
            continue
        g.add_argument(flag, dest=f.name, type=_parser_for(f), default=None, metavar=f.name.upper().strip("_"),
                       help=f"{meta['help']} (default {default})"
                            + (f"; one of {', '.join(meta['choices'])}" if meta["choices"] else ""))


def config_from_args(args):
    """The library's TrainConfig defaults with every flag the user gave applied."""
    from ..config import TrainConfig, config_fields

    given = {f.name: getattr(args, f.name, None) for f in config_fields()}
    cfg = TrainConfig().with_overrides(**given)
    cfg.validate()
    return cfg


def add_parser(sub):
    p = sub.add_parser("train", help="train Weak-Net from weak templates (or full masks / annotated slices)",
                       description="Train into MODEL_DIR (weights of the best epoch, model.json with the plan, "
                                   "training log, checkpoint). Every setting not given is planned from the "
                                   "dataset (patch, depth, width, budget) and printed first. Ctrl-C loses at most "
                                   "the current epoch; --resume continues. Runs under torchrun "
                                   "--nproc_per_node=N for DistributedDataParallel.")
    p.add_argument("--dataset", required=True, help="DATASET.json (MSD style) or an MSD task folder")
    p.add_argument("--output", required=True, help="model directory to write")
    p.add_argument("--resume", action="store_true", help="continue MODEL_DIR's last checkpoint")
    p.add_argument("--progress-lines", action="store_true",
                   help="print one machine-readable line per progress event: @weaknet {json}")
    add_config_arguments(p)
    return p


def run(args) -> int:
    from ..progress_lines import LinePrinter
    from ..train import train

    config = config_from_args(args)
    out = train(args.dataset, args.output, config, resume=args.resume,
                progress=LinePrinter() if args.progress_lines else None,
                show_progress=not args.progress_lines)
    print(f"model written to {out}")
    return 0
