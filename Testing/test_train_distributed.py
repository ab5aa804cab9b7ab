"""``torchrun`` DDP with 2 CPU processes (gloo). Training in a child process with progress events and cancel:
Testing/test_slicer_process.py (the runner both front ends use)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file
from train_helpers import one_thread, phantom_dataset  # noqa: F401  (fixture)

from weaknet.checkpoint import LOG, MODEL_JSON, WEIGHTS

pytestmark = pytest.mark.usefixtures("one_thread")


def test_torchrun_two_processes_gloo(tmp_path):
    ds = phantom_dataset(tmp_path / "data", n=2, kind="weak", dilate=1)
    out = tmp_path / "model"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "weaknet",
           "train", "--dataset", str(ds), "--output", str(out), "--epochs", "1", "--steps-per-epoch", "3",
           "--patch", "16", "--depth", "2", "--base-channels", "4", "--lambda", "1", "--device", "cpu"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads((out / MODEL_JSON).read_text(encoding="utf-8"))
    assert info["epochs_done"] == 1
    w = load_file(out / WEIGHTS)
    assert any(k.startswith("core.") for k in w) and any(k.startswith("recon.") for k in w)
    assert len((out / LOG).read_text(encoding="utf-8").splitlines()) == 1  # only rank 0 writes
