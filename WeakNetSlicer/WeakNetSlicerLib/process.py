"""Long work out of process: ``<python> -m weaknet train|predict … --progress-lines`` as a child process,
its progress lines (:mod:`weaknet.progress_lines`) read in a thread, state polled from a GUI timer, cancel
by killing the process tree.

Why not ``multiprocessing``: in desktop Slicer ``sys.executable`` is the PythonSlicer launcher and
``__main__`` is Slicer's ``slicerqt.py``, which a "spawn" child re-runs (importing Qt) and dies on; a child
that runs the ``weaknet`` command line needs nothing of the parent. The same class runs in Slicer (where
``sys.executable`` is PythonSlicer, a launcher that starts the real interpreter as its own child — hence the
tree kill) and headless (``sys.executable`` of the test's interpreter)::

    run = train_process("train/DATASET.json", "model", TrainConfig(epochs=5))   # returns at once
    run.poll()                      # from a QTimer: new events; updates state / fraction / message
    run.state                       # TrainingState: running → done | cancelled | failed
    run.cancel()                    # kills the child and its children; nothing is reported as a result
    run.output                      # the trained model's folder, only once "done"

The child is started by :func:`slicer.util.launchConsoleProcess` (stdout and stderr merged), with this
process's environment plus the folder of the ``weaknet`` package imported here on ``PYTHONPATH``. A run is
also a job of :class:`~WeakNetSlicerLib.training.TrainingController` (``job_factory=train_job``).
"""

from __future__ import annotations

import locale
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import fields
from pathlib import Path
from typing import Callable

import weaknet
from weaknet.config import TrainConfig
from weaknet.dataset import read_dataset
from weaknet.errors import InputError
from weaknet.progress import TrainingState, steps_done, total_steps
from weaknet.progress_lines import parse_line

WEAKNET = ("-m", "weaknet")
"""How the child runs the command line: ``<python> -m weaknet <command> …``."""
_EXIT = object()  # queued by the reader thread after the child exited


