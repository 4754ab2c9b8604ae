"""Class activation maps at any block: Grad-CAM, Grad-CAM++ and LayerCAM, from a captured pass.

The engine (analysis/attribution/engine.py) captures every block's output and the target's gradient
at it; a CAM is then a function of the two, so any method at any block needs no other pass. Grad-CAM
equals captum's `LayerGradCam` (tested on every family).

The target is a class (the top prediction when none is given) for models with a classifier, and
feature energy (see analysis/targets.py) for backbones without one, such as SpineNet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from fishspine.analysis.options import CAM_METHODS


@dataclass
class CamResult:
    """A CAM at one block, resized to the image and scaled to [0, 1]."""

    model: str
    block: str
    method: str
    class_index: int | None  # None: the feature-energy target
    raw_max: float
    cam: np.ndarray = field(repr=False)  # (H, W) float16

    @property
    def target_label(self) -> str:
        return "feature energy" if self.class_index is None else f"class {self.class_index}"


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


def finish_cam(cam: torch.Tensor, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """(CAM resized to `size` and scaled to [0, 1] as float16, its raw maximum)."""
    cam = F.interpolate(cam[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]
    peak = float(cam.max())
    scaled = cam / peak if peak > 0 else cam
    return scaled.clamp(0, 1).cpu().numpy().astype(np.float16), peak


def overlay(image: np.ndarray, cam: np.ndarray, cmap: str = "jet", alpha: float = 0.5) -> np.ndarray:
    """`cam` (H, W in [0, 1]) coloured with `cmap` and blended over an RGB uint8 image."""
    import matplotlib

    if cam.shape != image.shape[:2]:
        raise ValueError(f"CAM of shape {cam.shape} does not fit the image {image.shape[:2]}")
    colored = matplotlib.colormaps[cmap](cam.astype(np.float32))[..., :3]
    blended = (1 - alpha) * image.astype(np.float32) / 255 + alpha * colored
    return (np.clip(blended, 0, 1) * 255).astype(np.uint8)
