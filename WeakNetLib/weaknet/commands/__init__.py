"""Sub-commands of ``weaknet``: one module each, discovered by :mod:`weaknet.cli`.

A module defines ``add_parser(subparsers) -> ArgumentParser`` and ``run(args) -> int``; it must not import
torch or MONAI at module level.
"""
