"""The ``weaknet`` command line.

Each sub-command lives in its own module under :mod:`weaknet.commands` and exposes
``add_parser(subparsers)`` (cheap: no torch/MONAI import) and ``run(args) -> int``. Heavy imports happen
inside ``run`` so that ``weaknet --help`` and ``weaknet fit-template`` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import __version__, commands
from .errors import WeakNetError


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with one sub-parser per module in :mod:`weaknet.commands`."""
    parser = argparse.ArgumentParser(
        prog="weaknet",
        description="Truly weakly-supervised 3D segmentation: click sparse surface points, fit Active "
                    "Surface templates, train Weak-Net, predict new scans. Coordinates in files are LPS mm.")
    parser.add_argument("--version", action="version", version=f"weaknet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 success, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except WeakNetError as exc:
        print(f"weaknet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"weaknet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
