"""File names: the volume suffixes WeakNet reads, and safe, collision-free stems for names users type.

Object names ("肝臓", "Object 1"), volume node names and uploaded file names become file stems and
segment ids through :func:`safe_stem`; :func:`unique_stem` adds ``_2``, ``_3``... so that two names that
clean up alike ("肝臓" and "脾臓", "Object 1" and "Object_1", "Liver" and "liver" on a case-insensitive
disk) never share a file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".tif", ".tiff")
"""Volume file suffixes (lower case) read by :func:`weaknet.volume.read_volume`, longest match first."""
COMPOUND_SUFFIXES = (".nii.gz", ".seg.nrrd", ".mrk.json")
"""Suffixes of two parts, kept whole when splitting a name."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def split_suffix(name: str) -> tuple[str, str]:
    """``("a", ".nii.gz")`` for ``"a.nii.gz"``: the stem and the suffix (two-part suffixes kept whole)."""
    lower = name.lower()
    for suffix in COMPOUND_SUFFIXES + VOLUME_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], name[-len(suffix):]
    dot = name.rfind(".")
    return (name[:dot], name[dot:]) if dot > 0 else (name, "")


def safe_stem(name: str, fallback: str = "object") -> str:
    """``name`` reduced to ``[A-Za-z0-9_-]`` (runs of anything else become one ``_``, no ``_`` at the ends);
    ``fallback`` when nothing is left (e.g. a name written only in Japanese)."""
    return _UNSAFE.sub("_", str(name)).strip("_") or fallback


def unique_stem(name: str, taken: Iterable[str], fallback: str = "object") -> str:
    """:func:`safe_stem` of ``name``, with ``_2``, ``_3``... appended until no stem in ``taken`` equals it
    ignoring case (Windows and macOS disks do not tell "Liver" from "liver")."""
    used = {t.casefold() for t in taken}
    stem = safe_stem(name, fallback)
    candidate, n = stem, 1
    while candidate.casefold() in used:
        n += 1
        candidate = f"{stem}_{n}"
    return candidate
