"""Python's cyclic garbage collection on the UI thread only (after pyqtgraph's GarbageCollector).

Python runs a collection in whichever thread crosses the allocation threshold. In the app that is as
often a worker as the UI thread (a COCO evaluation or a study allocates millions of objects), and a
collection in a worker deletes the widgets and pyqtgraph items that died in reference cycles (closed
views, replaced plots) from the wrong thread. Qt then aborts or deadlocks, at random: the test suite
hung in CI inside the COCO view's first evaluation, and aborted here in a collection, each time after
the architecture tests had left widget cycles behind (a gc callback counted 53 collections that freed
objects in worker threads during the GUI tests, ten of them full ones).

`MainThreadCollector` turns automatic collection off and collects on a timer on the UI thread by the
interpreter's own thresholds, so a cycle is freed on the thread that owns its widgets, within a second.
The app starts one for its life; the GUI tests one per test (tests/conftest.py).
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QThreadPool, QTimer


class MainThreadCollector(QObject):
    """While started: no automatic collection; a collection on this (the UI) thread every `interval_ms`
    of each generation whose allocation count passed its threshold, as the interpreter would."""

    def __init__(self, interval_ms: int = 1000, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.check)
        self._was_enabled = gc.isenabled()

    def start(self) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer.start()

    def check(self) -> int:
        """Collect the oldest generation that is due now (with the younger ones, as gc does); returns the
        number of unreachable objects found."""
        thresholds, counts = gc.get_threshold(), gc.get_count()
        due = -1
        for generation in range(3):
            if counts[generation] <= thresholds[generation]:
                break
            due = generation
        return gc.collect(due) if due >= 0 else 0

    def stop(self, wait_ms: int = 60_000) -> None:
        """Stop the timer; once the thread pool's workers are done (at most `wait_ms`), collect everything
        here and give collection back to the interpreter as it was before `start`."""
        self._timer.stop()
        QThreadPool.globalInstance().waitForDone(wait_ms)
        gc.collect()
        if self._was_enabled:
            gc.enable()
