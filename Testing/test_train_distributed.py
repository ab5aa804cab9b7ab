"""Background training (spawned process, events, cancel) and ``torchrun`` DDP with 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file
from train_helpers import one_thread, phantom_dataset, tiny_config  # noqa: F401  (fixture)

from weaknet.background import TrainingJob
from weaknet.checkpoint import LOG, MODEL_JSON, WEIGHTS
from weaknet.errors import InputError

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


def _wait_for(job: TrainingJob, kind: str, timeout: float = 120.0) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for e in job.poll():
            if e["event"] == kind:
                return e
        if job.state.finished:
            break
        time.sleep(0.05)
    pytest.fail(f"no {kind!r} event; state {job.state}, error {job.error}, events {job.events[-3:]}")


def test_training_job_reports_progress_and_cancels(tmp_path):
    ds = phantom_dataset(tmp_path / "data", n=1, kind="weak", dilate=1)
    job = TrainingJob(ds, tmp_path / "model", tiny_config(epochs=50, steps_per_epoch=3)).start()
    assert job.state == "running" and job.poll() is not None  # poll never blocks
    first = _wait_for(job, "epoch")
    assert first["epoch"] == 1 and first["ce"] > 0
    job.cancel()
    assert job.wait(60) == "cancelled"
    done = json.loads((tmp_path / "model" / MODEL_JSON).read_text(encoding="utf-8"))["epochs_done"]
    assert 1 <= done < 50 and (tmp_path / "model" / WEIGHTS).is_file()
    steps = [e for e in job.events if e["event"] == "step"]
    assert steps and {"loss", "ce", "wmse", "epoch", "step"} <= set(steps[0])


def test_training_job_rejects_bad_input_before_starting(tmp_path):
    with pytest.raises(InputError, match="no such dataset file"):
        TrainingJob(tmp_path / "missing.json", tmp_path / "model", tiny_config())
