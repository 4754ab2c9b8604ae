"""The job protocol for all long work (after napari's GeneratorWorker).

A job is a generator that yields `Progress` and *returns* its result: `return result` at its end,
which Python hands over as `StopIteration.value`. The app's workers, the command line's progress
bars and the dataset runner all drive jobs through `run_job`, so nothing ever recognises progress
by the shape of what was yielded, and a result is never "the last thing yielded".
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Progress:
    """`done` of `total` steps finished; `text` names the step (a model, a file, an epoch)."""

    done: int
    total: int
    text: str = ""


Job = Generator[Progress, None, R]


def run_job(
    job: Job[R], on_progress: Callable[[Progress], None] | None = None, cancelled: Callable[[], bool] | None = None
) -> R:
    """Drive `job` to its end and return its result; `on_progress` sees each step.

    When `cancelled()` turns true the job is closed at its next step (its `finally` blocks run) and
    `JobCancelled` is raised.
    """
    while True:
        try:
            step = next(job)
        except StopIteration as stop:
            return stop.value
        if not isinstance(step, Progress):
            job.close()
            raise TypeError(f"a job yields Progress, not {type(step).__name__}; it returns its result")
        if on_progress is not None:
            on_progress(step)
        if cancelled is not None and cancelled():
            job.close()
            raise JobCancelled()


class JobCancelled(Exception):
    """A job was stopped before it finished."""
