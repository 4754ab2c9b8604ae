"""Effective receptive fields (Luo et al., NIPS 2016) of a backbone's output levels, and their size.

The ERF of a level is the gradient of its centre unit (summed over channels) with respect to the
input, absolute and summed over colour channels. Averaged over images, its mass concentrates in a
region far smaller than the theoretical receptive field; the radius holding 50 % or 90 % of the mass
measures how far a level really looks.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from fishspine.models import Backbone


def erf_maps(model: Backbone, x: torch.Tensor) -> dict[int, torch.Tensor]:
    """Level -> (N, H, W) float32 |d centre unit / d input| summed over colour channels, per image of x.

    One forward of `model.forward_features` and one backward per level. The model's parameters' .grad
    are left untouched. Each image's centre unit depends only on its own image as long as nothing mixes
    the batch (BatchNorm in eval mode), so one backward of the batch's summed units gives per-image maps.
    """
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        feats = model.forward_features(x)
        levels = list(feats)
        maps: dict[int, torch.Tensor] = {}
        for i, level in enumerate(levels):
            f = feats[level]
            h, w = f.shape[-2:]
            unit = f[:, :, h // 2, w // 2].sum()
            (grad,) = torch.autograd.grad(unit, x, retain_graph=i < len(levels) - 1, allow_unused=True)
            if grad is None:  # the level does not depend on the input at all (a constant map)
                grad = torch.zeros_like(x)
            maps[level] = grad.detach().abs().sum(dim=1).float()
    return maps


def unit_centre(input_hw: tuple[int, int], map_hw: tuple[int, int]) -> tuple[float, float]:
    """The input-pixel position (row, column) of the centre unit (h // 2, w // 2) of an (h, w) map."""
    (big_h, big_w), (h, w) = input_hw, map_hw
    return ((h // 2 + 0.5) * big_h / h - 0.5, (w // 2 + 0.5) * big_w / w - 0.5)


def centre_of_mass(erf: np.ndarray) -> tuple[float, float]:
    """The (row, column) centre of mass of a non-negative (H, W) map; nan for an all-zero map."""
    m = np.asarray(erf, dtype=np.float64)
    total = m.sum()
    if not total > 0:
        return (math.nan, math.nan)
    rows = np.arange(m.shape[0], dtype=np.float64)
    cols = np.arange(m.shape[1], dtype=np.float64)
    return (float(m.sum(axis=1) @ rows / total), float(m.sum(axis=0) @ cols / total))


def mass_radius(erf: np.ndarray, centre: tuple[float, float], fraction: float) -> float:
    """The smallest radius (input pixels) around `centre` whose disc holds >= `fraction` of the map's mass.

    nan for an all-zero map.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], not {fraction}")
    m = np.asarray(erf, dtype=np.float64)
    rows, cols = np.indices(m.shape, dtype=np.float64)
    dist = np.hypot(rows - centre[0], cols - centre[1]).ravel()
    order = np.argsort(dist, kind="stable")
    cum = np.cumsum(m.ravel()[order])
    if cum.size == 0 or not cum[-1] > 0:
        return math.nan
    # The total is the cumulative sum's own last entry, so fraction 1 is reached despite rounding.
    idx = int(np.searchsorted(cum, fraction * cum[-1], side="left"))
    return float(dist[order][min(idx, cum.size - 1)])
