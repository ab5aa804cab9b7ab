"""Prediction time and peak memory for one volume (default 256³): ``weaknet.predict.predict_volume`` vs
MONAI ``sliding_window_inference`` with the same weights, window, overlap and blending, each in a fresh
process."""

from __future__ import annotations

import multiprocessing as mp
import tempfile
import time
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--size", type=int, default=256, help="cubic volume side (default 256)")
    p.add_argument("--patch", type=int, default=64)
    p.add_argument("--base-channels", type=int, default=8)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=3, help="alternating runs per method; the fastest counts")


def _volume(size: int):
    import numpy as np

    from ..volume import Geometry, Volume

    rng = np.random.default_rng(0)
    z, y, x = np.ogrid[:size, :size, :size]
    c = size / 2
    arr = np.where((x - c) ** 2 + (y - c) ** 2 + (z - c) ** 2 < (size / 4) ** 2, 100.0, 0.0)
    arr = (arr + rng.normal(0, 20, arr.shape)).astype(np.float32)
    return Volume(arr, Geometry.create((size,) * 3, (1.0, 1.0, 1.0)))


def _worker(kind: str, model_dir: str, size: int, device: str, out) -> None:
    """Time one prediction of ``kind`` in this fresh process; report (seconds, peak RSS MiB, peak GPU MiB)."""
    import resource

    import torch
    from monai.inferers import sliding_window_inference

    from ..device import autocast
    from ..predict import load_model, predict_volume

    m = load_model(model_dir, device)
    vol = _volume(size)
    if m.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    if kind == "weaknet":
        predict_volume(m, vol, tta=False)  # the MONAI recipe below has no mirroring either
    else:  # the plain MONAI recipe: normalise, sliding windows of logits, argmax
        x = torch.from_numpy(m.normalization.apply(vol.array))[None, None].to(m.device)
        with torch.inference_mode(), autocast(m.device):
            logits = sliding_window_inference(x, m.patch, 2, m.core, overlap=m.overlap, mode="gaussian")
        logits.argmax(1)[0].to(torch.uint8).cpu().numpy()
    if m.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    gpu = torch.cuda.max_memory_allocated() / 2**20 if m.device.type == "cuda" else None
    out.put((seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, gpu))


def run(args) -> int:
    from ..config import TrainConfig
    from ..dataset import Case, write_dataset
    from ..device import resolve_device
    from ..phantoms import make_phantom
    from ..train import train
    from ..volume import write_volume

    device = resolve_device(args.device)
    ctx = mp.get_context("spawn")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ph = make_phantom("ellipsoid", "CT", size=(args.patch,) * 3, spacing=(1, 1, 1), seed=0)
        write_volume(ph.image, folder / "img.nii.gz")
        write_volume(ph.label, folder / "lab.nii.gz")
        ds = write_dataset(folder / "dataset.json", name="bench", modality="CT",
                           training=[Case(image=folder / "img.nii.gz", label=folder / "lab.nii.gz")])
        cfg = TrainConfig(supervision="full", epochs=1, steps_per_epoch=1, patch=args.patch,
                          base_channels=args.base_channels, depth=args.depth, device=args.device)
        model = train(ds, folder / "model", cfg, show_progress=False)
        for _ in range(args.repeats):  # alternate the two, one fresh process each, keep the fastest
            for kind in ("monai", "weaknet"):
                q = ctx.Queue()
                p = ctx.Process(target=_worker, args=(kind, str(model), args.size, args.device, q))
                p.start()
                t, rss, gpu = q.get()
                p.join()
                old = rows.get(kind, (float("inf"), 0.0, None))
                rows[kind] = (min(t, old[0]), max(rss, old[1]), gpu if old[2] is None else max(gpu, old[2]))
    ref = rows["monai"][0]
    print(f"predict {args.size}^3 on {device.type}: nets base {args.base_channels} depth {args.depth}, window "
          f"{args.patch}^3, overlap {cfg.overlap}, Gaussian blending, sw batch 2, best of {args.repeats}")
    print(f"{'method':<34}{'seconds':>9}{'ratio':>7}{'peak RSS MiB':>14}{'peak GPU MiB':>14}")
    names = {"monai": "MONAI sliding_window_inference", "weaknet": "weaknet predict_volume"}
    for kind, (t, rss, gpu) in rows.items():
        print(f"{names[kind]:<34}{t:>9.2f}{t / ref:>7.2f}{rss:>14.0f}{'-' if gpu is None else f'{gpu:.0f}':>14}")
    return 0
