"""Training in the background for front ends (Slicer, web): a separate process, progress events through a
queue, cancellation, and a non-blocking :meth:`TrainingJob.poll`.

    job = TrainingJob("dataset.json", "model_dir", TrainConfig(epochs=5))
    job.start()
    while not job.state.finished:
        for event in job.poll():   # never blocks
            ...                    # {"event": "step" | "epoch" | "done" | "cancelled" | "error", ...}
    job.cancel()                   # stops within one training step; finished epochs stay on disk

The child is started with the ``spawn`` method (safe next to Qt, VTK and web servers' threads).
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
from pathlib import Path

from .dataset import read_dataset
from .errors import InputError
from .config import TrainConfig
from .progress import TrainingState, state_after


def _child(dataset, output_dir: str, config: dict, resume: bool, events, cancel) -> None:
    from .errors import WeakNetError
    from .train import train

    try:
        train(dataset, output_dir, TrainConfig.from_dict(config), progress=events.put, cancel=cancel,
              resume=resume, show_progress=False)
    except WeakNetError as exc:
        events.put({"event": "error", "message": str(exc)})
    except Exception as exc:  # report anything else to the front end instead of dying silently
        events.put({"event": "error", "message": f"{type(exc).__name__}: {exc}"})


class TrainingJob:
    """One training run in a child process. ``state`` (:class:`TrainingState`): idle → running → done |
    cancelled | failed.

    The dataset is read (and its files checked) in the caller's process, so bad input raises
    :class:`~weaknet.errors.InputError` from the constructor instead of failing later in the child.
    """

    def __init__(self, dataset, output_dir: str | Path, config: TrainConfig | None = None, resume: bool = False):
        self.dataset = read_dataset(dataset) if isinstance(dataset, (str, Path)) else dataset
        self.output_dir = Path(output_dir)
        self.config = config or TrainConfig()
        self.config.validate()
        self.resume = resume
        self.state = TrainingState.IDLE
        self.error: str | None = None
        self.events: list[dict] = []
        self._ctx = mp.get_context("spawn")
        self._queue = self._ctx.Queue()
        self._cancel = self._ctx.Event()
        self._process = None

    def start(self) -> "TrainingJob":
        """Start the child process (returns at once)."""
        if self._process is not None:
            raise InputError("this training job was already started; create a new TrainingJob")
        self._process = self._ctx.Process(target=_child, daemon=True, name="weaknet-train",
                                          args=(self.dataset, str(self.output_dir), self.config.to_dict(),
                                                self.resume, self._queue, self._cancel))
        self._process.start()
        self.state = TrainingState.RUNNING
        return self

    def poll(self) -> list[dict]:
        """New progress events since the last call (never blocks); updates :attr:`state`."""
        alive = self._process is not None and self._process.is_alive()
        new = self._drain(0.0)
        if self.state == TrainingState.RUNNING and self._process is not None and not alive:
            self._process.join()
            new += self._drain(0.2)  # events the child flushed while exiting
            if self.state == TrainingState.RUNNING:
                self.state = TrainingState.FAILED
                self.error = self.error or f"training process exited with code {self._process.exitcode}"
        return new

    def _drain(self, wait: float) -> list[dict]:
        new = []
        while True:
            try:
                e = self._queue.get(timeout=wait) if wait else self._queue.get_nowait()
            except queue_mod.Empty:
                break
            new.append(e)
            self.state = state_after(self.state, e)
            if e.get("event") == "error":
                self.error = e.get("message")
        self.events += new
        return new

    def cancel(self) -> None:
        """Ask the child to stop after the current step (the unfinished epoch is dropped)."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> str:
        """Block until the child exits (or ``timeout`` seconds); return :attr:`state`."""
        if self._process is not None:
            self._process.join(timeout)
        self.poll()
        return self.state
