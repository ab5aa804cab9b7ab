"""The templates' autosave off the interactive path: a Slicer ``.seg.nrrd`` written from a snapshot in a thread.

A click must not wait for the templates file (a whole-grid labelmap per object: 35 ms and more on a CT). The
session hands :class:`TemplateWriter` a snapshot after each change: per object its bounding box and the
block of voxels there (arrays the session never changes again, so taking a snapshot copies nothing). The
writer's thread writes the newest snapshot at most once per ``interval`` seconds, at once when asked (the end
of a drag), and always on :meth:`TemplateWriter.flush`. Writing is numpy + zlib + a file, which release the
GIL; VTK and Slicer's storage nodes (which hold it) stay on the main thread.

The file is Slicer's segmentation format (what ``vtkMRMLSegmentationStorageNode`` writes and reads): a 4-D
NRRD, one layer per segment over the union of the boxes (``Segmentation_ReferenceImageExtentOffset``), the
segments' names, colours, extents and tags in ``SegmentN_*`` fields. Each segment carries the tag
:data:`POINTS_TAG`, a fingerprint of the points its template was fitted through, so a reopened session knows
which templates are older than their points.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from weaknet.coords import lps_matrix_to_ras
from weaknet.volume import Geometry

log = logging.getLogger(__name__)

POINTS_TAG = "WeakNet.PointsFingerprint"
INTERVAL_S = 1.0
"""At most one templates file per second while clicking."""


def points_fingerprint(points_lps: np.ndarray) -> str:
    """A short fingerprint of points (N, 3) LPS mm, rounded to 0.1 µm (what a .mrk.json round trip keeps)."""
    pts = np.round(np.asarray(points_lps, float).reshape(-1, 3), 4) + 0.0  # + 0.0: -0.0 → 0.0
    return hashlib.sha1(pts.tobytes()).hexdigest()[:16]


@dataclass(frozen=True)
class SegmentBlock:
    """One segment as written: its id, name, colour (r, g, b 0..1), the voxels of its bounding box (uint8
    (D, H, W) 0/1, never changed after the snapshot, or None when empty) from voxel ``offset`` (k, j, i)
    of the volume's grid, and its tags (name → value)."""

    segment_id: str
    name: str
    color: tuple[float, float, float]
    block: np.ndarray | None
    offset: tuple[int, int, int] = (0, 0, 0)
    tags: dict[str, str] = field(default_factory=dict)


