"""Forward-throughput benchmark of the zoo against torchvision ResNet-50, measured in one run.

Modes: float32 eager; bf16 autocast with channels-last eager; the same under `torch.compile`.
Each model reports images/s (median over repeats), achieved TFLOP/s (2 x MACs x images/s) and the
ratio of its TFLOP/s to ResNet-50's in the same mode and run.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from fishspine.analysis.architecture.macs import model_macs
from fishspine.analysis.options import BENCH_MODES as MODES
from fishspine.models import create_model, list_models, model_spec
from fishspine.models.registry import CLASSIFIER_INPUT_SIZE

BASELINE = "torchvision_resnet50"


@dataclass
class BenchResult:
    """Throughput of one model in one mode."""

    model: str
    mode: str
    size: int
    batch: int
    images_per_s: float
    gmacs_per_image: float
    times_s: list[float] = field(default_factory=list)

    @property
    def tflops(self) -> float:
        return 2 * self.gmacs_per_image * self.images_per_s / 1e3


def _build(name: str) -> torch.nn.Module:
    if name == BASELINE:
        import torchvision

        return torchvision.models.resnet50()
    return create_model(name)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_forward(model, x, device, autocast: bool) -> float:
    ctx = torch.autocast(device.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    _synchronize(device)
    t0 = time.perf_counter()
    with torch.inference_mode(), ctx:
        model(x)
    _synchronize(device)
    return time.perf_counter() - t0


def bench_model(
    name: str, mode: str, device: torch.device, batch: int, size: int, warmup: int, repeats: int
) -> BenchResult:
    """Measure one model in one mode."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    model = _build(name).to(device).eval()
    gmacs = model_macs(model, size) / 1e9  # the one MAC counter (analysis/architecture/macs.py)
    x = torch.randn(batch, 3, size, size, device=device)
    if mode != "fp32":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if mode.endswith("compile"):
        model = torch.compile(model)
    autocast = mode != "fp32"
    for _ in range(warmup):
        _timed_forward(model, x, device, autocast)
    times = [_timed_forward(model, x, device, autocast) for _ in range(repeats)]
    median = statistics.median(times)
    del model, x
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return BenchResult(name, mode, size, batch, batch / median, gmacs, times)


def bench_plan(models: list[str] | None) -> list[tuple[str, int]]:
    """(model, input size) pairs to measure: the baseline first; every model at the baseline's size,
    so the ratios compare like with like, and also at its own input size where that differs."""
    names = models or list_models()
    plan = [(BASELINE, CLASSIFIER_INPUT_SIZE)]
    for n in names:
        sizes = sorted({CLASSIFIER_INPUT_SIZE, model_spec(n).input_size})
        plan.extend((n, s) for s in sizes)
    return plan


def run_benchmark(
    models: list[str] | None, modes: tuple[str, ...], device: torch.device, batch: int, warmup: int, repeats: int
) -> Iterator[BenchResult]:
    """Measure every planned (model, size) in every mode; yields results as they come."""
    for name, size in bench_plan(models):
        for mode in modes:
            yield bench_model(name, mode, device, batch, size, warmup, repeats)


def format_table(results: list[BenchResult], device_name: str) -> str:
    """A markdown table: images/s, TFLOP/s and the ratio to ResNet-50's TFLOP/s per mode."""
    modes = [m for m in MODES if any(r.mode == m for r in results)]
    base = {r.mode: r for r in results if r.model == BASELINE}
    header = ["model", "input", "GMACs"] + [f"{m} {col}" for m in modes for col in ("img/s", "TFLOP/s", "×R50")]
    lines = [
        f"Device: {device_name}; batch {results[0].batch if results else '-'}; "
        "ratio = achieved TFLOP/s ÷ torchvision ResNet-50's in the same mode and run",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    rows: dict[tuple[str, int], dict[str, BenchResult]] = {}
    for r in results:
        rows.setdefault((r.model, r.size), {})[r.mode] = r
    for (name, size), by_mode in rows.items():
        first = next(iter(by_mode.values()))
        cells = [name, str(size), f"{first.gmacs_per_image:.2f}"]
        for m in modes:
            r = by_mode.get(m)
            if r is None:
                cells.extend(["-"] * 3)
                continue
            ratio = r.tflops / base[m].tflops if m in base else float("nan")
            cells.extend([f"{r.images_per_s:.1f}", f"{r.tflops:.3f}", f"{ratio:.2f}"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
