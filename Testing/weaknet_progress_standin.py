"""Stand-in for ``python -m weaknet`` until ``weaknet train --progress-lines`` lands (commands/train.py): the
real command line, with ``--progress-lines`` on ``train`` handled here by printing the same protocol lines
(weaknet.progress_lines) from train()'s progress callback. Every other command runs unchanged."""

import sys

import weaknet.train
from weaknet.cli import main
from weaknet.progress_lines import LinePrinter

argv = sys.argv[1:]
if argv[:1] == ["train"] and "--progress-lines" in argv:
    argv.remove("--progress-lines")
    real_train = weaknet.train.train

    def train_with_lines(*args, **kwargs):
        return real_train(*args, **{**kwargs, "progress": LinePrinter(), "show_progress": False})

    weaknet.train.train = train_with_lines
sys.exit(main(argv))
