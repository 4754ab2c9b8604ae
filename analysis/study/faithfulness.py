"""Deletion and insertion curves of a saliency map (Petsiuk et al., RISE, BMVC 2018).

Pixels are ranked by saliency, highest first. Deletion removes the top pixels step by step (sets them
to 0, the dataset mean colour in normalised space) and records the model's score: a faithful map makes
it fall fast (low area under the curve). Insertion starts from a blurred image and puts the top pixels
back: a faithful map makes the score rise fast (high area).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

MODES = ("deletion", "insertion")


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """x (N, C, H, W) blurred by a separable Gaussian of `sigma` pixels (edges replicated); sigma <= 0: x."""
    if sigma <= 0:
        return x.clone()
    radius = max(1, math.ceil(3.0 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    # Replicate padding works for any image size (reflect needs the image larger than the kernel).
    y = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _step_masks(saliency: torch.Tensor, steps: int, hw: tuple[int, int]) -> torch.Tensor:
    """(steps + 1, 1, H, W) bool: step k marks the k/steps most salient pixels (ties by index)."""
    n = hw[0] * hw[1]
    if saliency.numel() != n:
        raise ValueError(f"saliency has {saliency.numel()} values; the image has {hw[0]}x{hw[1]} pixels")
    order = torch.argsort(saliency.reshape(-1), descending=True, stable=True)
    rank = torch.empty(n, dtype=torch.long, device=saliency.device)
    rank[order] = torch.arange(n, device=saliency.device)
    counts = torch.arange(steps + 1, device=saliency.device) * n // steps
    return (rank[None, :] < counts[:, None]).view(steps + 1, 1, *hw)


def perturbation_batches(
    x: torch.Tensor, saliency: torch.Tensor, steps: int, mode: str, blur_sigma: float = 5.0
) -> torch.Tensor:
    """(steps + 1, 3, H, W) perturbed copies of x (1, 3, H, W) for `mode` "deletion" or "insertion".

    Entry k has the k/steps most salient pixels deleted (set to 0) or inserted (into the blurred x).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image (1, C, H, W), not {tuple(x.shape)}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, not {steps}")
    masks = _step_masks(saliency.to(x.device), steps, tuple(x.shape[-2:]))
    if mode == "deletion":
        return torch.where(masks, torch.zeros((), dtype=x.dtype, device=x.device), x)
    return torch.where(masks, x, _gaussian_blur(x, blur_sigma))


def _scores(score: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, batch: int) -> np.ndarray:
    """score over inputs in chunks of `batch`, as float64."""
    with torch.no_grad():
        out = [score(inputs[i : i + batch]).detach().reshape(-1) for i in range(0, inputs.shape[0], batch)]
    return torch.cat(out).to(dtype=torch.float64, device="cpu").numpy()


def deletion_insertion(
    score: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    saliency: torch.Tensor,
    steps: int = 16,
    batch: int = 17,
    blur_sigma: float = 5.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(deletion curve, insertion curve) of `score` ((N, 3, H, W) -> (N,)) for x and its saliency map.

    Each curve has steps + 1 float64 points, at fractions 0, 1/steps, ..., 1 of the pixels.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, not {batch}")
    curves = []
    for mode in MODES:
        curves.append(_scores(score, perturbation_batches(x, saliency, steps, mode, blur_sigma), batch))
    return curves[0], curves[1]


def auc(curve: np.ndarray) -> float:
    """Area under a curve sampled at evenly spaced fractions of [0, 1] (trapezoid rule)."""
    c = np.asarray(curve, dtype=np.float64)
    if c.ndim != 1 or c.size < 2:
        raise ValueError(f"a curve needs at least two points, got shape {c.shape}")
    return float((c[1:] + c[:-1]).sum() / (2.0 * (c.size - 1)))