class ProcessRun:
    """One ``weaknet`` command in a child process; call :meth:`poll` from a GUI timer.

    ``state`` a :class:`~weaknet.progress.TrainingState` (idle until started); ``fraction`` 0–1; ``message``
    one line for the panel; ``error`` why a failed run failed; ``events`` every progress event so far; ``log``
    the last free-text output lines; ``result`` the ``done`` event; ``output_dir`` what the command writes;
    ``output`` what ``on_done(run)`` returned (it runs in :meth:`poll`, i.e. on the caller's thread, once the
    child exited with status 0 after its ``done`` event). ``scratch``: a folder deleted once the run ended,
    whatever the outcome.
    """

    def __init__(self, command: list[str], python: str | None = None, entry: tuple[str, ...] = WEAKNET,
                 on_done: Callable[[ProcessRun], object] | None = None, scratch: Path | None = None,
                 output_dir: Path | None = None, log_lines: int = 200):
        self.args = [python or sys.executable, *entry, *command, "--progress-lines"]
        self.on_done = on_done
        self.scratch = scratch
        self.output_dir = output_dir
        self.state = TrainingState.IDLE
        self.error: str | None = None
        self.fraction = 0.0
        self.message = f"starting weaknet {command[0]}..."
        self.events: list[dict] = []
        self.log: deque[str] = deque(maxlen=log_lines)
        self.result: dict | None = None
        self.output = None
        self.returncode: int | None = None
        self._queue: queue.Queue = queue.Queue()
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._total = 0
        self._cancelled = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def finished(self) -> bool:
        return self.state.finished

    def start(self) -> ProcessRun:
        """Start the child (returns at once)."""
        from slicer.util import launchConsoleProcess

        if self._proc is not None:
            raise InputError("this process was already started; start a new one")
        self._proc = launchConsoleProcess(self.args, useStartupEnvironment=False,
                                          updateEnvironment=child_environment())
        self.state = TrainingState.RUNNING
        self._reader = threading.Thread(target=self._read, daemon=True, name="weaknet-process-reader")
        self._reader.start()
        return self

    def poll(self) -> list[dict]:
        """Events that arrived since the last call (never blocks); updates state, fraction and message."""
        new = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return new
            if item is _EXIT:
                self._exited()
            elif isinstance(item, dict):
                self.events.append(item)
                new.append(item)
                self._apply(item)
            else:
                self.log.append(item)

    def wait(self, timeout: float | None = None) -> TrainingState:
        """Block until the child's output ended (or ``timeout`` seconds), poll, and return :attr:`state`."""
        if self._reader is not None:
            self._reader.join(timeout)
        self.poll()
        return self.state

    def cancel(self) -> None:
        """Kill the child and every process it started; the run ends "cancelled" with no result."""
        if self._proc is None or self.finished:
            return
        self._cancelled = True
        kill_process_tree(self._proc.pid)
        self._proc.wait()  # reaped: no zombie
        self.wait(5.0)
        if not self.finished:
            self._exited()

    # -- internals ---------------------------------------------------------------------------------
    def _read(self) -> None:
        stream = self._proc.stdout
        while True:
            try:
                line = stream.readline()
            except UnicodeDecodeError:  # free text the locale cannot decode; protocol lines are ASCII
                continue
            except ValueError:  # the pipe was closed by cancel()
                break
            if not line:
                break
            line = line.rstrip("\r\n")
            event = parse_line(line)
            self._queue.put(event if event is not None else line)
        self._proc.wait()
        self._queue.put(_EXIT)

    def _exited(self) -> None:
        if self.finished:
            return
        self.returncode = self._proc.returncode if self._proc is not None else None
        if self._cancelled or any(e.get("event") == "cancelled" for e in self.events):
            self.state, self.message = TrainingState.CANCELLED, "cancelled"
        elif self.returncode == 0 and self.result is not None:
            self._succeeded()
        else:
            self._failed(self._error_line())
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def _succeeded(self) -> None:
        try:
            self.output = self.on_done(self) if self.on_done is not None else None
        except Exception as exc:  # e.g. the result cannot be imported: one line for the panel
            self._failed(str(exc))
            return
        self.state, self.fraction = TrainingState.DONE, 1.0
        self.message = "done"

    def _failed(self, error: str) -> None:
        self.state, self.error, self.message = TrainingState.FAILED, error, f"failed: {error}"

    def _error_line(self) -> str:
        """The command's last ``error:`` line, else its last line of output, else the exit status."""
        lines = [ln.strip() for ln in self.log if ln.strip()]
        errors = [ln for ln in lines if "error:" in ln]
        return (errors or lines or [f"the process ended with exit status {self.returncode}"])[-1]

    def _apply(self, e: dict) -> None:
        """Progress of any command: ``start`` gives the total (epochs × steps, or images), each ``step`` one."""
        kind = e.get("event")
        if kind == "start":
            self._total = total_steps(e)
        elif kind == "step":
            self.fraction = min(1.0, steps_done(e) / max(1, self._total or int(e.get("steps") or 1)))
            self.message = f"{round(100 * self.fraction)} %" + (f": loss {e['loss']:.4g}" if "loss" in e else "")
        elif kind == "warning":
            self.message = f"warning: {e.get('message', '')}"
        elif kind == "done":
            self.result = e
            self.message = "finishing..."


def child_environment() -> dict[str, str]:
    """Variables added to the child's environment: the folder holding the ``weaknet`` package imported here
    first on PYTHONPATH (an extension's or a source checkout's, whatever the launcher's settings say), UTF-8
    mode, and stdio in this process's locale encoding (so the text pipe decodes whatever the child prints)."""
    package_parent = str(Path(weaknet.__file__).resolve().parents[1])
    path = [package_parent] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(path)), "PYTHONUTF8": "1",
            "PYTHONIOENCODING": f"{locale.getpreferredencoding(False)}:replace", "PYTHONUNBUFFERED": "1"}


