"""COCO evaluation speed, side by side in one run (each timed from Python objects to the final numbers,
loading included, since that is what a user waits for): fishspine's per-scale breakdown vs pycocotools
and faster-coco-eval, on a generated set the size of val2017; numbers are checked identical.

Run: .venv/bin/python bench/coco_bench.py [--images 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import statistics
import time

import numpy as np

from fishspine.analysis.coco.evaluation import STAT_NAMES, evaluate
from fishspine.analysis.coco.synthetic import synthetic_coco


def _pycocotools(gt, dets):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, dets = copy.deepcopy(gt), copy.deepcopy(dets)
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        g = COCO()
        g.dataset = gt
        g.createIndex()
        d = g.loadRes(dets)
        e = COCOeval(g, d, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return time.perf_counter() - t0, np.array(e.stats)


def _faster(gt, dets):
    from faster_coco_eval import COCO, COCOeval_faster

    gt, dets = copy.deepcopy(gt), copy.deepcopy(dets)
    t0 = time.perf_counter()
    g = COCO(gt)
    d = g.loadRes(dets)
    e = COCOeval_faster(g, d, "bbox", print_function=lambda *a, **k: None)
    e.evaluate()
    e.accumulate()
    e.summarize()
    return time.perf_counter() - t0, np.array(e.stats[:12])


def _ours(gt, dets):
    gt, dets = copy.deepcopy(gt), copy.deepcopy(dets)
    t0 = time.perf_counter()
    ev = evaluate(gt, {"x": dets}, "bbox")["x"]
    s = ev.summary()
    ev.per_class_table()  # the full per-scale, per-class breakdown
    for area in ev.area_ranges:
        ev.pr_curve(area)
    return time.perf_counter() - t0, np.array([s[k] for k in STAT_NAMES])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pycocotools-repeats", type=int, default=1)
    args = ap.parse_args()
    gt, dets = synthetic_coco(args.images, n_categories=80, seed=0)
    sizes = np.array([a["area"] for a in gt["annotations"]])
    print(
        f"{args.images} images, {len(gt['annotations'])} boxes (small {np.mean(sizes < 32**2):.0%}, "
        f"medium {np.mean((sizes >= 32**2) & (sizes < 96**2)):.0%}, large {np.mean(sizes >= 96**2):.0%}), "
        f"{len(dets)} detections, 80 categories"
    )
    runs = {
        "pycocotools": [_pycocotools(gt, dets) for _ in range(args.pycocotools_repeats)],
        "faster-coco-eval": [_faster(gt, dets) for _ in range(args.repeats)],
        "fishspine (full per-scale breakdown)": [_ours(gt, dets) for _ in range(args.repeats)],
    }
    ref = runs["pycocotools"][0][1]
    base = statistics.median(t for t, _ in runs["pycocotools"])
    print(
        "\n| evaluator | median s (index + load results + evaluate + accumulate + summary) "
        "| × faster than pycocotools | max |Δ stat| vs pycocotools |"
    )
    print("|---|---|---|---|")
    for name, rs in runs.items():
        med = statistics.median(t for t, _ in rs)
        diff = max(float(np.abs(s - ref).max()) for _, s in rs)
        print(f"| {name} | {med:.2f} | {base / med:.1f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
