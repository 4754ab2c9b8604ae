"""Interactive latency: for one image and three backbones, activations of every block + Grad-CAM +
the gradient trace (one forward and one backward per model), median of warm repeats, and memory
over many repeats.

Run: .venv/bin/python bench/interactive_bench.py [--device cuda] [--size 512] [--repeats 20] [--memory-repeats 1000]
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import time

import torch

from fishspine.analysis.device import resolve_device
from fishspine.analysis.images import sample_image, to_input
from fishspine.analysis.attribution.interactive import iter_analysis
from fishspine.models import count_hooks, create_model

MODELS = ("fishnet150", "scnet50", "spinenet49")


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _memory(device) -> float:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak RSS, MiB


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--memory-repeats", type=int, default=0)
    ap.add_argument("--width", type=float, default=1.0)
    args = ap.parse_args()
    device = resolve_device(args.device)
    models = {n: create_model(n, width=args.width).to(device).eval() for n in MODELS}
    x = to_input(sample_image(args.size), device)

    def once():
        *_, out = iter_analysis(models, x)
        _sync(device)
        return out

    once()
    once()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; {', '.join(MODELS)} (width {args.width}) at {args.size}x{args.size}")
    print(f"activations of every block + Grad-CAM + gradient trace: median {1000 * statistics.median(times):.0f} ms "
          f"over {args.repeats} warm repeats (min {1000 * min(times):.0f}, max {1000 * max(times):.0f})")
    if args.memory_repeats:
        gc.collect()
        before = _memory(device)
        for _ in range(args.memory_repeats):
            once()
        gc.collect()
        after = _memory(device)
        hooks = sum(count_hooks(m) for m in models.values())
        print(f"memory ({'allocated' if device.type == 'cuda' else 'peak RSS'}) before/after {args.memory_repeats} "
              f"repeats: {before:.0f} / {after:.0f} MiB; hooks left: {hooks}")


if __name__ == "__main__":
    main()
