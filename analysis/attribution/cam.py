"""Class activation maps at any block: Grad-CAM, Grad-CAM++ and LayerCAM, from a captured pass.

The engine (analysis/attribution/engine.py) captures every block's output and the target's gradient
at it; a CAM is then a function of the two, so any method at any block needs no other pass. Grad-CAM
equals captum's `LayerGradCam` (tested on every family).

The target is a class (the top prediction when none is given) for models with a classifier, and
feature energy (see analysis/targets.py) for backbones without one, such as SpineNet.

A CAM is >= 0 (its ReLU keeps evidence for the target), so 0 stays the bottom colour; the top is its
99th percentile (default: one hot pixel does not black out the rest) or its maximum. A CAM that is
(nearly) constant localises nothing: it is shown as a uniform map and said to be constant, not
stretched into noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from fishspine.analysis.attribution.colour_scale import ColourScale, check_scaling
from fishspine.analysis.options import CAM_CMAPS, CAM_LABELS, CAM_METHODS, SCALING_PERCENTILES

CONSTANT_TOLERANCE = 1e-6  # a CAM whose spread is below this share of its magnitude is constant


@dataclass
class CamResult:
    """A CAM at one block, resized to the image and scaled to [0, 1] (from 0 to `hi`)."""

    model: str
    block: str
    method: str
    class_index: int | None  # None: the feature-energy target
    raw_max: float
    cam: np.ndarray = field(repr=False)  # (H, W) float16
    raw: np.ndarray | None = field(default=None, repr=False)  # (h, w) float32 as computed, before resizing
    scaling: str = "minmax"
    hi: float = float("nan")  # the raw value shown as 1
    constant: bool = False  # nearly constant: shown uniform, and said so
    target: str | None = None  # what the gradient was taken of, when not a class or feature energy
    box: tuple[float, float, float, float] | None = None  # a detection's (x0, y0, x1, y1), image pixels

    @property
    def target_label(self) -> str:
        if self.target is not None:
            return self.target
        return "feature energy" if self.class_index is None else f"class {self.class_index}"

    @property
    def nbytes(self) -> int:
        """Bytes held by the maps."""
        return self.cam.nbytes + (0 if self.raw is None else self.raw.nbytes)

    def rescaled(self, scaling: str) -> CamResult:
        """The same CAM under another scaling (from the raw CAM it keeps)."""
        if scaling == self.scaling or self.raw is None:
            return self
        done = finish_cam(torch.from_numpy(self.raw), self.cam.shape, scaling)
        return replace(self, cam=done.cam, scaling=scaling, hi=done.hi, constant=done.constant)


class FinishedCam(NamedTuple):
    """A CAM resized to the image and scaled for display."""

    cam: np.ndarray  # (H, W) float16 in [0, 1]
    peak: float  # its raw maximum (after resizing)
    hi: float  # the raw value shown as 1
    constant: bool  # nearly constant: `cam` is uniform (0)


def cam_from_gradients(activation: torch.Tensor, gradient: torch.Tensor, method: str) -> torch.Tensor:
    """The (h, w) CAM of one image from a block's (C, h, w) output and the gradient at it."""
    a, g = activation.float(), gradient.float()
    if method == "gradcam":
        weights = g.mean(dim=(1, 2))
        return F.relu((weights[:, None, None] * a).sum(0))
    if method == "gradcampp":  # Chattopadhyay et al. 2018, closed form for an exponential score
        g2, g3 = g.pow(2), g.pow(3)
        denom = 2 * g2 + a.sum(dim=(1, 2), keepdim=True) * g3
        alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
        weights = (alpha * F.relu(g)).sum(dim=(1, 2))
        return F.relu((weights[:, None, None] * a).sum(0))
    if method == "layercam":  # Jiang et al. 2021: element-wise positive gradients
        return F.relu((F.relu(g) * a).sum(0))
    raise ValueError(f"unknown CAM method {method!r}; use one of {', '.join(CAM_METHODS)}")


def is_constant(cam: torch.Tensor | np.ndarray) -> bool:
    """Whether a map's spread (max - min) is below CONSTANT_TOLERANCE of its magnitude (an all-zero map is)."""
    lo, hi = float(cam.min()), float(cam.max())
    return hi - lo <= CONSTANT_TOLERANCE * max(abs(lo), abs(hi))


def finish_cam(cam: torch.Tensor, size: tuple[int, int], scaling: str = "percentile") -> FinishedCam:
    """`cam` (h, w) resized to `size` and scaled to [0, 1] from 0 to its maximum ("minmax") or its 99th
    percentile ("percentile", taken on the grid it was computed on); uniform if it is constant."""
    check_scaling(scaling)
    constant = is_constant(cam)
    resized = F.interpolate(cam[None, None].float(), size=tuple(size), mode="bilinear", align_corners=False)[0, 0]
    peak = float(resized.max())
    hi = peak
    if scaling == "percentile" and not constant:
        top = float(np.percentile(cam.detach().float().cpu().numpy(), SCALING_PERCENTILES[1]))
        hi = top if top > 0 else peak  # a CAM that is zero almost everywhere keeps its maximum
    if constant:
        return FinishedCam(np.zeros(tuple(size), np.float16), peak, hi, True)
    scaled = resized / hi if hi > 0 else resized
    return FinishedCam(scaled.clamp(0, 1).cpu().numpy().astype(np.float16), peak, hi, False)


def cam_colour_scale(cams: Mapping[str, CamResult], cmap: str = CAM_CMAPS[0]) -> ColourScale:
    """The colour bar of CAM overlays: each CAM from 0 to its own top value."""
    first = next(iter(cams.values()), None)
    method = CAM_LABELS.get(first.method, first.method) if first else ""
    top = "99th pct" if first is not None and first.scaling == "percentile" else "max"
    whose = "99th percentile" if top == "99th pct" else "maximum"
    label = f"{method} (scaled) · each CAM from 0 to its own {whose}"
    return ColourScale(cmap, label, 0.0, 1.0, ((0.0, "0"), (1.0, top)), tuple(cams))


def overlay(image: np.ndarray, cam: np.ndarray, cmap: str = CAM_CMAPS[0], alpha: float = 0.5) -> np.ndarray:
    """`cam` (H, W in [0, 1]) coloured with `cmap` and blended over an RGB uint8 image."""
    import matplotlib

    if cam.shape != image.shape[:2]:
        raise ValueError(f"CAM of shape {cam.shape} does not fit the image {image.shape[:2]}")
    colored = matplotlib.colormaps[cmap](cam.astype(np.float32))[..., :3]
    blended = (1 - alpha) * image.astype(np.float32) / 255 + alpha * colored
    return (np.clip(blended, 0, 1) * 255).astype(np.uint8)
