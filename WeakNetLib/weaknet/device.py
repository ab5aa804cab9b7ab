"""Choose the torch device for training and prediction: ``auto`` = CUDA, then Apple MPS, then CPU.

Mixed precision (bfloat16 autocast) is used on CUDA only.
"""

from __future__ import annotations

import torch

from .errors import InputError

DEVICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``/``cpu``/``cuda``/``cuda:N``/``mps`` → a usable :class:`torch.device`.

    Raises :class:`InputError` when the requested accelerator is absent (nothing is started).
    """
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {name} asked for, but CUDA is not available here (no GPU or a CPU-only "
                             f"torch build); use --device auto or --device cpu")
        return torch.device(name)
    if name == "mps":
        if not _mps_available():
            raise InputError("--device mps asked for, but Apple MPS is not available here; "
                             "use --device auto or --device cpu")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise InputError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)} (or cuda:N)")


def autocast(device: torch.device, enabled: bool = True):
    """Context manager: bfloat16 autocast on CUDA (when ``enabled``), a no-op elsewhere."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=bool(enabled and device.type == "cuda"))