def kill_process_tree(pid: int) -> None:
    """Kill ``pid`` and all its descendants (SIGKILL; on Windows ``taskkill /T /F``) and wait (≤ 10 s) until
    they are gone. Each member is stopped before its children are listed, so none can start new ones while
    the tree is collected. Missing processes are ignored."""
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True,
                       creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
        return
    tree, seen = [pid], set()
    while len(seen) < len(tree):  # stop each member before looking for its children
        for p in tree:
            if p not in seen:
                seen.add(p)
                _signal(p, signal.SIGSTOP)
        children = _children()
        tree += [c for p in list(tree) for c in children.get(p, ()) if c not in tree]
    for p in tree:
        _signal(p, signal.SIGKILL)
    deadline = time.monotonic() + 10.0
    while any(_running(p) for p in tree) and time.monotonic() < deadline:  # SIGKILL takes effect async
        time.sleep(0.02)


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (Linux: /proc; elsewhere: it exists)."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.parent.parent.joinpath("self", "stat").is_file():
        try:
            return stat.read_text(encoding="ascii", errors="replace").rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _children() -> dict[int, list[int]]:
    """parent pid → child pids of every process (Linux: /proc; macOS and others: ``ps``)."""
    out: dict[int, list[int]] = {}
    proc = Path("/proc")
    if (proc / "self" / "stat").is_file():
        for stat in proc.glob("[0-9]*/stat"):
            try:
                fields_ = stat.read_text(encoding="ascii", errors="replace").rsplit(")", 1)[1].split()
            except OSError:  # the process ended meanwhile
                continue
            out.setdefault(int(fields_[1]), []).append(int(stat.parent.name))
        return out
    listing = subprocess.run(["ps", "-A", "-o", "pid=", "-o", "ppid="], capture_output=True, text=True).stdout
    for row in listing.splitlines():
        child, parent = (int(v) for v in row.split())
        out.setdefault(parent, []).append(child)
    return out


# -- the two commands ------------------------------------------------------------------------------------


def train_arguments(config: TrainConfig) -> list[str]:
    """``weaknet train`` options for every field of ``config`` that differs from :class:`TrainConfig`'s
    default, spelled as the train command's own parser spells them (read from it, not repeated here).
    Raises :class:`InputError` for a setting the command line cannot express."""
    import argparse

    from weaknet.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    actions = {a.dest: a for a in commands.choices["train"]._actions}
    default, out = TrainConfig(), []
    for f in fields(TrainConfig):
        value = getattr(config, f.name)
        if value == getattr(default, f.name):
            continue
        action, negated = actions.get(f.name), actions.get(f"no_{f.name}")
        if value is False and negated is not None:  # e.g. amp=False → --no-amp
            out.append(negated.option_strings[0])
        elif isinstance(value, bool) and action is not None and action.nargs == 0:  # a switch
            negative = [o for o in action.option_strings if o.startswith("--no-")]
            if not value and not negative:
                raise InputError(f"`weaknet train` cannot switch {action.option_strings[0]} off")
            out.append(action.option_strings[0] if value else negative[0])
        elif action is not None:
            text = ",".join(str(v) for v in value) if isinstance(value, (tuple, list)) else str(value)
            out += [action.option_strings[0], text]
        else:
            raise InputError(f"training setting '{f.name}' = {value!r} has no `weaknet train` option; leave it at "
                             f"its default ({getattr(default, f.name)!r})")
    return out


def train_job(dataset: str | Path, output_dir: str | Path, config: TrainConfig | None = None,
              python: str | None = None, entry: tuple[str, ...] = WEAKNET) -> ProcessRun:
    """``weaknet train`` on a DATASET.json into ``output_dir``, not started (a
    :class:`~WeakNetSlicerLib.training.TrainingController` job factory); once done, the run's ``output`` is
    the model folder."""
    out = Path(output_dir)
    args = ["train", "--dataset", str(dataset), "--output", str(out), *train_arguments(config or TrainConfig())]
    return ProcessRun(args, python=python, entry=entry, output_dir=out,
                      on_done=lambda r: Path(r.result.get("model_dir") or out))


