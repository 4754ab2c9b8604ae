"""Deterministic weights and golden outputs shared by the model tests.

Golden outputs were first produced by running the authors' reference code with the weights of
`deterministic_state_dict` (see the closing notes of the foundation issue); afterwards they guard
our implementations against regressions. `FISHSPINE_ACCEPT_GOLDEN=1` rewrites them from our code.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

GOLDEN_DIR = Path(__file__).parent / "golden"
ACCEPT = os.environ.get("FISHSPINE_ACCEPT_GOLDEN") == "1"


def deterministic_state_dict(reference: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """Well-scaled pseudo-random values for every entry of `reference` (a state_dict), by key.

    Values depend only on the key, the shape and the seed, not on module order or torch's
    global RNG, so the same dict can be loaded into the authors' model and ours.
    """
    out: dict[str, torch.Tensor] = {}
    for key in sorted(reference):
        ref = reference[key]
        shape = tuple(ref.shape)
        g = torch.Generator().manual_seed(seed * 1_000_003 + sum(ord(c) * (i + 1) for i, c in enumerate(key)))
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros(shape, dtype=torch.long)
        elif key.endswith("running_var"):
            out[key] = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("running_mean"):
            out[key] = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) >= 2:  # conv / linear weights: variance-preserving scale
            fan_in = math.prod(shape[1:])
            out[key] = torch.randn(shape, generator=g) * math.sqrt(1.0 / fan_in)
        elif key.endswith("weight"):  # norm scale
            out[key] = 0.6 + 0.4 * torch.rand(shape, generator=g)
        else:  # biases
            out[key] = 0.05 * torch.randn(shape, generator=g)
    return out


def golden_input(size: int | tuple[int, int], seed: int = 0, batch: int = 2) -> torch.Tensor:
    """A fixed input batch."""
    h, w = (size, size) if isinstance(size, int) else size
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, h, w, generator=g)


def check_golden(name: str, outputs: dict[str, torch.Tensor], rtol: float = 1e-4) -> None:
    """Compare `outputs` with tests/golden/<name>.pt (or write it when accepting)."""
    path = GOLDEN_DIR / f"{name}.pt"
    outputs = {k: v.detach().float().cpu().contiguous() for k, v in outputs.items()}
    if ACCEPT:
        GOLDEN_DIR.mkdir(exist_ok=True)
        torch.save({k: v.clone() for k, v in outputs.items()}, path)
        return
    expected = torch.load(path, weights_only=True)
    assert set(expected) == set(outputs), f"{name}: outputs {sorted(outputs)} != golden {sorted(expected)}"
    for k, exp in expected.items():
        got = outputs[k]
        assert got.shape == exp.shape, f"{name}[{k}]: shape {tuple(got.shape)} != {tuple(exp.shape)}"
        err = (got - exp).abs().max().item() / max(exp.abs().max().item(), 1e-12)
        assert err <= rtol, f"{name}[{k}]: max relative error {err:.2e} > {rtol:.0e}"
