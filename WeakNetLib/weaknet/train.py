"""Train Weak-Net (weak templates, CE + λ·weighted reconstruction), or the references (full masks, or a
few annotated slices; CE only), on one device or under ``torchrun`` with DistributedDataParallel.

Resumable: after every epoch the model directory receives the weights, ``model.json`` and a checkpoint
(model + optimiser + scheduler + torch RNG + epoch), each written atomically. Data sampling depends only on
(seed, epoch), so a run resumed from epoch e reaches the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from .checkpoint import (CHECKPOINT, LOG, MODEL_FORMAT, MODEL_JSON, WEIGHTS, ModelError, append_log,
                         load_checkpoint, save_torch, save_weights, write_json)
from .config import TrainConfig
from .dataset import Dataset, read_dataset
from .device import autocast, resolve_device
from .errors import InputError
from .loss import weaknet_loss
from .nets import WeakNetPair
from .normalize import Normalization
from .patches import PatchSampler
from .prepare import prepare

Progress = Callable[[dict], None]
__all__ = ["TrainConfig", "train"]


def _distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world size, this rank's device); under torchrun (WORLD_SIZE > 1) initialises the process group:
    NCCL with one GPU per rank (LOCAL_RANK) on CUDA, gloo otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def _model_json(config: TrainConfig, prepared, dataset: Dataset, epochs_done: int, val_iou) -> dict:
    return {"format": MODEL_FORMAT, "weaknet_version": __version__, "torch_version": torch.__version__,
            "config": config.to_dict(), "net": config.net.to_dict(), "modality": dataset.modality,
            "normalization": prepared.normalization.to_dict(),
            "spacing": list(prepared.spacing) if prepared.spacing else None,
            "training_spacing": np.median([c.geometry.spacing for c in prepared.training], axis=0).tolist(),
            "lambda": config.lambda_, "gamma": config.gamma, "boundary_distance_mm": config.boundary_distance,
            "dataset": dataset.name, "labels": dataset.labels, "epochs_done": epochs_done,
            "last_val_iou": val_iou}


def _validate_iou(core, cases, config: TrainConfig, device) -> float | None:
    from .metrics import iou
    from .predict import foreground_probability

    if not cases:
        return None
    core.eval()
    scores = [iou(foreground_probability(core, c.image, config.patch, config.overlap, device,
                                         amp=config.amp) >= config.gamma, c.target == 1) for c in cases]
    core.train()
    return float(np.mean(scores))


def _trim_log(out: Path, epochs_done: int) -> None:
    p = out / LOG
    if p.is_file():
        keep = [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip() and json.loads(ln)["epoch"] <= epochs_done]
        p.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")


def train(dataset: Dataset | str | Path, output_dir: str | Path, config: TrainConfig | None = None,
          progress: Progress | None = None, cancel=None, resume: bool = False, show_progress: bool = True) -> Path:
    """Train into ``output_dir`` and return it.

    progress: called with event dicts — {"event": "start", "epochs", "start_epoch", "steps_per_epoch"},
    {"event": "step", "epoch", "step", "steps", "loss", "ce", "wmse"}, {"event": "epoch", "epoch", "loss",
    "ce", "wmse", "val_iou", "lr", "seconds"}, then {"event": "done", "model_dir"} or
    {"event": "cancelled", "epoch"}. cancel: anything with ``is_set()`` (threading/multiprocessing Event);
    when set, training stops within one step and the unfinished epoch is dropped.
    resume: continue from ``output_dir``'s checkpoint with its stored settings (only ``epochs`` and
    ``device`` are taken from ``config``).
    """
    config = config or TrainConfig()
    out = Path(output_dir)
    ds = dataset if isinstance(dataset, Dataset) else read_dataset(dataset)
    state = None
    if resume:
        state = load_checkpoint(out)
        stored = TrainConfig.from_dict(json.loads(state["config"]))
        stored.epochs, stored.device = config.epochs, config.device
        config = stored
    elif (out / CHECKPOINT).exists() or (out / WEIGHTS).exists():
        raise InputError(f"{out}: already holds a trained model; use --resume to continue it, or choose a new "
                         f"--output folder")
    config.validate()
    rank, world, device = _distributed(resolve_device(config.device))
    emit = progress if (progress is not None and rank == 0) else (lambda e: None)

    stored_prep = json.loads(state["preprocessing"]) if state is not None else {}
    prepared = prepare(ds, config.supervision, config.boundary_distance, config.weight_near, config.weight_far,
                       cache_dir=out / "template_cache", spacing=stored_prep.get("spacing"),
                       normalization=Normalization.from_dict(stored_prep["normalization"])
                       if stored_prep else None)
    sampler = PatchSampler(prepared.training, config.patch, config.batch_size, config.foreground_fraction,
                           config.augment)

    torch.manual_seed(config.seed)
    use_recon = config.supervision == "weak" and config.lambda_ > 0
    pair = WeakNetPair(config.net, with_reconstruction=use_recon,
                       straight_through=config.gamma if config.straight_through else None).to(device)
    opt = torch.optim.Adam(pair.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=config.epochs, power=0.9)
    start_epoch = 0
    if state is not None:
        try:
            pair.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ModelError(f"{out / CHECKPOINT}: does not fit these settings ({str(exc).splitlines()[0][:100]})"
                             ) from None
        sched.total_iters = config.epochs
        torch.set_rng_state(state["torch_rng"])
        start_epoch = int(state["epoch"])
        if rank == 0:
            _trim_log(out, start_epoch)
    model = pair
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(pair, device_ids=[device.index] if device.type == "cuda" else None)
    prep_doc = json.dumps({"spacing": list(prepared.spacing) if prepared.spacing else None,
                           "normalization": prepared.normalization.to_dict()})
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if state is None:
            write_json(out / MODEL_JSON, _model_json(config, prepared, ds, 0, None))

    emit({"event": "start", "epochs": config.epochs, "start_epoch": start_epoch,
          "steps_per_epoch": config.steps_per_epoch})
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        pair.train()
        sums = torch.zeros(3, dtype=torch.float64)
        bar = tqdm(sampler.epoch(config.seed, epoch, config.steps_per_epoch, rank, world),
                   total=config.steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", unit="step",
                   disable=not show_progress or rank != 0, leave=False)
        for step, batch in enumerate(bar):
            if cancel is not None and cancel.is_set():
                bar.close()
                emit({"event": "cancelled", "epoch": epoch + 1})
                return out
            x = torch.from_numpy(batch.image).to(device)
            y = torch.from_numpy(batch.target).to(device)
            w = None if batch.weight is None else torch.from_numpy(batch.weight).to(device)
            with autocast(device, config.amp):
                logits, recon = model(x)
            loss, ce, wmse = weaknet_loss(logits, y, x, recon, w, config.lambda_ if use_recon else 0.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            vals = torch.tensor([loss.item(), ce.item(), wmse.item()], dtype=torch.float64)
            sums += vals
            bar.set_postfix(ce=f"{vals[1]:.4f}", wmse=f"{vals[2]:.4g}", loss=f"{vals[0]:.4f}")
            emit({"event": "step", "epoch": epoch + 1, "step": step + 1, "steps": config.steps_per_epoch,
                  "loss": float(vals[0]), "ce": float(vals[1]), "wmse": float(vals[2])})
        bar.close()
        sched.step()
        if world > 1:
            import torch.distributed as dist

            dist.all_reduce(sums)
        means = (sums / (config.steps_per_epoch * world)).tolist()
        if rank != 0:
            continue
        val_iou = _validate_iou(pair.core, prepared.validation, config, device)
        record = {"epoch": epoch + 1, "loss": means[0], "ce": means[1], "wmse": means[2], "val_iou": val_iou,
                  "lr": opt.param_groups[0]["lr"], "seconds": round(time.perf_counter() - t0, 3)}
        save_weights(out / WEIGHTS, pair.state_dict())
        write_json(out / MODEL_JSON, _model_json(config, prepared, ds, epoch + 1, val_iou))
        append_log(out, record)
        save_torch(out / CHECKPOINT, {"format": MODEL_FORMAT, "epoch": epoch + 1, "model": pair.state_dict(),
                                      "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                      "torch_rng": torch.get_rng_state(),
                                      "config": json.dumps(config.to_dict()), "preprocessing": prep_doc})
        emit({"event": "epoch", **record})
        if show_progress:
            tqdm.write(f"epoch {epoch + 1}/{config.epochs}: loss {means[0]:.4f}  ce {means[1]:.4f}  "
                       f"wmse {means[2]:.4g}" + (f"  val IoU {val_iou:.3f}" if val_iou is not None else "")
                       + f"  ({record['seconds']:.1f} s)")
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    emit({"event": "done", "model_dir": str(out)})
    return out
