"""Start the annotator's server and print its URL."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


MESSAGE_MARGIN = 16 * 2**20  # websocket messages other than uploads are far smaller
SWITCH_INTERVAL_S = 0.0005
"""How long the interpreter lets one thread hold the GIL when another waits (Python's default: 5 ms): a
template refined on a worker thread must not hold up the click being answered, many short steps each."""


def limit_message_size(max_bytes: int) -> None:
    """Make the websocket layer (wslink) refuse any client message larger than ``max_bytes`` before
    allocating it. wslink allows authenticated clients 4 GB per message, announced in the message header;
    the app's uploads travel as one message each, so this is the server-side size limit on uploads."""
    from wslink import chunking

    original = chunking.UnChunker.set_max_message_size
    if getattr(original, "weaknet_limit", None) is not None:
        original = original.weaknet_original

    def capped(self, size):
        original(self, min(int(size), max_bytes))

    capped.weaknet_limit, capped.weaknet_original = max_bytes, original
    chunking.UnChunker.set_max_message_size = capped


def serve(*, data_root: str | Path, volume: str | None = None, host: str = "127.0.0.1", port: int = 8080,
          sample: bool = False, max_upload_mb: float = 512.0, volume_rendering: bool | None = None) -> int:
    """Run the app until interrupted. ``volume`` is relative to ``data_root``; ``port`` 0 picks a free one.

    ``volume_rendering`` None: on with a GPU, off with a software OpenGL renderer. Run it with
    ``OPENBLAS_NUM_THREADS=1`` (``weaknet app`` sets it): a multi-threaded OpenBLAS on a busy machine makes
    each template fit from scratch take seconds instead of ~0.1 s. Prints
    ``weaknet app: serving DATA_ROOT at URL`` (flushed) once the port is chosen.
    """
    logging.basicConfig(level=os.environ.get("WEAKNET_LOG", "WARNING"),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from .app import AnnotatorApp

    sys.setswitchinterval(SWITCH_INTERVAL_S)
    port = port or free_port(host)
    limit_message_size(int(max_upload_mb * 2**20) + MESSAGE_MARGIN)
    app = AnnotatorApp(data_root=data_root, volume=volume, max_upload_mb=max_upload_mb,
                       volume_rendering=volume_rendering, sample=sample)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"
    print(f"weaknet app: serving {app.data_root.path} at {url}", flush=True)
    try:  # Ctrl-C or SIGTERM (aiohttp's handlers end the loop): the shutdown runs either way
        # timeout=0: keep serving when the last tab closes (trame's default stops the server 5 minutes later)
        app.server.start(host=host, port=port, open_browser=False, show_connection_info=False, timeout=0)
    except KeyboardInterrupt:
        pass
    finally:
        app.shutdown()
    return 0

