"""Training settings (no torch import, so the command line can build its parser cheaply).

:class:`TrainConfig` is the one source of training defaults: the command line (``weaknet train``,
``experiment``, ``demo``), the Slicer panel and the browser form are all built from its fields and their
``metadata`` (help text, bounds, choices). A field whose default is ``None`` is *planned*: decided by
:func:`weaknet.plan.plan_training` from the dataset's fingerprint and the device, unless the user sets it.
:class:`NetConfig` is the shape of the two U-Nets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .errors import InputError

SUPERVISIONS = ("weak", "slices", "full")
DEVICES = ("auto", "cpu", "cuda", "mps")
NORMS = ("instance", "batch")
RECON_NETS = ("unet", "local")
RECON_LOSSES = ("squared", "cauchy")


@dataclass(frozen=True)
class NetConfig:
    """Shape of both U-Nets: ``channels`` = base·2^level for ``depth`` levels, ``res_units`` per block."""

    base_channels: int = 16
    depth: int = 4
    res_units: int = 1
    norm: str = "instance"

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(self.base_channels * 2 ** i for i in range(self.depth))

    def to_dict(self) -> dict:
        return asdict(self)


def patch_multiple(cfg: NetConfig) -> int:
    """Every spatial side fed to the nets must be a multiple of this (total down-sampling factor)."""
    return 2 ** (cfg.depth - 1)


def _f(default: Any, help: str, lo: float | None = None, hi: float | None = None, choices=None,
       planned: bool = False, flag: str | None = None):
    """A config field with the metadata the front ends build their inputs from."""
    return field(default=default, metadata={"help": help, "min": lo, "max": hi, "choices": choices,
                                            "planned": planned, "flag": flag})


@dataclass
class TrainConfig:
    """Every training setting; stored in model.json. ``patch`` is (D, H, W) voxels; None = planned.

    lambda_: weight of the scale-free reconstruction term (see :mod:`weaknet.loss`); gamma: threshold on the
    foreground probability at prediction; boundary_distance: d in mm — W = weight_near within d of the
    template boundary, weight_far elsewhere.
    """

    supervision: str = _f("weak", "weak: templates/points; slices: annotated 2-D slices only; full: masks",
                          choices=SUPERVISIONS)
    lambda_: float = _f(0.0, "weight λ of the scale-free reconstruction term (see weaknet.loss; 0 = CE on the "
                                  "templates only, the measured default)", 0.0, 1e3,
                        flag="lambda")
    dice: bool = _f(True, "add nnU-Net's soft Dice to the cross-entropy of the segmentation term")
    gamma: float = _f(0.5, "threshold on the foreground probability at prediction", 0.01, 0.99)
    boundary_distance: float = _f(5.0, "d, mm: the reconstruction weight W is high within d of the template "
                                       "boundary", 0.0, 1e3)
    weight_near: float = _f(1.0, "W within d of the template boundary", 0.0, 1e3)
    weight_far: float = _f(0.1, "W elsewhere", 0.0, 1e3)
    budget_minutes: float | None = _f(None, "training budget in minutes of the planned device (sets epochs × "
                                            "steps; planned: 10 on CPU, 30 on a GPU; full supervision takes "
                                            "twice the steps)", 0.05, 1e4, planned=True)
    epochs: int | None = _f(None, "epochs (validation and checkpoint after each)", 1, 100_000, planned=True)
    steps_per_epoch: int | None = _f(None, "optimiser steps per epoch", 1, 1_000_000, planned=True)
    batch_size: int | None = _f(None, "patches per step", 1, 1024, planned=True)
    patch: tuple[int, int, int] | None = _f(None, "patch D,H,W voxels (or one side); planned from the median "
                                                  "image shape", 4, 1024, planned=True)
    spacing: tuple[float, float, float] | None = _f(None, "target spacing x,y,z mm (planned: the median "
                                                          "spacing when the images' spacings differ)",
                                                    1e-4, 1e4, planned=True)
    base_channels: int | None = _f(None, "U-Net filters at the first level", 1, 512, planned=True)
    depth: int | None = _f(None, "U-Net levels", 2, 7, planned=True)
    res_units: int = _f(1, "residual units per U-Net block", 0, 8)
    norm: str = _f("instance", "normalisation layer of the U-Nets", choices=NORMS)
    learning_rate: float = _f(1e-2, "Adam learning rate (poly decay over the epochs)", 0.0, 10.0)
    weight_decay: float = _f(1e-5, "Adam weight decay", 0.0, 1.0)
    foreground_fraction: float = _f(0.5, "share of patches centred on the object", 0.0, 1.0)
    augment: bool = _f(True, "spatial and intensity augmentation (see weaknet.augment)")
    val_fraction: float = _f(0.15, "share of the annotated cases held out to pick the best epoch by IoU with "
                                   "their own templates (0 = none)", 0.0, 0.5)
    postprocess: str | None = _f(None, "largest: keep the largest connected component; none: keep all (planned: "
                                       "largest when every training target is one connected object)",
                                 choices=("largest", "none"), planned=True)
    overlap: float = _f(0.25, "sliding-window overlap at validation and prediction", 0.0, 0.9)
    tta: bool = _f(True, "test-time augmentation at prediction: average over the 8 mirrorings of the volume "
                         "(nnU-Net's; 8× the inference time, about +0.03 test IoU on the families)")
    straight_through: bool = _f(True, "feed the reconstruction net the thresholded Ŷ ≥ γ")
    recon_loss: str = _f("squared", "residual of the reconstruction term: squared, or cauchy (c²·log(1 + r²/c²), "
                                    "c = one standard deviation of the image in the band: residuals a mask cannot "
                                    "explain pull less)", choices=RECON_LOSSES)
    recon_cap: float = _f(0.0, "most the reconstruction term's gradient into the core net may be, as a share of "
                               "the segmentation term's (norms over the logits, per step; the mask learns the "
                               "templates first, the image only corrects it); 0: no cap", 0.0, 1e3)
    recon_net: str = _f("unet", "reconstruction net: unet (the core net's shape, the paper's) or local (three "
                                "3×3×3 convolutions: renders an edge profile, no texture)", choices=RECON_NETS)
    device: str = _f("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    amp: bool = _f(True, "bfloat16 autocast on CUDA")
    seed: int = _f(0, "seed of the weights, sampling and augmentation", 0, 2 ** 31 - 1)

    def __post_init__(self):
        if self.patch is not None:
            p = self.patch
            self.patch = tuple(int(v) for v in ((p,) * 3 if isinstance(p, int) else p))
            if len(self.patch) == 1:
                self.patch = self.patch * 3
        if self.spacing is not None:
            self.spacing = tuple(float(v) for v in self.spacing)

    @property
    def net(self) -> NetConfig:
        if self.base_channels is None or self.depth is None:
            raise InputError("the U-Net shape is planned from the dataset: call weaknet.plan.plan_training first")
        return NetConfig(self.base_channels, self.depth, self.res_units, self.norm)

    def validate(self) -> None:
        """Raise :class:`InputError` for a setting outside its bounds or one that cannot work together."""
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None:
                continue
            name = "--" + (meta["flag"] or f.name.replace("_", "-"))
            if meta["choices"] and value not in meta["choices"]:
                raise InputError(f"{name} must be one of {', '.join(meta['choices'])}, not {value!r}")
            values = value if isinstance(value, tuple) else (value,)
            if isinstance(value, (bool, str)):
                continue
            lo, hi = meta["min"], meta["max"]
            for v in values:
                if (lo is not None and v < lo) or (hi is not None and v > hi):
                    raise InputError(f"{name} {value}: must lie in [{lo:g}, {hi:g}]")
        if self.patch is not None and len(self.patch) != 3:
            raise InputError(f"--patch {self.patch}: give one side or D,H,W")
        if self.depth is not None and self.patch is not None:
            m = 2 ** (self.depth - 1)
            if any(p % m for p in self.patch):
                raise InputError(f"--patch {self.patch}: each side must be a multiple of {m} (2^(depth-1) for "
                                 f"--depth {self.depth})")
        if self.patch is not None and self.batch_size is not None and \
                self.batch_size * self.patch[0] * self.patch[1] * self.patch[2] > 2 ** 28:
            raise InputError(f"--patch {self.patch} × --batch-size {self.batch_size} is over 2^28 voxels a step; "
                             f"no device holds that")

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, **overrides) -> "TrainConfig":
        """A copy with the non-None ``overrides`` applied (unknown names raise InputError)."""
        names = {f.name for f in fields(TrainConfig)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise InputError(f"unknown training setting(s): {', '.join(unknown)}")
        return TrainConfig(**{**self.to_dict(), **{k: v for k, v in overrides.items() if v is not None}})

    @staticmethod
    def from_dict(d: dict) -> "TrainConfig":
        names = {f.name for f in fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in d.items() if k in names})


def config_fields() -> list:
    """The :class:`TrainConfig` dataclass fields (with ``metadata``: help, min, max, choices, planned, flag)."""
    return list(fields(TrainConfig))


def parse_setting(name: str, text: str):
    """Parse a front end's text input for field ``name`` into its value (None for empty = default/planned).

    Raises :class:`InputError` with the same bounds the command line uses.
    """
    f = {f.name: f for f in fields(TrainConfig)}.get(name)
    if f is None:
        raise InputError(f"unknown training setting {name!r}")
    text = str(text).strip()
    if text == "" or text.lower() == "auto":
        return None
    kind = field_kind(f)
    try:
        if kind == "bool":
            if text.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError
            value = text.lower() in ("true", "1", "yes", "on")
        elif kind in ("ints", "floats"):
            conv = int if kind == "ints" else float
            parts = [conv(v) for v in text.replace("x", ",").split(",") if v.strip()]
            if len(parts) not in (1, 3):
                raise ValueError
            value = tuple(parts * 3 if len(parts) == 1 else parts)
        elif kind == "int":
            value = int(text)
        elif kind == "float":
            value = float(text)
        else:
            value = text
    except ValueError:
        what = {"bool": "true or false", "ints": "N or D,H,W integers", "floats": "x or x,y,z numbers",
                "int": "a whole number", "float": "a number"}.get(kind, "text")
        raise InputError(f"{name}: {text!r} is not {what}") from None
    replace(TrainConfig(), **{name: value}).validate()
    return value


def field_kind(f) -> str:
    """'bool' | 'int' | 'float' | 'ints' | 'floats' | 'str': how a front end parses field ``f``."""
    t = str(f.type)
    if t.startswith("bool"):
        return "bool"
    if "tuple[int" in t:
        return "ints"
    if "tuple[float" in t:
        return "floats"
    if t.startswith("int"):
        return "int"
    if t.startswith("float"):
        return "float"
    return "str"

