"""Files the page reads and writes, all under the data root: uploads, point files, segmentations.

Uploads are size-limited (checked in the browser before sending and again on the server), must carry a
volume suffix, and must read as a 3-D scalar volume before they are kept (in ``<data root>/uploads/``).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from weaknet.errors import InputError
from weaknet.filenames import safe_stem, split_suffix, unique_stem

from .sandbox import DataRoot, is_volume_name

UPLOADS = "uploads"


def safe_file_name(name: str) -> str:
    """The last component of a browser-supplied file name: its stem made safe
    (:func:`weaknet.filenames.safe_stem`) and its suffix in lower case, e.g. ``"..\\CT 1.NII.GZ"`` →
    ``"CT_1.nii.gz"``."""
    base = re.split(r"[\\/]", str(name))[-1].lstrip(".")
    stem, suffix = split_suffix(base)
    clean = safe_stem(stem, "") + re.sub(r"[^a-z0-9.]+", "", suffix.lower())
    if not safe_stem(stem, ""):
        raise InputError(f"unusable file name {name!r}; rename the file")
    return clean


def store_upload(data_root: DataRoot, name: str, content: bytes | None, max_bytes: int) -> str:
    """Validate an uploaded volume and keep it under ``uploads/``; returns its path relative to the root.

    Raises InputError if it is empty, larger than ``max_bytes``, not named like a volume, or not readable
    as a 3-D scalar volume. An existing file of the same name is never overwritten (``_2``, ``_3``… added).
    """
    from weaknet.volume import read_volume

    clean = safe_file_name(name)
    if not content:
        raise InputError(f"{clean}: the upload is empty")
    if len(content) > max_bytes:
        raise InputError(f"{clean}: {len(content) / 2**20:.1f} MB is over the upload limit of "
                         f"{max_bytes / 2**20:.0f} MB; copy it into the data root instead")
    if not is_volume_name(clean):
        raise InputError(f"{clean}: not a volume file name (.nrrd, .nii, .nii.gz, .mha, .mhd, .tif)")
    folder = data_root.resolve(UPLOADS)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".upload-") as tmp:
        staged = Path(tmp) / clean
        staged.write_bytes(content)
        try:
            read_volume(staged)
        except InputError as exc:
            raise InputError(f"{clean}: rejected, {str(exc).split(': ', 1)[-1]}") from None
        stem, suffix = split_suffix(clean)
        taken = [split_suffix(p.name)[0] for p in folder.iterdir() if p.name.lower().endswith(suffix)]
        target = folder / (unique_stem(stem, taken) + suffix)
        shutil.move(str(staged), target)
    return data_root.relative(target)


def output_path(data_root: DataRoot, relative: str, suffixes: tuple[str, ...]) -> Path:
    """Where to write ``relative`` (inside the root, parent folders created); its suffix must be one of
    ``suffixes``."""
    if not str(relative).lower().endswith(suffixes):
        raise InputError(f"{relative!r}: the file name must end with {' or '.join(suffixes)}")
    path = data_root.resolve(relative)
    if path.is_dir():
        raise InputError(f"{relative!r} is a folder; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
