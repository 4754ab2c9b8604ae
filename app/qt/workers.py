"""Running analysis generators off the UI thread (after napari's qthreading).

A job is a callable returning a generator that follows analysis/jobs.py: it yields `Progress` and
returns its result. The worker runs it in the global QThreadPool and delivers progress, the result
or the error on the main thread through Qt signals. Cancelling stops it at its next step.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class WorkerSignals(QObject):
    """Signals of one job (emitted from the worker thread, delivered on the main thread)."""

    progress = Signal(int, int, str)
    finished = Signal(object)
    failed = Signal(str)
    cancelled = Signal()


class GeneratorWorker(QRunnable):
    """Runs `job()` (a generator following analysis/jobs.py) to its returned result."""

    def __init__(self, job: Callable[[], Iterator[Any]]) -> None:
        super().__init__()
        self.job = job
        self.signals = WorkerSignals()
        self._cancelled = False
        self.done = False  # set when run() has returned, however it ended
        self.setAutoDelete(False)  # the window keeps it until its signals are delivered

    def cancel(self) -> None:
        self._cancelled = True

    def run(self) -> None:
        try:
            self._run()
        finally:
            self.done = True

    def _run(self) -> None:
        from fishspine.analysis.jobs import JobCancelled, run_job

        if self._cancelled:
            self.signals.cancelled.emit()
            return
        try:
            result = run_job(
                self.job(), lambda p: self.signals.progress.emit(p.done, p.total, p.text), lambda: self._cancelled
            )
        except JobCancelled:
            self.signals.cancelled.emit()
            return
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message, the app keeps running
            detail = str(exc) or type(exc).__name__
            if not isinstance(exc, (ValueError, KeyError, OSError)):
                detail += "\n" + traceback.format_exc(limit=3)
            self.signals.failed.emit(detail)
            return
        self.signals.finished.emit(result)


def start(worker: GeneratorWorker) -> None:
    """Queue `worker` on the global thread pool."""
    QThreadPool.globalInstance().start(worker)
