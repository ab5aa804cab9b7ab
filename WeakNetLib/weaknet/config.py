"""Training settings (no torch import, so the command line can build its parser cheaply).

:class:`TrainConfig` holds every training setting and is stored in model.json; :class:`NetConfig` the shape
of the two U-Nets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .errors import InputError


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


@dataclass
class TrainConfig:
    """Every training setting; stored in model.json. ``patch`` is (D, H, W) voxels.

    lambda_: weight of the reconstruction term (sum over patch voxels, mean over batch; see
    :mod:`weaknet.loss`); gamma: threshold on the foreground probability at prediction;
    boundary_distance: d in mm — W = weight_near within d of the template boundary, weight_far elsewhere.
    """

    supervision: str = "weak"
    lambda_: float = 1e-4
    gamma: float = 0.5
    boundary_distance: float = 5.0
    weight_near: float = 1.0
    weight_far: float = 0.1
    epochs: int = 20
    steps_per_epoch: int = 50
    batch_size: int = 2
    patch: tuple[int, int, int] = (64, 64, 64)
    base_channels: int = 16
    depth: int = 4
    res_units: int = 1
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    foreground_fraction: float = 0.5
    augment: bool = True
    overlap: float = 0.25
    straight_through: bool = True
    device: str = "auto"
    amp: bool = True
    seed: int = 0

    def __post_init__(self):
        p = self.patch
        self.patch = tuple(int(v) for v in ((p,) * 3 if isinstance(p, int) else p))

    @property
    def net(self) -> NetConfig:
        return NetConfig(self.base_channels, self.depth, self.res_units)

    def validate(self) -> None:
        """Raise :class:`InputError` for a setting that cannot work."""
        if self.supervision not in ("weak", "slices", "full"):
            raise InputError(f"supervision must be weak, slices or full, not {self.supervision!r}")
        m = patch_multiple(self.net)
        if len(self.patch) != 3 or any(p <= 0 or p % m for p in self.patch):
            raise InputError(f"patch {self.patch}: each side must be a positive multiple of {m} "
                             f"(2^(depth-1) for depth {self.depth})")
        if self.lambda_ < 0 or not 0 < self.gamma < 1 or self.boundary_distance < 0:
            raise InputError("need lambda >= 0, 0 < gamma < 1 and boundary distance >= 0")
        if self.epochs < 1 or self.steps_per_epoch < 1 or self.batch_size < 1:
            raise InputError("epochs, steps per epoch and batch size must be at least 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "TrainConfig":
        names = {f.name for f in fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in d.items() if k in names})


