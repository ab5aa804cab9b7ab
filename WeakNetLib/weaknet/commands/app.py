"""``weaknet app``: the browser annotator (trame-slicer), served from this machine."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError


def add_parser(sub):
    p = sub.add_parser(
        "app", help="serve the browser annotator (click points, fit templates, train, apply)",
        description="Serve WeakNet's annotator to a web browser (needs the weaknet-web package: "
                    "pip install -e WeakNetWeb, or ./dev setup full). Prints the URL to open. The app reads "
                    "and writes only under --data-root.")
    p.add_argument("volume", nargs="?", default=None,
                   help="a volume to open (or a folder: it becomes the data root)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    p.add_argument("--data-root", default=None,
                   help="the only folder the app reads and writes (default: the volume's folder, or the "
                        "current folder)")
    p.add_argument("--sample", action="store_true", help="open the built-in phantom at start")
    p.add_argument("--max-upload-mb", type=float, default=512.0, help="largest accepted upload (default 512)")
    p.add_argument("--volume-rendering", choices=("auto", "on", "off"), default="auto",
                   help="volume rendering in the 3D view (default auto: on with a GPU, off with a software "
                        "renderer, where it costs ~2 s a frame)")
    return p


def resolve_paths(volume: str | None, data_root: str | None) -> tuple[Path, str | None]:
    """(data root, volume path relative to it or None) from the command-line arguments.

    A folder argument is the data root; a file argument must lie inside --data-root when both are given.
    """
    if volume is not None and not Path(volume).exists():
        raise InputError(f"{volume}: no such file or folder")
    if volume is not None and Path(volume).is_dir():
        if data_root is not None and Path(data_root).resolve() != Path(volume).resolve():
            raise InputError("give either a folder or --data-root, not both")
        return Path(volume).resolve(), None
    vol = Path(volume).resolve() if volume is not None else None
    root = Path(data_root).resolve() if data_root is not None else (vol.parent if vol else Path.cwd())
    if vol is None:
        return root, None
    if root not in vol.parents:
        raise InputError(f"{volume} is outside the data root {root}; move it there or pass --data-root")
    return root, vol.relative_to(root).as_posix()


def run(args) -> int:
    # numpy/scipy's OpenBLAS, multi-threaded on a busy machine, made the ASM's banded Cholesky take 15 s
    # instead of 0.1 s (2 shared cores): the interactive server's small solves run single-threaded. Set
    # before numpy loads; torch (training runs in a child process) has its own thread pool.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        from weaknet_web.server import serve
    except ImportError as exc:
        raise InputError(f"the browser app is not installed ({exc.name or exc}): run "
                         "`pip install -e WeakNetWeb` (or `./dev setup full`)") from None
    root, volume = resolve_paths(args.volume, args.data_root)
    return serve(data_root=root, volume=volume, host=args.host, port=args.port, sample=args.sample,
                 max_upload_mb=args.max_upload_mb,
                 volume_rendering={"auto": None, "on": True, "off": False}[args.volume_rendering])