def write_seg_nrrd(path: str | Path, geometry: Geometry, segments: list[SegmentBlock], level: int = 1) -> Path:
    """Write ``segments`` on ``geometry``'s grid as a Slicer ``.seg.nrrd`` (gzip ``level``), atomically (a
    temporary file renamed). Returns the path; OSError when the folder cannot be written."""
    path = Path(path)
    filled = {n for n, s in enumerate(segments) if s.block is not None and s.block.size}
    if filled:
        lo = np.min([segments[n].offset for n in filled], axis=0)
        hi = np.max([np.add(segments[n].offset, segments[n].block.shape) for n in filled], axis=0)
    else:  # no voxels at all: one empty voxel keeps the file readable
        lo, hi = np.zeros(3, int), np.ones(3, int)
    shape = tuple(int(v) for v in hi - lo)  # (D, H, W) of the written box
    layers = np.zeros((max(len(segments), 1),) + shape, np.uint8)
    for n, s in enumerate(segments):
        if n in filled:
            k, j, i = np.subtract(s.offset, lo)
            d, h, w = s.block.shape
            layers[n, k:k + d, j:j + h, i:i + w] = s.block
    # (layer, k, j, i) in memory = NRRD's fastest axis first: layer, i, j, k
    gzip = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # a gzip stream, as NRRD's "gzip" wants
    data = gzip.compress(np.moveaxis(layers, 0, -1).tobytes()) + gzip.flush()
    index_to_lps = geometry.index_to_lps
    axes = index_to_lps[:3, :3]
    origin = index_to_lps[:3, :3] @ lo[::-1].astype(float) + index_to_lps[:3, 3]  # voxel lo (i, j, k) in LPS
    ijk_to_ras = lps_matrix_to_ras(index_to_lps)
    size = geometry.size
    reference = ";".join(f"{v:.17g}" for v in ijk_to_ras.ravel()) + ";" + \
        ";".join(f"0;{n - 1}" for n in size) + ";"
    lines = ["NRRD0004", "# Complete NRRD file format specification at:",
             "# http://teem.sourceforge.net/nrrd/format.html", "type: unsigned char", "dimension: 4",
             "space: left-posterior-superior", f"sizes: {layers.shape[0]} {shape[2]} {shape[1]} {shape[0]}",
             "space directions: none " + " ".join("(" + ",".join(f"{v:.17g}" for v in axes[:, c]) + ")"
                                                  for c in range(3)),
             "kinds: list domain domain domain", "encoding: gzip",
             "space origin: (" + ",".join(f"{v:.17g}" for v in origin) + ")"]
    for n, s in enumerate(segments):
        if n in filled:  # the segment's box in the file's own voxels (Slicer's reader adds the offset)
            k, j, i = np.subtract(s.offset, lo)
            d, h, w = s.block.shape
            extent = f"{i} {i + w - 1} {j} {j + h - 1} {k} {k + d - 1}"
        else:
            extent = "0 -1 0 -1 0 -1"  # empty
        tags = "".join(f"{_clean(k)}:{_clean(v)}|" for k, v in s.tags.items())
        lines += [f"Segment{n}_Color:={' '.join(f'{c:.6g}' for c in s.color)}", f"Segment{n}_ColorAutoGenerated:=0",
                  f"Segment{n}_Extent:={extent}", f"Segment{n}_ID:={_clean(s.segment_id)}",
                  f"Segment{n}_LabelValue:=1", f"Segment{n}_Layer:={n}", f"Segment{n}_Name:={_clean(s.name)}",
                  f"Segment{n}_NameAutoGenerated:=0", f"Segment{n}_Tags:={tags}"]
    lines += ["Segmentation_ContainedRepresentationNames:=Binary labelmap|",
              f"Segmentation_ConversionParameters:=Reference image geometry|{reference}|"
              "Image geometry description string determining the geometry of the labelmap.&",
              "Segmentation_MasterRepresentation:=Binary labelmap",
              f"Segmentation_ReferenceImageExtentOffset:={lo[2]} {lo[1]} {lo[0]}"]
    header = ("\n".join(lines) + "\n\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(header)
        f.write(data)
    tmp.replace(path)
    return path


def read_tags(path: str | Path) -> dict[str, dict[str, str]]:
    """Per segment id, the tags stored in a ``.seg.nrrd``'s header (any writer's: Slicer's or ours)."""
    fields: dict[str, str] = {}
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if not line:
                break
            if ":=" in line:
                key, value = line.split(":=", 1)
                fields[key] = value
    out = {}
    for key, value in fields.items():
        if key.startswith("Segment") and key.endswith("_ID"):
            tags = fields.get(key[:-3] + "_Tags", "")
            out[value] = dict(t.split(":", 1) for t in tags.split("|") if ":" in t)
    return out


def _clean(text: str) -> str:
    """A header value without the characters that end a line or separate tags."""
    return str(text).replace("\n", " ").replace("|", "/")


class TemplateWriter:
    """Writes the newest templates snapshot in a background thread: at most once per ``interval`` seconds,
    at once when asked, and before :meth:`flush` returns.

    ``on_error(message | None)`` is called from the thread after each write (None when it succeeded).
    """

    def __init__(self, on_error: Callable[[str | None], None] | None = None, interval: float = INTERVAL_S):
        self.interval = interval
        self._on_error = on_error
        self._pending: tuple | None = None
        self._urgent = False
        self._busy = False
        self._last = -np.inf
        self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.writes = 0

    def request(self, path: Path, geometry: Geometry, segments: list[SegmentBlock], now: bool = False) -> None:
        """Queue a snapshot (replacing one not yet written); ``now``: skip the wait of the once-a-second rule."""
        with self._cond:
            self._pending = (Path(path), geometry, list(segments))
            self._urgent = self._urgent or now
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="weaknet-templates", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float = 60.0) -> bool:
        """Write what is queued at once and wait until it is on disk; False when that took over ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._urgent = True
            self._cond.notify_all()
            while self._pending is not None or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        """Flush, then stop the thread."""
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._pending is not None:
                        wait = self._last + self.interval - time.monotonic()
                        if self._urgent or wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
                if self._closed and self._pending is None:
                    return
                job, self._pending, self._urgent, self._busy = self._pending, None, False, True
                self._last = time.monotonic()
            error = None
            try:
                write_seg_nrrd(*job)
            except (OSError, ValueError) as exc:
                error = f"{job[0]}: could not be written ({exc})"
            except Exception as exc:  # noqa: BLE001 - the thread must live on; the points are safe
                log.exception("WeakNet: writing the templates failed")
                error = f"{job[0]}: could not be written ({type(exc).__name__}: {exc})"
            with self._cond:
                self._busy = False
                self.writes += 1
                self._cond.notify_all()
            if self._on_error is not None:
                self._on_error(error)

