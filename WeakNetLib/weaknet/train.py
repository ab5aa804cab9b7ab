"""Train Weak-Net (weak templates, CE + λ·weighted reconstruction), or the references (full masks, or a
few annotated slices; CE only), on one device or under ``torchrun`` with DistributedDataParallel.

:func:`train` reads in this order: settings (:func:`_settings`: resume or new), data (:func:`_data`: held-out
split, preparation, fingerprint, plan), then :class:`Trainer` (model, loop, validation, checkpoints, cancel).

Resumable: after every epoch the model directory receives ``model.json`` and a checkpoint (model +
optimiser + scheduler + torch RNG + epoch + best validation), each written atomically; ``model.safetensors``
holds the weights of the best epoch by validation IoU (the last epoch when nothing is held out). Sampling and
augmentation depend only on (seed, epoch), so a run resumed from epoch e reaches the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from .checkpoint import (CHECKPOINT, LOG, MODEL_FORMAT, MODEL_JSON, WEIGHTS, ModelError, append_log,
                         load_checkpoint, load_weights, save_torch, save_weights, write_json)
from .config import TrainConfig
from .dataset import Dataset, read_dataset
from .device import autocast, resolve_device
from .errors import InputError
from .loss import IGNORE, weaknet_loss
from .nets import WeakNetPair
from .normalize import Normalization
from .patches import PatchSampler
from .plan import Fingerprint, fingerprint, plan_training
from .prepare import Prepared, TrainingCase, holdout_split, prepare

Progress = Callable[[dict], None]
AGREEMENT_WARNING = 0.5  # predictions on the training volumes vs their own targets, below this: warn
WHOLE_VALIDATION = 8  # validate on the whole volume up to this many patches of voxels


@dataclass
class _Settings:
    config: TrainConfig
    requested: dict
    state: dict | None


@dataclass
class _Data:
    prepared: Prepared
    fingerprint: Fingerprint
    config: TrainConfig
    notes: list[str]


def _settings(out: Path, config: TrainConfig, resume: bool) -> _Settings:
    """The run's settings: a checkpoint's stored ones on resume (only ``epochs`` and ``device`` taken from
    ``config``), else ``config`` itself."""
    if resume:
        state = load_checkpoint(out)
        stored = TrainConfig.from_dict(json.loads(state["config"]))
        stored = replace(stored, device=config.device, epochs=config.epochs or stored.epochs)
        return _Settings(stored, json.loads(state.get("requested", "{}")), state)
    if (out / CHECKPOINT).exists() or (out / WEIGHTS).exists():
        raise InputError(f"{out}: already holds a trained model; use --resume to continue it, or choose a new "
                         f"--output folder")
    return _Settings(config, config.to_dict(), None)


def _data(ds: Dataset, settings: _Settings, device: torch.device, out: Path) -> _Data:
    """Held-out split, preparation (resampling, normalisation, targets), fingerprint and plan."""
    config, state = settings.config, settings.state
    fraction = config.val_fraction if config.supervision != "slices" or not ds.validation else 0.0
    _, held = holdout_split(ds.training, fraction, config.seed)
    stored = json.loads(state["preprocessing"]) if state is not None else {}
    prepared = prepare(ds, config.supervision, config.boundary_distance, config.weight_near, config.weight_far,
                       cache_dir=out / "template_cache", spacing=stored.get("spacing", config.spacing),
                       normalization=Normalization.from_dict(stored["normalization"]) if stored else None,
                       holdout=held)
    fp = fingerprint(prepared, ds.modality)
    planned, notes = plan_training(config, fp, device.type)
    planned.validate()
    return _Data(prepared, fp, planned, notes)


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


def _end_distributed(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


class _Crop:
    """A case as validation sees it: whole when it holds at most :data:`WHOLE_VALIDATION` patches of voxels
    (so false positives anywhere count), else cut to its object's bounding box plus half a patch on every
    side — a few windows even on a large scan."""

    def __init__(self, case: TrainingCase, patch):
        if case.image.size <= WHOLE_VALIDATION * int(np.prod(patch)):
            self.name, self.image, self.target = case.name, case.image, case.target
            return
        m = case.target == 1
        idx = np.argwhere(m if m.any() else case.target != IGNORE)
        lo = np.maximum(idx.min(0) - np.asarray(patch) // 2, 0) if idx.size else np.zeros(3, int)
        hi = np.minimum(idx.max(0) + 1 + np.asarray(patch) // 2, case.image.shape) if idx.size else case.image.shape
        sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        self.name, self.image, self.target = case.name, case.image[sl], case.target[sl]


def mean_iou(core, crops: list[_Crop], config: TrainConfig, device) -> float | None:
    """Mean IoU between the core net's masks (≥ γ) and each crop's target, over its labelled voxels."""
    from .metrics import iou
    from .postprocess import apply
    from .predict import foreground_probability

    if not crops:
        return None
    was_training = core.training
    core.eval()
    scores = []
    for c in crops:
        known = c.target != IGNORE
        prob = foreground_probability(core, c.image, config.patch, config.overlap, device, amp=config.amp)
        mask = apply(prob >= config.gamma, config.postprocess or "none").astype(bool)
        scores.append(iou(mask & known, (c.target == 1) & known))
    core.train(was_training)
    return float(np.mean(scores))


class Trainer:
    """The loop of one run: model, optimiser and schedule, epochs, validation, checkpoints, cancel."""

    def __init__(self, out: Path, ds: Dataset, data: _Data, settings: _Settings, device: torch.device,
                 rank: int, world: int, emit: Progress, show_progress: bool):
        self.out, self.ds, self.data, self.requested = out, ds, data, settings.requested
        self.config, self.device, self.rank, self.world = data.config, device, rank, world
        self.emit, self.show = emit, show_progress and rank == 0
        c, p = self.config, data.prepared
        self.sampler = PatchSampler(p.training, c.patch, c.batch_size, c.foreground_fraction, c.augment,
                                    anisotropic=data.fingerprint.anisotropy > 3)
        torch.manual_seed(c.seed)
        self.use_recon = c.supervision == "weak" and c.lambda_ > 0
        self.pair = WeakNetPair(c.net, with_reconstruction=self.use_recon,
                                straight_through=c.gamma if c.straight_through else None,
                                recon=c.recon_net).to(device)
        self.opt = torch.optim.Adam(self.pair.parameters(), lr=c.learning_rate, weight_decay=c.weight_decay)
        self.sched = torch.optim.lr_scheduler.PolynomialLR(self.opt, total_iters=c.epochs, power=0.9)
        self.model = self.pair
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(self.pair, device_ids=[device.index] if device.type == "cuda"
                                                 else None)
        self.holdout = [_Crop(x, c.patch) for x in p.holdout]
        self.validation = [_Crop(x, c.patch) for x in p.validation]
        self.start_epoch, self.best = 0, {"epoch": None, "score": None}
        self.history: list[dict] = []

    # ------------------------------------------------------------------------------------------ state
    def restore(self, state: dict) -> None:
        try:
            self.pair.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ModelError(f"{self.out / CHECKPOINT}: does not fit these settings "
                             f"({str(exc).splitlines()[0][:100]})") from None
        self.sched.total_iters = self.config.epochs
        torch.set_rng_state(state["torch_rng"])
        self.start_epoch = int(state["epoch"])
        self.best = json.loads(state.get("best", '{"epoch": null, "score": null}'))
        if self.rank == 0:
            _trim_log(self.out, self.start_epoch)

    def _model_json(self, epochs_done: int, record: dict | None, warnings: list[str] | None = None) -> dict:
        c, p = self.config, self.data.prepared
        return {"format": MODEL_FORMAT, "weaknet_version": __version__, "torch_version": torch.__version__,
                "config": c.to_dict(), "requested": self.requested, "net": c.net.to_dict(),
                "modality": self.ds.modality, "normalization": p.normalization.to_dict(),
                "spacing": list(c.spacing), "training_spacing": list(self.data.fingerprint.spacing),
                "plan": self.data.notes, "fingerprint": self.data.fingerprint.to_dict(),
                "lambda": c.lambda_, "gamma": c.gamma, "boundary_distance_mm": c.boundary_distance,
                "dataset": self.ds.name, "labels": self.ds.labels, "epochs_done": epochs_done,
                "held_out": [x.name for x in self.holdout], "best_epoch": self.best["epoch"],
                "best_val_iou": self.best["score"], "last_val_iou": (record or {}).get("val_iou"),
                "warnings": warnings or []}

    def _save(self, epoch: int, record: dict, improved: bool) -> None:
        c, p = self.config, self.data.prepared
        if improved:
            save_weights(self.out / WEIGHTS, self.pair.state_dict())
        write_json(self.out / MODEL_JSON, self._model_json(epoch, record))
        append_log(self.out, record)
        prep = json.dumps({"spacing": list(c.spacing), "normalization": p.normalization.to_dict()})
        save_torch(self.out / CHECKPOINT, {
            "format": MODEL_FORMAT, "epoch": epoch, "model": self.pair.state_dict(),
            "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "torch_rng": torch.get_rng_state(), "config": json.dumps(c.to_dict()),
            "requested": json.dumps(self.requested), "preprocessing": prep, "best": json.dumps(self.best)})

    # ------------------------------------------------------------------------------------------ loop
    def fit(self, cancel=None) -> bool:
        """Run the remaining epochs; False when cancelled (the unfinished epoch is dropped)."""
        c = self.config
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.start_epoch == 0:
                write_json(self.out / MODEL_JSON, self._model_json(0, None))
        self.emit({"event": "plan", "notes": self.data.notes, "config": c.to_dict(),
                   "held_out": [x.name for x in self.holdout]})
        if self.show:
            for line in self.data.notes:
                tqdm.write(f"plan: {line}")
            if self.holdout:
                tqdm.write(f"plan: {len(self.holdout)} annotated case(s) held out to pick the best epoch: "
                           f"{', '.join(x.name for x in self.holdout)}")
        self.emit({"event": "start", "epochs": c.epochs, "start_epoch": self.start_epoch,
                   "steps_per_epoch": c.steps_per_epoch})
        for epoch in range(self.start_epoch, c.epochs):
            t0 = time.perf_counter()
            means = self._epoch(epoch, cancel)
            if means is None:
                self.emit({"event": "cancelled", "epoch": epoch + 1})
                return False
            if self.rank == 0:
                self._end_epoch(epoch, means, time.perf_counter() - t0)
        return True

    def _epoch(self, epoch: int, cancel) -> list[float] | None:
        c = self.config
        self.pair.train()
        sums = torch.zeros(3, dtype=torch.float64)
        bar = tqdm(self.sampler.epoch(c.seed, epoch, c.steps_per_epoch, self.rank, self.world),
                   total=c.steps_per_epoch, desc=f"epoch {epoch + 1}/{c.epochs}", unit="step",
                   disable=not self.show, leave=False)
        for step, batch in enumerate(bar):
            if cancel is not None and cancel.is_set():
                bar.close()
                return None
            vals = self._step(batch)
            sums += vals
            bar.set_postfix(ce=f"{vals[1]:.4f}", wmse=f"{vals[2]:.4g}", loss=f"{vals[0]:.4f}")
            self.emit({"event": "step", "epoch": epoch + 1, "step": step + 1, "steps": c.steps_per_epoch,
                       "loss": float(vals[0]), "ce": float(vals[1]), "wmse": float(vals[2])})
        bar.close()
        self.sched.step()
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(sums)
        return (sums / (c.steps_per_epoch * self.world)).tolist()

    def _step(self, batch) -> torch.Tensor:
        x = torch.from_numpy(batch.image).to(self.device)
        y = torch.from_numpy(batch.target).to(self.device)
        w = None if batch.weight is None else torch.from_numpy(batch.weight).to(self.device)
        with autocast(self.device, self.config.amp):
            logits, recon = self.model(x)
        loss, ce, wmse = weaknet_loss(logits, y, x, recon, w, self.config.lambda_ if self.use_recon else 0.0,
                                      self.config.dice, self.config.recon_loss)
        if self.use_recon and self.config.recon_cap > 0:  # the reconstruction's pull ≤ cap × the templates'
            seg_grad, = torch.autograd.grad(ce, logits, retain_graph=True)
            self.pair.cap[0] = self.config.recon_cap * float(seg_grad.float().norm())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return torch.tensor([loss.item(), ce.item(), wmse.item()], dtype=torch.float64)

    def _end_epoch(self, epoch: int, means: list[float], seconds: float) -> None:
        c = self.config
        val_tpl = mean_iou(self.pair.core, self.holdout, c, self.device)
        val_lab = mean_iou(self.pair.core, self.validation, c, self.device)
        score = val_lab if val_lab is not None else val_tpl
        improved = score is None or self.best["score"] is None or score > self.best["score"]
        if improved:
            self.best = {"epoch": epoch + 1, "score": score}
        record = {"epoch": epoch + 1, "loss": means[0], "ce": means[1], "wmse": means[2],
                  "val_iou": score, "val_iou_templates": val_tpl, "val_iou_labels": val_lab,
                  "best_epoch": self.best["epoch"], "lr": self.opt.param_groups[0]["lr"],
                  "seconds": round(seconds, 3)}
        self._save(epoch + 1, record, improved)
        self.history.append(record)
        self.emit({"event": "epoch", **record})
        if self.show:
            v = "" if score is None else f"  val IoU {score:.3f}{' *' if improved else ''}"
            tqdm.write(f"epoch {epoch + 1}/{c.epochs}: loss {means[0]:.4f}  ce {means[1]:.4f}  "
                       f"wmse {means[2]:.4g}{v}  ({seconds:.1f} s)")

    def finish(self) -> list[str]:
        """After the last epoch: load the best weights, check them against the training targets, and write the
        final model.json (with any warnings). Returns the warnings."""
        self.pair.load_state_dict(load_weights(self.out, None))
        crops = [_Crop(x, self.config.patch) for x in self.data.prepared.training[:8]]
        agreement = mean_iou(self.pair.core, crops, self.config, self.device)
        warnings = []
        if agreement is not None and agreement < AGREEMENT_WARNING:
            warnings.append(
                f"the model's predictions on its own training volumes agree with their targets at mean IoU "
                f"{agreement:.2f} (< {AGREEMENT_WARNING}): likely causes — λ too strong (try --lambda 0), too "
                f"little training (raise --budget-minutes or --epochs), or a bad plan (check the patch "
                f"{'x'.join(map(str, self.config.patch))} against the object size; see model.json 'plan')")
        doc = self._model_json(self.config.epochs, self.history[-1] if self.history else None, warnings)
        doc["train_agreement_iou"] = agreement
        write_json(self.out / MODEL_JSON, doc)
        for w in warnings:
            self.emit({"event": "warning", "message": w})
            if self.show:
                tqdm.write(f"WARNING: {w}")
        return warnings


def _trim_log(out: Path, epochs_done: int) -> None:
    p = out / LOG
    if p.is_file():
        keep = [ln for ln in p.read_text(encoding="utf-8").splitlines()
                if ln.strip() and json.loads(ln)["epoch"] <= epochs_done]
        p.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")


def train(dataset: Dataset | str | Path, output_dir: str | Path, config: TrainConfig | None = None,
          progress: Progress | None = None, cancel=None, resume: bool = False, show_progress: bool = True) -> Path:
    """Train into ``output_dir`` and return it.

    progress: called with event dicts — {"event": "plan", "notes", "config", "held_out"}, {"event": "start",
    "epochs", "start_epoch", "steps_per_epoch"}, {"event": "step", "epoch", "step", "steps", "loss", "ce",
    "wmse"}, {"event": "epoch", "epoch", "loss", "ce", "wmse", "val_iou", "best_epoch", "lr", "seconds"},
    {"event": "warning", "message"}, then {"event": "done", "model_dir", "best_epoch"} or
    {"event": "cancelled", "epoch"}. cancel: anything with ``is_set()``; when set, training stops within one
    step and the unfinished epoch is dropped. resume: continue from ``output_dir``'s checkpoint with its
    stored settings (only ``epochs`` and ``device`` are taken from ``config``).
    """
    config = config or TrainConfig()
    config.validate()
    out = Path(output_dir)
    ds = dataset if isinstance(dataset, Dataset) else read_dataset(dataset)
    settings = _settings(out, config, resume)
    rank, world, device = _distributed(resolve_device(settings.config.device))
    emit = progress if (progress is not None and rank == 0) else (lambda e: None)
    data = _data(ds, settings, device, out)
    trainer = Trainer(out, ds, data, settings, device, rank, world, emit, show_progress)
    if settings.state is not None:
        trainer.restore(settings.state)
    finished = trainer.fit(cancel)
    if finished and rank == 0:
        trainer.finish()
    _end_distributed(world)
    if finished:
        emit({"event": "done", "model_dir": str(out), "best_epoch": trainer.best["epoch"]})
    return out
