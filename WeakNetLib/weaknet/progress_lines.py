"""The machine-readable progress protocol of ``weaknet train|predict --progress-lines``.

One line per progress event on stdout, flushed at once::

    @weaknet {"event": "step", "epoch": 1, "step": 3, "steps": 20, "loss": 0.41}

``PREFIX`` followed by one JSON object (ASCII only, so any console code page reads it) with at least an
``"event"`` key: ``start``, ``plan``, ``step``, ``epoch``, ``warning``, then ``done`` or ``cancelled``. Every
other line on stdout/stderr (logs, tqdm, a command's error) is free text. A front end runs the command as a
child process and reads the lines (``WeakNetSlicerLib.process``); a failure is a non-zero exit status, its
message the command's last ``error:`` line.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

PREFIX = "@weaknet "


def format_line(event: dict) -> str:
    """``PREFIX`` + the event as one line of ASCII JSON (no newline). Raises ValueError without ``"event"``."""
    if "event" not in event:
        raise ValueError(f"a progress event needs an 'event' key: {event!r}")
    return PREFIX + json.dumps(event, ensure_ascii=True, separators=(",", ":"), default=str)


def parse_line(line: str) -> dict | None:
    """The event of a protocol line, or None for any other line (free text, or JSON without ``"event"``)."""
    if not line.startswith(PREFIX):
        return None
    try:
        event = json.loads(line[len(PREFIX):])
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


class LinePrinter:
    """A ``progress`` callback (``weaknet.train.train``, ``weaknet.predict.predict_files``) that prints each
    event as one protocol line on ``stream`` (default: stdout at call time) and flushes it."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream

    def __call__(self, event: dict) -> None:
        stream = self.stream or sys.stdout
        stream.write(format_line(event) + "\n")
        stream.flush()
