"""Training throughput (voxels/s) of weaknet's trainer vs a plain PyTorch loop of the same two U-Nets, batch
and loss, measured in the same run."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--patch", type=int, default=64, help="cubic patch side (default 64)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--steps", type=int, default=12, help="timed steps after 2 warm-up steps (default 12)")
    p.add_argument("--base-channels", type=int, default=8)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--repeats", type=int, default=2, help="alternating runs of each loop; the fastest counts")


def _plain_loop(cfg, device, steps: int, warmup: int) -> float:
    """Seconds for ``steps`` steps of a bare loop: fixed random batch, same nets/loss/optimiser."""
    import torch
    import torch.nn.functional as F

    from ..device import autocast
    from ..nets import WeakNetPair

    torch.manual_seed(0)
    pair = WeakNetPair(cfg.net).to(device)
    opt = torch.optim.Adam(pair.parameters(), lr=cfg.learning_rate)
    shape = (cfg.batch_size, 1) + tuple(cfg.patch)
    x = torch.randn(shape, device=device)
    y = (torch.rand(shape, device=device)[:, 0] > 0.5).long()
    w = torch.ones(shape, device=device)
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        with autocast(device, cfg.amp):
            logits, recon = pair(x)
        loss = F.cross_entropy(logits.float(), y) + cfg.lambda_ * (w * (x - recon.float()) ** 2).sum() / x.shape[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
    return time.perf_counter() - t0


def _weaknet(cfg, steps: int, warmup: int, folder: Path) -> float:
    """Seconds between the end of warm-up step ``warmup`` and the last step of ``weaknet.train.train``."""
    from ..dataset import Case, write_dataset
    from ..phantoms import make_phantom
    from ..train import train
    from ..volume import write_volume

    side = max(cfg.patch) + 16
    ph = make_phantom("ellipsoid", "CT", size=(side,) * 3, spacing=(1, 1, 1), seed=0)
    write_volume(ph.image, folder / "img.nii.gz")
    write_volume(ph.label, folder / "tpl.nii.gz")
    ds = write_dataset(folder / "dataset.json", name="bench", modality="CT",
                       training=[Case(image=folder / "img.nii.gz", template=folder / "tpl.nii.gz")])
    stamps = {}

    def progress(e):
        if e["event"] == "step":
            stamps[e["step"]] = time.perf_counter()

    cfg.steps_per_epoch = steps + warmup
    train(ds, folder / "model", cfg, progress=progress, show_progress=False)
    return stamps[warmup + steps] - stamps[warmup]


def run(args) -> int:
    from ..config import TrainConfig
    from ..device import resolve_device

    device = resolve_device(args.device)
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, patch=args.patch, base_channels=args.base_channels,
                      depth=args.depth, device=args.device, amp=not args.no_amp)
    warmup = 2
    voxels = args.batch_size * args.patch ** 3 * args.steps
    t_mine = t_plain = float("inf")
    for _ in range(args.repeats):  # alternate, so both see the same background load
        with tempfile.TemporaryDirectory() as tmp:
            t_mine = min(t_mine, _weaknet(cfg, args.steps, warmup, Path(tmp)))
        t_plain = min(t_plain, _plain_loop(cfg, device, args.steps, warmup))
    print(f"training throughput: {device.type}, nets base {args.base_channels} depth {args.depth}, batch "
          f"{args.batch_size} x {args.patch}^3, {args.steps} timed steps, AMP {cfg.amp and device.type == 'cuda'}, "
          f"best of {args.repeats}")
    print(f"{'loop':<22}{'s/step':>10}{'Mvoxel/s':>12}{'ratio':>8}")
    for name, t in (("plain PyTorch loop", t_plain), ("weaknet train", t_mine)):
        print(f"{name:<22}{t / args.steps:>10.3f}{voxels / t / 1e6:>12.3f}{t_plain / t:>8.2f}")
    return 0
