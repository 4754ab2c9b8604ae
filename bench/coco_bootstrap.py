"""Paired bootstrap of the COCO AP deltas: time of 1,000 resamples over a generated val2017-sized set.

Two result files (a baseline and one with a quarter of its detections dropped) are evaluated once,
keeping the per-image matching (timed apart: the bootstrap's one-off cost); then each file's
replicates are re-accumulated from the same draws (timed, median of the repeats), and the paired
interval of the AP delta is read off them. The replicates at weights 1 are checked against the
evaluation's own AP first.

Run: .venv/bin/python bench/coco_bootstrap.py [--images 5000] [--classes 80] [--resamples 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from fishspine.analysis.coco.bootstrap import BOOT_STATS, delta_interval, draw_weights, replicate_stats
from fishspine.analysis.coco.evaluation import evaluate_one, load_ground_truth, load_results
from fishspine.analysis.coco.synthetic import synthetic_coco


def main(argv: list[str] | None = None) -> int:
    """Print the timings; exit 1 if the weights-1 replicate differs from the evaluation."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--classes", type=int, default=80, help="categories (80: val2017)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    gt, dets = synthetic_coco(args.images, n_categories=args.classes, seed=0)
    gt = load_ground_truth(gt)
    dets = load_results(dets, gt, "bbox")
    worse = [d for i, d in enumerate(dets) if i % 4]
    sizes = (len(gt["images"]), len(gt["categories"]), len(gt["annotations"]), len(dets))
    print("{} images, {} classes, {} objects, {} detections".format(*sizes))

    evals, match_s = {}, {}
    for name, ds in (("base", dets), ("worse", worse)):
        t0 = time.perf_counter()
        plain = evaluate_one(gt, ds, name, "bbox")
        t1 = time.perf_counter()
        evals[name] = evaluate_one(gt, ds, name, "bbox", keep_matches=True)
        t2 = time.perf_counter()
        match_s[name] = (t2 - t1) - (t1 - t0)
        print(f"{name}: evaluation {t1 - t0:.2f} s; with the per-image matching kept {t2 - t1:.2f} s")
        ones = replicate_stats(evals[name].matches, np.ones((1, len(gt["images"])), np.int32))[0]
        want = np.array([plain.summary()[k] for k in BOOT_STATS])
        if np.abs(ones - want).max() > 1e-12:
            print(f"MISMATCH at weights 1: {ones} vs {want}")
            return 1

    weights = draw_weights(len(gt["images"]), args.resamples, args.seed)
    times, reps = [], {}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for name, ev in evals.items():
            ev.matches._plans.clear()  # the index plans are part of the cost
            reps[name] = replicate_stats(ev.matches, weights)
        times.append((time.perf_counter() - t0) / len(evals))
    lo, hi = delta_interval(reps["worse"], reps["base"])["AP"]
    d = evals["worse"].summary()["AP"] - evals["base"].summary()["AP"]
    print(
        f"bootstrap, {args.resamples} resamples of {args.images} images, per result file: median "
        f"{statistics.median(times):.2f} s (runs: {', '.join(f'{t:.2f}' for t in times)})"
    )
    print(f"ΔAP {100 * d:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}] (95% paired bootstrap interval)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
