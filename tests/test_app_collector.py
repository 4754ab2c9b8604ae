"""Garbage collection happens on the UI thread only while the app runs (app/qt/collector.py): a
collection in a worker deletes widgets from the wrong thread, and Qt aborts or hangs."""

from __future__ import annotations

import gc
import threading

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

from fishspine.app.qt.collector import MainThreadCollector  # noqa: E402


class Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def collections():
    """(thread name, objects found) of every collection while the test runs."""
    seen: list[tuple[str, int]] = []

    def record(phase, info):
        if phase == "stop":
            seen.append((threading.current_thread().name, info["collected"]))

    gc.callbacks.append(record)
    yield seen
    gc.callbacks.remove(record)


def test_a_worker_allocating_never_collects_and_the_ui_thread_frees_its_cycles(qtbot, collections):
    gc.enable()  # as the interpreter starts (the conftest's own collector has it off)
    collector = MainThreadCollector(interval_ms=50)
    collector.start()
    try:
        assert not gc.isenabled()

        def allocate():  # far past every threshold: the interpreter would collect here many times
            for _ in range(20 * gc.get_threshold()[0]):
                Cycle()

        worker = threading.Thread(target=allocate, name="worker")
        worker.start()
        worker.join()
        assert not [c for c in collections if c[0] == "worker"]
        qtbot.waitUntil(lambda: any(name == "MainThread" and found for name, found in collections), timeout=5_000)
    finally:
        collector.stop()
    assert gc.isenabled()  # given back as it was


def test_check_collects_only_what_is_due(qtbot):
    collector = MainThreadCollector()
    collector.start()
    try:
        gc.collect()
        assert collector.check() == 0  # nothing allocated since: no generation is due
        for _ in range(2 * gc.get_threshold()[0]):
            Cycle()
        assert collector.check() > 0
    finally:
        collector.stop()
