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
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from fishspine.analysis.options import NORMALISATIONS, REDUCTIONS
from fishspine.models import BlockInfo


class ReducedOutput:
    """One block's captured output under one reduction, each part computed the first time it is read.

    A view shows a few blocks of each model: deriving a reduction must not pay for the others, and
    the statistics of every block are needed only for per-model or global normalisation and exports.
    """

    def __init__(self, out: torch.Tensor, reduction: str, size: tuple[int, int], k: int = 8) -> None:
        self.out, self.reduction, self.size, self.k = out, reduction, size, k
        self._stats: tuple[float, float, float] | None = None
        self._native: torch.Tensor | None = None
        self._range: tuple[float, float] | None = None
        self._scaled: np.ndarray | None = None

    def stats(self) -> tuple[float, float, float]:
        """(min, max, mean) of the raw block output."""
        if self._stats is None:
            self._stats = (float(self.out.min()), float(self.out.max()), float(self.out.float().mean()))
        return self._stats

    def range(self) -> tuple[float, float]:
        """(min, max) of the reduced map; resizing only blends neighbours, so the image-sized map stays within."""
        if self._range is None:
            self._native = reduce_activation(self.out, self.reduction, self.k)
            self._range = (float(self._native.min()), float(self._native.max()))
        return self._range

    def scaled(self) -> np.ndarray:
        """(H, W) float16 in [0, 1] of the map's own range, resized to the image."""
        if self._scaled is None:
            lo, hi = self.range()
            m = F.interpolate(self._native[None, None], size=self.size, mode="bilinear", align_corners=False)[0, 0]
            # float16 keeps 3 digits of [0, 1], not of a raw range that may be 1e-6 or 1e5.
            self._scaled = ((m - lo) / max(hi - lo, 1e-12)).clamp_(0, 1).cpu().numpy().astype(np.float16)
        return self._scaled

    @property
    def nbytes(self) -> int:
        """Bytes held beyond the captured output."""
        native = 0 if self._native is None else self._native.numel() * self._native.element_size()
        return native + (0 if self._scaled is None else self._scaled.nbytes)


@dataclass
class BlockMap:
    """One block's reduced map and the statistics shown on hover (each computed when first read).

    `lo`/`hi` are the raw values shown as 0 and 1: the block's own range (NaN), or the model's or
    every model's (see `normalise`).
    """

    name: str
    role: str
    level: int
    shape: tuple[int, ...]  # the block output's (C, H, W)
    source: ReducedOutput = field(repr=False)
    lo: float = math.nan
    hi: float = math.nan
    _map: np.ndarray | None = field(default=None, repr=False)

    @property
    def out_min(self) -> float:
        """Of the raw block output."""
        return self.source.stats()[0]

    @property
    def out_max(self) -> float:
        return self.source.stats()[1]

    @property
    def out_mean(self) -> float:
        return self.source.stats()[2]

    @property
    def map_min(self) -> float:
        """Of the reduced map before normalisation."""
        return self.source.range()[0]

    @property
    def map_max(self) -> float:
        return self.source.range()[1]

    @property
    def map(self) -> np.ndarray:
        """(H, W) float16 in [0, 1]: the reduced map resized to the image, scaled from [lo, hi]."""
        if self._map is None:
            own = self.source.scaled()
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
        return [
            {
                "model": self.model,
                "block": b.name,
                "role": b.role,
                "level": b.level,
                "channels": b.shape[0],
                "height": b.shape[1],
                "width": b.shape[2],
                "out_min": b.out_min,
                "out_max": b.out_max,
                "out_mean": b.out_mean,
                "map_min": b.map_min,
                "map_max": b.map_max,
            }
            for b in self.blocks
        ]


def sample_rows(n_blocks: int, rows: int) -> list[int]:
    """Indices of `rows` blocks evenly spread over depth (always the first and the last)."""
    if n_blocks <= rows:
        return list(range(n_blocks))
    return sorted({round(i * (n_blocks - 1) / (rows - 1)) for i in range(rows)})


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
    """The map of one block's (C, h, w) output under `reduction`, at image size `size`, made when first read."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; use one of {', '.join(REDUCTIONS)}")
    return BlockMap(info.name, info.role, info.level, tuple(out.shape), ReducedOutput(out, reduction, size, k))


def normalise(results: Sequence[ActivationResult], how: str = "block") -> None:
    """Set the range shown as [0, 1] of every map of `results`: per block, per model or globally.

    Per block reads no other block; per model and global read every block's range.
    """
    if how not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {how!r}; use one of {', '.join(NORMALISATIONS)}")

    def span(blocks: list[BlockMap]) -> tuple[float, float]:
        return min((b.map_min for b in blocks), default=0.0), max((b.map_max for b in blocks), default=1.0)

    every = span([b for r in results for b in r.blocks]) if how == "global" else None
    for r in results:
        shared = every or (span(r.blocks) if how == "model" else None)
        for b in r.blocks:
            b.lo, b.hi = shared if shared else (math.nan, math.nan)
            b._map = None
        r.normalisation = how
