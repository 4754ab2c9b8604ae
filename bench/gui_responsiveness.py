"""GUI launch time and UI-thread stalls while models compute (offscreen Qt).

Launch: process start to the window being shown (Python start-up excluded, imports included).
Stalls: a 10 ms QTimer heartbeat runs on the UI thread while the demo's four backbones are analysed
in the workers; the longest gap between beats is the longest the UI was blocked.

Run: QT_QPA_PLATFORM=offscreen .venv/bin/python bench/gui_responsiveness.py [--rounds 5]
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402


def wait_until(condition, poll_ms: int = 5) -> None:
    """Run the Qt event loop until `condition()` holds.

    Not a Python loop around QApplication.processEvents(): in PySide6 6.12.0 each such call drops a
    reference to None, and a few hundred thousand calls crash the interpreter.
    """
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    timer = QTimer()

    def check() -> None:
        if condition():
            loop.quit()

    timer.timeout.connect(check)
    timer.start(poll_ms)
    loop.exec()
    timer.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from fishspine.app.qt.window import MainWindow

    app = QApplication([])  # noqa: F841 - the application must stay referenced while the window lives
    window = MainWindow()
    window.show()
    wait_until(window.isVisible)
    print(f"window shown {time.perf_counter() - T0:.2f} s after process start (imports included)")

    beats: list[float] = []
    timer = QTimer()

    def beat() -> None:
        beats.append(time.perf_counter())

    timer.timeout.connect(beat)
    timer.start(10)
    window.warm_up()
    window.open_demo()
    t_start = time.perf_counter()
    wait_until(lambda: bool(window.state.insights) and not window._workers)
    print(f"demo models loaded and analysed in {time.perf_counter() - t_start:.1f} s")
    print(
        f"longest UI-thread stall while the demo loaded, computed and first drew: "
        f"{1000 * max(b - a for a, b in zip(beats, beats[1:])):.0f} ms"
    )
    gaps = []
    for _ in range(args.rounds):
        beats.clear()
        window.state.update_settings(reduction="pca" if window.state.settings.reduction != "pca" else "max")
        wait_until(lambda: bool(window._workers))
        wait_until(lambda: not window._workers)
        gaps.append(max(b - a for a, b in zip(beats, beats[1:])) if len(beats) > 1 else float("nan"))
    print(
        f"longest UI-thread stall while 4 models computed, per round (ms): {', '.join(f'{1000 * g:.0f}' for g in gaps)}"
    )
    for view in ("cam", "gradients", "architecture", "coco", "activations"):
        beats.clear()
        t = time.perf_counter()
        window.show_view(view)
        wait_until(lambda v=view: window.views[v].has_content and not window._workers)
        print(f"switch to {view}: shown in {1000 * (time.perf_counter() - t):.0f} ms")


if __name__ == "__main__":
    main()
