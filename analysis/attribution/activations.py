"""Per-block activation maps: each block's output reduced to one display map per image.

Reductions: mean |activation| over channels, max over channels, mean of the top-k channels (by
their mean |activation|), and the first principal component over channels (sign chosen so it
correlates positively with mean |activation|). Maps are resized to the image on the device and
come back small (float16 numpy in [0, 1]), never as full tensors. Normalisation: per block (each
map its own range), per model (one range for all of a model's blocks), or global (one range across
every model and block, so side-by-side maps are comparable). Scaling: a range is each map's
1st-99th percentile (default) or its min-max (analysis/attribution/colour_scale.py); signed maps
(PC1) get a range symmetric about 0. The maps are derived from a captured pass
(analysis/attribution/engine.py), never by running the model here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from fishspine.analysis.attribution.colour_scale import (
    ColourScale,
    check_scaling,
    display_range,
    scaling_words,
    value_ticks,
)
from fishspine.analysis.options import (
    ACTIVATION_CMAP,
    NORMALISATIONS,
    REDUCTION_LABELS,
    REDUCTIONS,
    SIGNED_CMAP,
    SIGNED_REDUCTIONS,
)
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
        self._display: dict[str, tuple[float, float]] = {}
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

    @property
    def signed(self) -> bool:
        """Whether the map has both signs around a meaningful 0 (shown with a diverging colour map)."""
        return self.reduction in SIGNED_REDUCTIONS

    def display_range(self, scaling: str) -> tuple[float, float]:
        """The raw (lo, hi) that `scaling` shows as 0 and 1 (taken on the block's own grid, before resizing)."""
        if scaling not in self._display:
            self.range()
            self._display[scaling] = display_range(self._native.cpu().numpy(), scaling, self.signed)
        return self._display[scaling]

    def _resized(self, lo: float, hi: float) -> np.ndarray:
        m = F.interpolate(self._native[None, None], size=self.size, mode="bilinear", align_corners=False)[0, 0]
        # float16 keeps 3 digits of [0, 1], not of a raw range that may be 1e-6 or 1e5.
        return ((m - lo) / max(hi - lo, 1e-12)).clamp_(0, 1).cpu().numpy().astype(np.float16)

    def scaled(self) -> np.ndarray:
        """(H, W) float16 in [0, 1] of the map's own min-max range, resized to the image."""
        if self._scaled is None:
            self._scaled = self._resized(*self.range())
        return self._scaled

    def scaled_to(self, lo: float, hi: float) -> np.ndarray:
        """(H, W) float16 in [0, 1] of the raw range [lo, hi], resized to the image (the own range is kept)."""
        if (lo, hi) == self.range():
            return self.scaled()
        return self._resized(lo, hi)

    @property
    def nbytes(self) -> int:
        """Bytes held beyond the captured output."""
        native = 0 if self._native is None else self._native.numel() * self._native.element_size()
        return native + (0 if self._scaled is None else self._scaled.nbytes)


@dataclass
class BlockMap:
    """One block's reduced map and the statistics shown on hover (each computed when first read).

    `lo`/`hi` are the raw values shown as 0 and 1: the block's own min-max range (NaN), or the range
    `normalise` set (the block's, the model's or every model's, min-max or percentile).
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
    def signed(self) -> bool:
        """Whether the map is signed (its 0 is the middle colour)."""
        return self.source.signed

    @property
    def map(self) -> np.ndarray:
        """(H, W) float16 in [0, 1]: the reduced map resized to the image, scaled from [lo, hi]."""
        if self._map is None:
            lo, hi = (self.map_min, self.map_max) if math.isnan(self.lo) else (self.lo, self.hi)
            self._map = self.source.scaled_to(lo, hi)
        return self._map


@dataclass
class ActivationResult:
    """Maps of every requested block of one model for one image."""

    model: str
    image_size: tuple[int, int]
    reduction: str
    normalisation: str
    blocks: list[BlockMap]
    scaling: str = "minmax"  # how `normalise` set the ranges

    @property
    def signed(self) -> bool:
        """Whether the maps are signed (PC1): a diverging colour map centred at 0."""
        return self.reduction in SIGNED_REDUCTIONS

    @property
    def cmap(self) -> str:
        """The colour map the maps are drawn with."""
        return SIGNED_CMAP if self.signed else ACTIVATION_CMAP

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
                "shown_lo": b.lo if not math.isnan(b.lo) else b.map_min,
                "shown_hi": b.hi if not math.isnan(b.hi) else b.map_max,
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


def normalise(results: Sequence[ActivationResult], how: str = "block", scaling: str = "percentile") -> None:
    """Set the range shown as [0, 1] of every map of `results`: per block, per model or globally, each
    block's range taken by `scaling` (a shared range spans the blocks' ranges; symmetric about 0 if signed).

    Per block reads no other block; per model and global read every block's range.
    """
    if how not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {how!r}; use one of {', '.join(NORMALISATIONS)}")
    check_scaling(scaling)

    def span(blocks: list[BlockMap]) -> tuple[float, float]:
        ranges = [b.source.display_range(scaling) for b in blocks]
        lo, hi = min((r[0] for r in ranges), default=0.0), max((r[1] for r in ranges), default=1.0)
        if blocks and blocks[0].signed:
            m = max(abs(lo), abs(hi))
            return -m, m
        return lo, hi

    every = span([b for r in results for b in r.blocks]) if how == "global" else None
    for r in results:
        shared = every or (span(r.blocks) if how == "model" else None)
        for b in r.blocks:
            b.lo, b.hi = shared if shared else b.source.display_range(scaling)
            b._map = None
        r.normalisation, r.scaling = how, scaling


def colour_scales(results: Mapping[str, ActivationResult]) -> list[ColourScale]:
    """The colour bar of a gallery of `results`: one for every model. Under global normalisation its ends
    are the shared raw range; where each block or each model is scaled to its own range, its ends are
    those ranges' ends (the percentiles, or min and max) and its label names every model's raw range. A
    single model under per-model normalisation gets its raw range on the bar."""
    first = next(iter(results.values()), None)
    if first is None:
        return []
    what, words = REDUCTION_LABELS[first.reduction], scaling_words(first.scaling)
    signed, cmap = first.signed, first.cmap
    symmetric = ", symmetric about 0" if signed else ""

    def ends(r: ActivationResult) -> tuple[float, float]:
        return (r.blocks[0].lo, r.blocks[0].hi) if r.blocks else (0.0, 1.0)

    if first.normalisation == "global" or (first.normalisation == "model" and len(results) == 1):
        lo, hi = ends(first)
        scope = "one range for every model and block" if first.normalisation == "global" else "one range for its blocks"
        label = f"{what} · {scope} ({words})"
        return [ColourScale(cmap, label, lo, hi, value_ticks(lo, hi, signed), tuple(results))]
    if signed:
        ticks = ((0.0, "−"), (0.5, "0"), (1.0, "+"))
    elif first.scaling == "percentile":
        ticks = ((0.0, "1st pct"), (1.0, "99th pct"))
    else:
        ticks = ((0.0, "min"), (1.0, "max"))
    if first.normalisation == "block":
        label = f"{what} · each block scaled to its own range ({words}{symmetric})"
    else:  # per model: one bar in fractions of each model's range, the ranges named
        ranges = " · ".join(f"{m} {lo:.3g} to {hi:.3g}" for m, (lo, hi) in ((m, ends(r)) for m, r in results.items()))
        label = f"{what} · each model scaled to its own range ({words}{symmetric})\n{ranges}"
    return [ColourScale(cmap, label, 0.0, 1.0, ticks, tuple(results))]
