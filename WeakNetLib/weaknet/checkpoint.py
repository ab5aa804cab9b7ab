"""MODEL_DIR files, each written atomically (temporary file + rename):

* ``model.json``        — everything predict needs (config, nets, normalisation, spacing, λ, γ, d, versions);
* ``model.safetensors`` — weights of the core net (``core.*``) and reconstruction net (``recon.*``);
* ``checkpoint.pt``     — last finished epoch: model + optimiser + scheduler + torch RNG + epoch, loadable
  with ``torch.load(weights_only=True)``;
* ``training_log.jsonl`` — one JSON line per epoch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import __version__
from .errors import InputError

MODEL_FORMAT = 1
MODEL_JSON = "model.json"
WEIGHTS = "model.safetensors"
CHECKPOINT = "checkpoint.pt"
LOG = "training_log.jsonl"


class ModelError(InputError):
    """A model directory is missing, corrupt, or written by an incompatible version."""


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_json(path: Path, doc: dict) -> Path:
    """Write ``doc`` as indented JSON, atomically."""
    return _atomic(path, lambda t: t.write_text(json.dumps(doc, indent=2), encoding="utf-8"))


def save_torch(path: Path, state: dict) -> Path:
    """``torch.save`` atomically (a kill mid-write leaves the previous file intact)."""
    import torch

    return _atomic(path, lambda t: torch.save(state, t))


def save_weights(path: Path, state_dict: dict) -> Path:
    """Save a state dict as safetensors, atomically."""
    from safetensors.torch import save_file

    flat = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    return _atomic(path, lambda t: save_file(flat, str(t), metadata={"weaknet": __version__}))


def read_model_json(model_dir: Path) -> dict:
    """Read and check ``model.json`` (format version) of a model directory."""
    p = Path(model_dir) / MODEL_JSON
    if not p.is_file():
        raise ModelError(f"{model_dir}: not a WeakNet model directory (no {MODEL_JSON}); train one with "
                         f"`weaknet train`")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{p}: corrupt ({exc}); retrain or restore the file") from None
    fmt = doc.get("format") if isinstance(doc, dict) else None
    if fmt != MODEL_FORMAT:
        raise ModelError(f"{p}: model format {fmt!r} written by weaknet {doc.get('weaknet_version', '?')}; "
                         f"this weaknet {__version__} reads format {MODEL_FORMAT}: retrain, or use that version")
    return doc


def load_weights(model_dir: Path, prefix: str | None = None) -> dict:
    """Load ``model.safetensors`` (optionally only keys under ``prefix.``, with the prefix removed)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(model_dir) / WEIGHTS
    if not p.is_file():
        raise ModelError(f"{model_dir}: has no {WEIGHTS}; training has not finished an epoch yet")
    try:
        sd = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{p}: corrupt weights ({str(exc).splitlines()[0][:120]}); retrain or restore it") from None
    if prefix is None:
        return sd
    return {k[len(prefix) + 1:]: v for k, v in sd.items() if k.startswith(prefix + ".")}


def load_checkpoint(model_dir: Path) -> dict:
    """Load ``checkpoint.pt`` with ``weights_only=True``; a corrupt or foreign file raises :class:`ModelError`."""
    import pickle

    import torch

    p = Path(model_dir) / CHECKPOINT
    if not p.is_file():
        raise ModelError(f"{model_dir}: no {CHECKPOINT} to resume from; start without --resume")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, OSError, ValueError) as exc:
        raise ModelError(f"{p}: corrupt checkpoint ({str(exc).splitlines()[0][:120]}); delete it to start "
                         f"over, or restore it") from None
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        raise ModelError(f"{p}: checkpoint format {state.get('format') if isinstance(state, dict) else '?'} "
                         f"is not {MODEL_FORMAT} (another weaknet version); start over in a new folder")
    return state


def append_log(model_dir: Path, record: dict) -> None:
    """Append one JSON line to the training log."""
    with open(Path(model_dir) / LOG, "a") as fh:
        fh.write(json.dumps(record) + "\n")