def train_process(dataset: str | Path, output_dir: str | Path, config: TrainConfig | None = None,
                  python: str | None = None, entry: tuple[str, ...] = WEAKNET) -> ProcessRun:
    """Start :func:`train_job`. Bad input (dataset, settings, an absent device) raises :class:`InputError`
    here, before any process starts."""
    from weaknet.device import resolve_device

    read_dataset(Path(dataset))
    config = config or TrainConfig()
    config.validate()
    resolve_device(config.device)
    return train_job(dataset, output_dir, config, python, entry).start()


def predict_process(model_dir: str | Path, image: str | Path, output: str | Path, gamma: float | None = None,
                    device: str = "auto", on_done: Callable[[ProcessRun], object] | None = None,
                    scratch: Path | None = None, python: str | None = None,
                    entry: tuple[str, ...] = WEAKNET) -> ProcessRun:
    """Start ``weaknet predict`` of one image file (or folder) into ``output``; ``on_done(run)`` runs in
    :meth:`ProcessRun.poll` once the masks are written (``run.result["masks"]``)."""
    from weaknet.checkpoint import read_model_json

    read_model_json(Path(model_dir))  # a missing or corrupt model is refused before any process starts
    args = ["predict", "--model", str(model_dir), "--image", str(image), "--output", str(output),
            "--device", device] + (["--gamma", repr(float(gamma))] if gamma is not None else [])
    return ProcessRun(args, python=python, entry=entry, on_done=on_done, scratch=scratch,
                      output_dir=Path(output)).start()


def apply_model_process(scene, model_dir: str | Path, volume_node, gamma: float | None = None,
                        device: str = "auto", modality: str | None = None, name: str | None = None,
                        segmentation_node=None, segment_name: str | None = None, surface: bool = True,
                        python: str | None = None, entry: tuple[str, ...] = WEAKNET) -> ProcessRun:
    """Segment a volume node out of process (:func:`predict_node_process`); :meth:`ProcessRun.poll` adds the
    mask as a segment (:func:`~WeakNetSlicerLib.training.add_prediction`: a new segmentation node, or the
    user's ``segmentation_node`` / ``segment_name``; ``surface`` False: no closed surface, the slice views
    only). Once done, the run's ``output`` is (segmentation node, warnings), as
    :func:`~WeakNetSlicerLib.training.apply_model` returns in process."""
    from .training import add_prediction, model_warnings

    warnings = model_warnings(model_dir, volume_node, modality)  # also refuses a missing model

    def add(mask):
        return (add_prediction(scene, model_dir, volume_node, mask, name, segmentation_node, segment_name, surface),
                warnings)

    return predict_node_process(model_dir, volume_node, add, gamma, device, python, entry)


def predict_node_process(model_dir: str | Path, volume_node, on_mask: Callable[[object], object],
                         gamma: float | None = None, device: str = "auto", python: str | None = None,
                         entry: tuple[str, ...] = WEAKNET) -> ProcessRun:
    """Start ``weaknet predict`` of a volume node: its image is written to a temporary folder (deleted when the
    run ends); once the child is done, :meth:`ProcessRun.poll` reads the mask (a uint8
    :class:`weaknet.volume.Volume` on the node's grid) and the run's ``output`` is ``on_mask(mask)``."""
    import tempfile

    from weaknet.checkpoint import read_model_json
    from weaknet.volume import read_volume, write_volume

    from . import nodes

    read_model_json(Path(model_dir))  # a missing or corrupt model is refused before anything is written
    folder = Path(tempfile.mkdtemp(prefix="weaknet-apply-"))
    image = write_volume(nodes.node_volume(volume_node), folder / "image.nrrd", compress=False)
    return predict_process(model_dir, image, folder / "mask.nrrd", gamma, device,
                           on_done=lambda run: on_mask(read_volume(run.result["masks"][0])), scratch=folder,
                           python=python, entry=entry)
