"""Per-block activation maps: each block's output reduced to one display map per image.

Reductions: mean |activation| over channels, max over channels, mean of the top-k channels (by
their mean |activation|), and the first principal component over channels (sign chosen so it
correlates positively with mean |activation|). Maps are resized to the image on the device and
come back small (float16 numpy in [0, 1]), never as full tensors. Normalisation: per block (each
map its own range), per model (one range for all of a model's blocks), or global (one range across
every model and block, so side-by-side maps are comparable).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fishspine.models import Backbone

from fishspine.analysis.options import NORMALISATIONS, REDUCTIONS


@dataclass
class BlockMap:
    """One block's reduced map and the statistics shown on hover."""

    name: str
    role: str
    level: int
    shape: tuple[int, ...]  # the block output's (C, H, W)
    out_min: float  # of the raw block output
    out_max: float
    out_mean: float
    map_min: float  # of the reduced map before normalisation
    map_max: float
    map: np.ndarray = field(repr=False)  # (H, W) float16 in [0, 1] after normalisation


@dataclass
class ActivationResult:
    """Maps of every requested block of one model for one image."""

    model: str
    image_size: tuple[int, int]
    reduction: str
    normalisation: str
    blocks: list[BlockMap]

    def block(self, name: str) -> BlockMap:
        """The map of block `name`."""
        for b in self.blocks:
            if b.name == name:
                return b
        raise KeyError(name)

    def rows(self) -> list[dict]:
        """One row per block (CSV export)."""
        return [{"model": self.model, "block": b.name, "role": b.role, "level": b.level,
                 "channels": b.shape[0], "height": b.shape[1], "width": b.shape[2], "out_min": b.out_min,
                 "out_max": b.out_max, "out_mean": b.out_mean, "map_min": b.map_min, "map_max": b.map_max}
                for b in self.blocks]


def reduce_activation(t: torch.Tensor, reduction: str = "mean_abs", k: int = 8) -> torch.Tensor:
    """A (C, H, W) block output reduced to an (H, W) map."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; use one of {', '.join(REDUCTIONS)}")
    t = t.float()
    if reduction == "mean_abs":
        return t.abs().mean(0)
    if reduction == "max":
        return t.amax(0)
    if reduction == "topk":
        strength = t.abs().mean(dim=(1, 2))
        idx = strength.topk(min(k, t.shape[0])).indices
        return t[idx].abs().mean(0)
    c, h, w = t.shape
    x = t.reshape(c, h * w).T  # (HW, C)
    x = x - x.mean(0, keepdim=True)
    cov = x.T @ x
    _, vecs = torch.linalg.eigh(cov)
    pc = (x @ vecs[:, -1]).reshape(h, w)
    if (pc * t.abs().mean(0)).sum() < 0:  # eigenvectors have no sign; fix one
        pc = -pc
    return pc


def block_maps(model: Backbone, x: torch.Tensor, outputs: Mapping[str, torch.Tensor], reduction: str,
               k: int = 8) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, raw output of image 0, reduced map resized to x's size) for the captured `outputs`."""
    size = x.shape[-2:]
    result = []
    for b in model.blocks:
        if b.name not in outputs:
            continue
        out = outputs[b.name][0].detach()
        m = reduce_activation(out, reduction, k)
        m = F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
        result.append((b.name, out, m))
    return result


def _finish(model: Backbone, name_out_maps: list[tuple[str, torch.Tensor, torch.Tensor]], label: str,
            reduction: str, size: tuple[int, int]) -> ActivationResult:
    blocks = []
    for name, out, m in name_out_maps:
        info = model.block(name)
        blocks.append(BlockMap(name, info.role, info.level, tuple(out.shape), float(out.min()), float(out.max()),
                               float(out.float().mean()), float(m.min()), float(m.max()), m.cpu().numpy()))
    return ActivationResult(label, size, reduction, "none", blocks)


def normalise(results: Sequence[ActivationResult], how: str = "block") -> None:
    """Scale every map of `results` to [0, 1] in place: per block, per model or globally."""
    if how not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {how!r}; use one of {', '.join(NORMALISATIONS)}")
    glo = (min((b.map_min for r in results for b in r.blocks), default=0.0),
           max((b.map_max for r in results for b in r.blocks), default=1.0))
    for r in results:
        per_model = (min((b.map_min for b in r.blocks), default=0.0), max((b.map_max for b in r.blocks), default=1.0))
        for b in r.blocks:
            lo, hi = {"block": (b.map_min, b.map_max), "model": per_model, "global": glo}[how]
            scaled = (b.map.astype(np.float32) - lo) / max(hi - lo, 1e-12)
            b.map = np.clip(scaled, 0.0, 1.0).astype(np.float16)
        r.normalisation = how


def iter_activations(models: Mapping[str, Backbone], x: torch.Tensor, reduction: str = "mean_abs",
                     normalisation: str = "block", blocks: Mapping[str, Sequence[str]] | None = None,
                     k: int = 8) -> Iterator[tuple[int, int, str] | dict[str, ActivationResult]]:
    """Yield (done, total, model label) as each model finishes, then the dict of results."""
    results: dict[str, ActivationResult] = {}
    for i, (label, model) in enumerate(models.items()):
        device = next(model.parameters()).device
        xi = x.to(device)
        names = None if blocks is None else blocks.get(label)
        with torch.no_grad(), model.capture(names, detach=True) as cap:
            model(xi)
        maps = block_maps(model, xi, cap.outputs, reduction, k)
        del cap
        results[label] = _finish(model, maps, label, reduction, tuple(x.shape[-2:]))
        yield i + 1, len(models), label
    normalise(list(results.values()), normalisation)
    yield results


def compute_activations(models: Mapping[str, Backbone], x: torch.Tensor, reduction: str = "mean_abs",
                        normalisation: str = "block", blocks: Mapping[str, Sequence[str]] | None = None,
                        k: int = 8) -> dict[str, ActivationResult]:
    """Activation maps of every (or the listed) block of each model for image x (1, 3, H, W)."""
    *_, results = iter_activations(models, x, reduction, normalisation, blocks, k)
    return results
