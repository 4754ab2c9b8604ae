"""`fishspine coco` as a user waits for it, side by side with pycocotools' whole run, in one run.

Both start as fresh processes on the same files (imports, JSON parsing, evaluation, printing): for
pycocotools, `COCO(gt)`, `loadRes(results)`, evaluate, accumulate, summarize; for fishspine, the
command with its default outputs, timed to the moment its table is printed and to its end (every
figure and data file written). A generated val2017-sized set: 5,000 images, 80 classes, ~36.5k boxes,
~500k detections.

`fishspine coco` runs with its default --processes (the CPUs this process may use, up to 8), and once
more with --processes 1 to show what the split is worth.

Run: .venv/bin/python -m fishspine.bench.coco_command [--images 5000] [--repeats 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYCOCOTOOLS = """
import contextlib, io, sys
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[1])
    ev = COCOeval(gt, gt.loadRes(sys.argv[2]), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
print(ev.stats[0])
"""


def _files(work: Path, images: int) -> tuple[Path, Path]:
    from fishspine.analysis.coco.synthetic import synthetic_coco

    gt_path, dt_path = work / "gt.json", work / "results.json"
    if not (gt_path.exists() and dt_path.exists()):
        gt, dets = synthetic_coco(images, n_categories=80, seed=0)
        gt_path.write_text(json.dumps(gt))
        dt_path.write_text(json.dumps(dets))
    return gt_path, dt_path


def _pycocotools(gt: Path, dt: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", PYCOCOTOOLS, str(gt), str(dt)], check=True, capture_output=True)
    return time.perf_counter() - t0


def _fishspine(gt: Path, dt: Path, out: Path, formats: list[str], processes: int | None = None) -> tuple[float, float]:
    """(seconds to the table's last line, seconds to the end); `processes`: --processes (None: its default)."""
    command = [str(Path(sys.executable).with_name("fishspine")), "coco", "--gt", str(gt), "--dt", f"x={dt}"]
    command += ["-o", str(out), "--formats", *formats]
    command += [] if processes is None else ["--processes", str(processes)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    table = None
    for line in proc.stdout:
        if table is None and line.startswith("x "):  # the table's row of result "x"
            table = time.perf_counter() - t0
    if proc.wait() != 0:
        raise RuntimeError("fishspine coco failed")
    return table if table is not None else float("nan"), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, help="folder for the generated files (kept; default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        gt, dt = _files(work, args.images)
        megabytes = dt.stat().st_size / 2**20
        rows = {"pycocotools": [], "table": [], "all (png, svg, pdf)": [], "all (png)": [], "one process": []}
        for _ in range(args.repeats):  # interleaved, so that a slow spell hits each alike
            rows["pycocotools"].append(_pycocotools(gt, dt))
            table, end = _fishspine(gt, dt, work / "out", ["png", "svg", "pdf"])
            rows["table"].append(table)
            rows["all (png, svg, pdf)"].append(end)
            rows["all (png)"].append(_fishspine(gt, dt, work / "out_png", ["png"])[1])
            rows["one process"].append(_fishspine(gt, dt, work / "out_one", ["png", "svg", "pdf"], 1)[0])
    base = statistics.median(rows["pycocotools"])
    print(f"{args.images} images, {megabytes:.0f} MB of results; medians of {args.repeats} runs")
    print("| what | median s | × sooner than pycocotools' whole run |")
    print("|---|---|---|")
    for name, ts in rows.items():
        label = {
            "pycocotools": "pycocotools, whole run",
            "table": "fishspine coco: the table printed",
            "one process": "fishspine coco --processes 1: the table printed",
        }.get(name, f"fishspine coco: everything written, {name[4:]}")
        print(f"| {label} | {statistics.median(ts):.2f} | {base / statistics.median(ts):.1f} |")


if __name__ == "__main__":
    main()
