"""Benchmarks behind ``weaknet bench NAME``: one module each (``asm``, ``train``, ...), discovered by
:mod:`weaknet.commands.bench`. A module defines ``add_arguments(parser)`` and ``run(args) -> int`` and
prints a table with ratios against a reference measured in the same run.
"""
