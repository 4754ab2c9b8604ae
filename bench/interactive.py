"""Interactive latency and memory of the analysis engine, through the real window (offscreen Qt).

1. The demo's four backbones at 384: a settings change that needs no new pass (reduction,
   normalisation, CAM method, CAM block) and a new image, each timed from the change to the view
   having redrawn with the new result (the window's results_changed, after the view's refresh).
2. Full-width FishNet-150 + SCNet-50 + SpineNet-49 at --size: one pass of all three (median), and
   the bytes the engine's cache holds.
3. Resident memory before adding a full-width SpineNet-190, with it analysed, and after removing it.

Prints, last, one line: `settings change: median N ms; new image: median M ms`.

Run: QT_QPA_PLATFORM=offscreen .venv/bin/python -m fishspine.bench.interactive [--device cpu] [--rounds 12]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time


def rss_mb() -> float:
    """Resident memory of this process now (not the peak), MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def wait_until(condition, timeout_s: float = 600.0, poll_ms: int = 2) -> None:
    """Run the Qt event loop until `condition()` holds (never processEvents() in a Python loop)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop, timer = QEventLoop(), QTimer()
    deadline = time.monotonic() + timeout_s

    def check() -> None:
        if condition() or time.monotonic() > deadline:
            loop.quit()

    timer.timeout.connect(check)
    timer.start(poll_ms)
    loop.exec()
    timer.stop()
    if not condition():
        raise TimeoutError("the window did not get there in time")


def window_latencies(rounds: int, device: str) -> tuple[list[float], list[float], object]:
    """(settings-change latencies, new-image latencies) in seconds, through the demo window."""
    from PySide6.QtWidgets import QApplication

    from fishspine.analysis.images import sample_image
    from fishspine.app.components.state import ImageEntry
    from fishspine.app.qt.window import MainWindow

    app = QApplication.instance() or QApplication([])
    window = MainWindow()
    window.state.update_settings(device=device)
    window.show()
    window.open_demo()
    wait_until(lambda: bool(window.state.insights) and not window._workers)
    arrived: list[float] = []
    window.state.results_changed.connect(lambda: arrived.append(time.perf_counter()))  # after the views redrew

    def timed(change) -> float:
        arrived.clear()
        t0 = time.perf_counter()
        change()
        wait_until(lambda: bool(arrived) and not window._workers)
        return arrived[-1] - t0

    s = window.state
    changes = [
        lambda: s.update_settings(reduction="pca"),
        lambda: s.update_settings(normalisation="global"),
        lambda: s.update_settings(cam_method="gradcampp"),
        lambda: s.select_block("P4" if s.selected_block != "P4" else "P5"),
        lambda: s.update_settings(reduction="max"),
        lambda: s.update_settings(normalisation="block"),
        lambda: s.update_settings(cam_method="layercam"),
        lambda: s.update_settings(reduction="mean_abs"),
    ]
    settings_s = [timed(changes[i % len(changes)]) for i in range(rounds)]
    s.add_images([ImageEntry(f"generated {i}", "", sample_image(384, seed=100 + i)) for i in range(rounds)])
    first_new = len(s.images) - rounds
    image_s = [timed(lambda i=i: s.select_image(first_new + i)) for i in range(rounds)]
    window.close()
    return settings_s, image_s, app


def full_width(size: int, device_name: str, repeats: int) -> None:
    import torch

    from fishspine.analysis.attribution.engine import AnalysisEngine
    from fishspine.analysis.device import resolve_device
    from fishspine.analysis.images import sample_image
    from fishspine.analysis.jobs import run_job
    from fishspine.models import create_model

    device = resolve_device(device_name)
    models = {n: create_model(n).to(device).eval() for n in ("fishnet150", "scnet50", "spinenet49")}
    engine = AnalysisEngine(max_bytes=8 << 30)
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        run_job(engine.iter_passes(models, sample_image(size, seed=i), f"image {i}", size))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:  # the first pass warms up
            times.append(time.perf_counter() - t0)
    per = engine.nbytes / (repeats + 1) / 2**20
    print(
        f"full width fishnet150 + scnet50 + spinenet49 at {size}: one pass of all three median "
        f"{statistics.median(times):.2f} s over {repeats} images (min {min(times):.2f}, max {max(times):.2f}); "
        f"the cache holds {per:.0f} MiB per image for the three"
    )

    gc.collect()
    before = rss_mb()
    big = create_model("spinenet190").to(device).eval()
    run_job(engine.iter_passes({"spinenet190": big}, sample_image(size), "image 0", size))
    with_it = rss_mb()
    engine.forget(model=big)
    del big
    gc.collect()
    engine.trim()
    after = rss_mb()
    print(
        f"resident memory: {before:.0f} MiB before adding SpineNet-190, {with_it:.0f} MiB with it analysed, "
        f"{after:.0f} MiB after removing it ({after - before:+.0f} MiB)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--size", type=int, default=384, help="input size of the full-width measurement")
    ap.add_argument("--repeats", type=int, default=3, help="images of the full-width measurement")
    ap.add_argument("--skip-full-width", action="store_true")
    args = ap.parse_args()
    import torch

    settings_s, image_s, _app = window_latencies(args.rounds, args.device)
    where = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    )
    print(f"device: {where}; the demo's four backbones at 384, {args.rounds} rounds each")
    print(f"settings change to screen (ms): {', '.join(f'{1000 * t:.0f}' for t in settings_s)}")
    print(f"new image to screen (ms): {', '.join(f'{1000 * t:.0f}' for t in image_s)}")
    if not args.skip_full_width:
        full_width(args.size, args.device, args.repeats)
    print(
        f"settings change: median {1000 * statistics.median(settings_s):.0f} ms; "
        f"new image: median {1000 * statistics.median(image_s):.0f} ms"
    )


if __name__ == "__main__":
    main()
