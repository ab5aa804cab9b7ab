"""The data root: the one folder the web app may read and write.

Every path that comes from a browser is a string relative to the data root. :class:`DataRoot` turns it into
an absolute path only if it stays inside the root: absolute paths, ``..`` components, and symbolic links
that lead out of the root are refused with a one-line :class:`~weaknet.errors.InputError`.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from weaknet.errors import InputError
from weaknet.filenames import VOLUME_SUFFIXES, split_suffix


def is_volume_name(name: str) -> bool:
    """True if ``name`` ends with a volume suffix this app reads (NRRD, NIfTI, MetaImage, TIFF)."""
    lower = name.lower()
    return lower.endswith(VOLUME_SUFFIXES) and not lower.endswith((".seg.nrrd", "_label.nrrd"))


class DataRoot:
    """A folder the app is confined to; ``resolve`` maps browser-supplied relative paths into it."""

    def __init__(self, root: str | os.PathLike):
        root_path = Path(root).expanduser()
        root_path.mkdir(parents=True, exist_ok=True)
        self.path = root_path.resolve(strict=True)

    def resolve(self, relative: str, *, must_exist: bool = False) -> Path:
        """The absolute path of ``relative`` (POSIX, relative to the root), refusing any way out of the root.

        Raises InputError for an empty, absolute or ``..``-containing path, one whose real location (after
        following symbolic links) is outside the root, and, with ``must_exist``, one that does not exist.
        """
        text = str(relative).strip().replace("\\", "/")
        if not text:
            raise InputError("empty path: give a path relative to the data root")
        pure = PurePosixPath(text)
        if pure.is_absolute() or (len(text) > 1 and text[1] == ":"):
            raise InputError(f"absolute path refused: {text!r}; give a path relative to the data root")
        if ".." in pure.parts:
            raise InputError(f"path with '..' refused: {text!r}; stay inside the data root")
        candidate = self.path.joinpath(*pure.parts)
        real = candidate.resolve(strict=False)
        if real != self.path and self.path not in real.parents:
            raise InputError(f"path leads out of the data root (symbolic link?): {text!r}")
        if must_exist and not real.exists():
            raise InputError(f"no such file in the data root: {text!r}")
        return real

    def relative(self, path: str | os.PathLike) -> str:
        """``path`` (inside the root) as the POSIX string the browser uses."""
        return Path(path).resolve().relative_to(self.path).as_posix()

    def list_volumes(self, limit: int = 500) -> list[str]:
        """Relative paths of the volume files under the root (sorted, at most ``limit``), skipping links out."""
        found: list[str] = []
        for folder, dirs, files in os.walk(self.path, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not is_volume_name(name) or split_suffix(name)[0].lower().endswith("_label"):
                    continue  # labelmaps (x_label.nrrd, x_label.tif...) are not volumes to annotate
                relative = (Path(folder) / name).relative_to(self.path).as_posix()
                try:
                    self.resolve(relative)
                except InputError:
                    continue
                found.append(relative)
                if len(found) >= limit:
                    return found
        return found
