"""Where computation runs: CUDA when present, the CPU otherwise."""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """The device for `name` ("auto"/None: CUDA when present, else CPU); unusable names raise."""
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
    return device


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype for `precision` ("float32" -> None, "bf16" -> bfloat16)."""
    table = {"float32": None, "fp32": None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if precision not in table:
        raise ValueError(f"unknown precision {precision!r}; use float32 or bf16")
    return table[precision]
