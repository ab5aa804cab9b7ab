"""The state of a training (or prediction) run, as every runner and front end names it.

:class:`TrainingState` is shared by the out-of-process runner (``WeakNetSlicerLib.process``) and the front
ends' training controller; :func:`state_after` is the one
mapping from a progress event (``{"event": "start" | "plan" | "step" | "epoch" | "done" | "cancelled" |
"error" | "warning", ...}``) to the state it leaves the run in.
"""

from __future__ import annotations

from enum import Enum


class TrainingState(str, Enum):
    """idle → running → done | cancelled | failed. A ``str`` enum: ``state == "done"`` holds, and the value is
    what front ends show and store."""

    IDLE = "idle"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        """True once the run ended, whichever way."""
        return self in (TrainingState.DONE, TrainingState.CANCELLED, TrainingState.FAILED)

    def __str__(self) -> str:
        return self.value


_ENDS = {"done": TrainingState.DONE, "cancelled": TrainingState.CANCELLED, "error": TrainingState.FAILED,
         "failed": TrainingState.FAILED}


def state_after(state: TrainingState, event: dict) -> TrainingState:
    """The state after ``event``: an end event ends a running run; anything else keeps ``state`` (a
    finished run stays finished)."""
    if state.finished:
        return state
    return _ENDS.get(str(event.get("event")), state)


def total_steps(start: dict) -> int:
    """The steps a run will make, from its ``start`` event: epochs × steps per epoch (training), or images
    (prediction)."""
    return max(1, int(start.get("epochs") or 1) * int(start.get("steps_per_epoch") or start.get("images") or 1))


def steps_done(step: dict) -> int:
    """The steps made once a ``step`` event's step ended: (epoch − 1) × steps + step."""
    return (int(step.get("epoch") or 1) - 1) * int(step.get("steps") or 1) + int(step.get("step") or 0)
