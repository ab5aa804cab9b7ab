"""Exceptions raised in browser callbacks are shown to the user; the server keeps running.

The error bar shows in the tab whose action failed (``state.error_client``: the wslink client id of the
caller; every tab learns its own with the ``weaknet_whoami`` trigger), or in every tab for a failure of
background work; each tab closes it on its own. Messages show paths relative to the data root and none of
the libraries' source locations (``.../sitkImageReaderBase.cxx:99:``).
"""

from __future__ import annotations

import functools
import logging
import re
import traceback
from pathlib import Path

from weaknet.errors import WeakNetError

log = logging.getLogger("weaknet_web")
_SOURCE_REF = re.compile(r"\s*(Exception thrown in SimpleITK \w+:\s*)?\S+\.(?:cxx|cpp|hxx|txx|h):\d+:?")


def user_message(message: str, root: Path | None = None) -> str:
    """``message`` as the page shows it: ``root``'s absolute path left out (paths relative to the data root,
    as the user typed them), C++ source locations left out."""
    if root is not None:
        message = message.replace(f"{root}/", "").replace(str(root), ".")
    message = _SOURCE_REF.sub("", message)
    return re.sub(r"\(\s*\)", "(unreadable)", re.sub(r"\(\s+", "(", message))


def calling_client(server) -> str:
    """The wslink client id of the tab whose message is being handled ("" outside of a client's call)."""
    try:
        return str(server.protocol.publish.__self__.web_app.last_active_client_id or "")
    except AttributeError:  # no server running (scripts, tests without a browser)
        return ""


def report_to(state, server=None, root: Path | None = None):
    """Decorator for trame callbacks: an exception becomes ``state.error_message`` (shown in a snack bar in
    the calling tab); the callback's result is dropped (trame would try to send it to the page).

    WeakNetError messages are shown as they are (they are one actionable line); anything else is shown as
    ``Internal error: <type>: <message>`` and its traceback goes to the server log.
    """

    def wrap(callback):
        @functools.wraps(callback)
        def guarded(*args, **kwargs):
            try:
                callback(*args, **kwargs)
            except WeakNetError as exc:
                show_error(state, user_message(str(exc), root), calling_client(server))
            except Exception as exc:  # noqa: BLE001 - the server must survive any callback failure
                log.error("callback %s failed:\n%s", callback.__name__, traceback.format_exc())
                show_error(state, user_message(f"Internal error: {type(exc).__name__}: {exc}", root),
                           calling_client(server))

        return guarded

    return wrap


def show_error(state, message: str, client: str = "") -> None:
    """Show ``message`` in the page's error bar of tab ``client`` (every tab: "") and count it
    (``state.error_count``, read by tests)."""
    log.warning("%s", message)
    with state:
        state.error_message = message
        state.error_client = client
        state.error_count = int(state.error_count or 0) + 1
