"""Exceptions raised in browser callbacks are shown to the user; the server keeps running."""

from __future__ import annotations

import functools
import logging
import traceback

from weaknet.errors import WeakNetError

log = logging.getLogger("weaknet_web")


def report_to(state):
    """Decorator for trame callbacks: an exception becomes ``state.error_message`` (shown in a snack bar).

    WeakNetError messages are shown as they are (they are one actionable line); anything else is shown as
    ``Internal error: <type>: <message>`` and its traceback goes to the server log.
    """

    def wrap(callback):
        @functools.wraps(callback)
        def guarded(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            except WeakNetError as exc:
                show_error(state, str(exc))
            except Exception as exc:  # noqa: BLE001 - the server must survive any callback failure
                log.error("callback %s failed:\n%s", callback.__name__, traceback.format_exc())
                show_error(state, f"Internal error: {type(exc).__name__}: {exc}")
            return None

        return guarded

    return wrap


def show_error(state, message: str) -> None:
    """Show ``message`` in the page's error bar and count it (``state.error_count``, read by tests)."""
    log.warning("%s", message)
    with state:
        state.error_message = message
        state.error_visible = True
        state.error_count = int(state.error_count or 0) + 1
