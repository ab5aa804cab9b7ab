"""``weaknet bench NAME``: run a benchmark from :mod:`weaknet.bench` and print its table."""

from __future__ import annotations

import importlib
import pkgutil

from .. import bench


def add_parser(sub):
    p = sub.add_parser("bench", help="run a benchmark and print a table (asm, train, predict, ...)",
                       description="Benchmarks print a table and ratios against a reference measured in the "
                                   "same run.")
    targets = p.add_subparsers(dest="target", metavar="NAME", required=True)
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{bench.__name__}.{info.name}")
        tp = targets.add_parser(info.name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(tp)
        tp.set_defaults(_bench=module.run)
    return p


def run(args) -> int:
    return int(args._bench(args) or 0)
