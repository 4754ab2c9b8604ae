"""Per-block activation maps: each block's output reduced to one display map per image.

Reductions: mean |activation| over channels, max over channels, mean of the top-k channels (by
their mean |activation|), and the first principal component over channels (sign chosen so it
correlates positively with mean |activation|). Maps are resized to the image on the device and
come back small (float16 numpy in [0, 1]), never as full tensors. Normalisation: per block (each
map its own range), per model (one range for all of a model's blocks), or global (one range across
every model and block, so side-by-side maps are comparable). The maps are derived from a captured
pass (analysis/attribution/engine.py), never by running the model here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fishspine.models import BlockInfo

from fishspine.analysis.options import NORMALISATIONS, REDUCTIONS


class _ImageSized:
    """A reduced map at the block's resolution, resized to the image the first time it is shown."""

    def __init__(self, native: torch.Tensor, size: tuple[int, int]) -> None:
        self.native, self.size = native, size
        self._scaled: np.ndarray | None = None

    def scaled(self, lo: float, hi: float) -> np.ndarray:
        """(H, W) float16 in [0, 1] of the map's own range [lo, hi]."""
        if self._scaled is None:
            m = F.interpolate(self.native[None, None], size=self.size, mode="bilinear", align_corners=False)[0, 0]
            # float16 keeps 3 digits of [0, 1], not of a raw range that may be 1e-6 or 1e5.
            self._scaled = ((m - lo) / max(hi - lo, 1e-12)).clamp_(0, 1).cpu().numpy().astype(np.float16)
        return self._scaled

    @property
    def nbytes(self) -> int:
        return self.native.numel() * self.native.element_size() + (0 if self._scaled is None else self._scaled.nbytes)


@dataclass
class BlockMap:
    """One block's reduced map and the statistics shown on hover.

    The map is made when it is first read: a view shows a few blocks of each model, and deriving a
    reduction or a normalisation must not pay for the others. `lo`/`hi` are the raw values shown as
    0 and 1: the block's own range, or the model's or every model's (see `normalise`).
    """

    name: str
    role: str
    level: int
    shape: tuple[int, ...]  # the block output's (C, H, W)
    out_min: float  # of the raw block output
    out_max: float
    out_mean: float
    map_min: float  # of the reduced map before normalisation
    map_max: float
    source: _ImageSized = field(repr=False)
    lo: float = math.nan
    hi: float = math.nan
    _map: np.ndarray | None = field(default=None, repr=False)

    @property
    def map(self) -> np.ndarray:
        """(H, W) float16 in [0, 1]: the reduced map resized to the image, scaled from [lo, hi]."""
        if self._map is None:
            own = self.source.scaled(self.map_min, self.map_max)
            lo, hi = (self.map_min, self.map_max) if math.isnan(self.lo) else (self.lo, self.hi)
            if (lo, hi) == (self.map_min, self.map_max):
                self._map = own
            else:
                raw = self.map_min + own.astype(np.float32) * (self.map_max - self.map_min)
                self._map = np.clip((raw - lo) / max(hi - lo, 1e-12), 0.0, 1.0).astype(np.float16)
        return self._map


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


def block_map(info: BlockInfo, out: torch.Tensor, reduction: str, size: tuple[int, int], k: int = 8) -> BlockMap:
    """The map of one block's (C, h, w) output under `reduction` (resized to `size` when first read)."""
    m = reduce_activation(out, reduction, k)
    # The range is the native map's: bilinear resizing only blends neighbours, so it stays within it.
    return BlockMap(info.name, info.role, info.level, tuple(out.shape), float(out.min()), float(out.max()),
                    float(out.float().mean()), float(m.min()), float(m.max()), _ImageSized(m, size))


def normalise(results: Sequence[ActivationResult], how: str = "block") -> None:
    """Rescale every map of `results` (each in [0, 1] of its own range) in place: per block, per model or globally."""
    if how not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {how!r}; use one of {', '.join(NORMALISATIONS)}")
    glo = (min((b.map_min for r in results for b in r.blocks), default=0.0),
           max((b.map_max for r in results for b in r.blocks), default=1.0))
    for r in results:
        per_model = (min((b.map_min for b in r.blocks), default=0.0), max((b.map_max for b in r.blocks), default=1.0))
        for b in r.blocks:
            lo, hi = {"block": (b.map_min, b.map_max), "model": per_model, "global": glo}[how]
            b.lo, b.hi, b._map = lo, hi, None
        r.normalisation = how
