"""How a map's raw values become colours, and what a colour bar says about it (figures and screen alike).

A map is shown as [0, 1] of the range [lo, hi] of its raw values. The range is the map's 1st-99th
percentile (so one hot pixel does not squash everything else to the bottom colour) or its min-max;
signed maps get limits symmetric about 0, so their zero is the middle of a diverging colour map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fishspine.analysis.options import SCALING_PERCENTILES, SCALINGS


@dataclass(frozen=True)
class ColourScale:
    """One colour bar: the colour map, what the colour measures, the raw values at its ends, its ticks."""

    cmap: str
    label: str
    lo: float  # raw value shown as colour 0
    hi: float  # raw value shown as colour 1
    ticks: tuple[tuple[float, str], ...]  # (position in [0, 1], text)
    models: tuple[str, ...]  # the model columns this bar is for


def check_scaling(scaling: str) -> None:
    """ValueError unless `scaling` is one of SCALINGS."""
    if scaling not in SCALINGS:
        raise ValueError(f"unknown scaling {scaling!r}; use one of {', '.join(SCALINGS)}")


def display_range(values: np.ndarray, scaling: str, signed: bool = False) -> tuple[float, float]:
    """The raw (lo, hi) shown as colours 0 and 1: min-max or 1st-99th percentile, symmetric about 0 if `signed`.

    A percentile range that collapses (a map mostly of one value) falls back to the min-max range."""
    check_scaling(scaling)
    v = np.asarray(values, dtype=np.float32).ravel()
    if v.size == 0:
        return 0.0, 1.0
    if signed:
        mag = np.abs(v)
        m = float(mag.max())
        if scaling == "percentile":
            p = float(np.percentile(mag, SCALING_PERCENTILES[1]))
            m = p if p > 0 else m
        return -m, m
    lo, hi = float(v.min()), float(v.max())
    if scaling == "percentile":
        plo, phi = (float(x) for x in np.percentile(v, SCALING_PERCENTILES))
        if phi > plo:
            lo, hi = plo, phi
    return lo, hi


def scaling_words(scaling: str) -> str:
    """How a colour bar names a scaling."""
    lo, hi = SCALING_PERCENTILES
    return f"{lo:g}st–{hi:g}th percentile" if scaling == "percentile" else "min–max"


def value_ticks(lo: float, hi: float, signed: bool) -> tuple[tuple[float, str], ...]:
    """Ticks at the ends of a raw range (and at 0 for a signed one)."""
    ends = ((0.0, f"{lo:.3g}"), (1.0, f"{hi:.3g}"))
    return (ends[0], (0.5, "0"), ends[1]) if signed else ends
