"""Confidence intervals of a mean from mergeable sums (n, sum, sum of squares).

A study keeps only sums, so chunks done by different processes add up; the interval is formed once at
the end. The Student t quantile is computed here (no scipy): bisection on the t CDF, which is the
regularised incomplete beta function evaluated by its continued fraction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_EPS = 1e-15
_TINY = 1e-300


@dataclass(frozen=True)
class Interval:
    """Mean of n values and its two-sided confidence interval [lo, hi]."""

    mean: float
    lo: float
    hi: float
    n: int

    def as_dict(self) -> dict:
        """{"mean", "lo", "hi", "n"} as plain Python numbers."""
        return {"mean": float(self.mean), "lo": float(self.lo), "hi": float(self.hi), "n": int(self.n)}


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz), converging for x < (a + 1) / (a + b + 2)."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        # Two steps per m: the even term d_2m, then the odd term d_2m+1.
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + num / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            break
    return h


def _regularised_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    # The fraction converges fast only on one side of the mean; use the symmetry I_x(a,b) = 1 - I_1-x(b,a).
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def _student_t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with df degrees of freedom."""
    tail = 0.5 * _regularised_beta(0.5 * df, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


@lru_cache(maxsize=1024)
def student_t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t distribution with df degrees of freedom (0 < p < 1, df >= 1)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), not {p}")
    if df < 1:
        raise ValueError(f"df must be >= 1, not {df}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    hi = 1.0
    while _student_t_cdf(hi, df) < p:
        hi *= 2.0
    lo = 0.0
    # Bisection to float resolution: the CDF is monotone, so this cannot fail to converge.
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _student_t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def t_interval(n: int, total: float, total_sq: float, confidence: float = 0.95) -> Interval:
    """The t interval of the mean of n values whose sum is `total` and sum of squares `total_sq`.

    n == 0: everything nan; n == 1: the mean with lo = hi = nan.
    """
    mean, lo, hi = t_intervals(int(n), np.asarray(total, dtype=np.float64), np.asarray(total_sq), confidence)
    return Interval(float(mean), float(lo), float(hi), int(n))


def t_intervals(
    n: int | np.ndarray, totals: np.ndarray, totals_sq: np.ndarray, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Elementwise t intervals (mean, lo, hi) from sums; n is one count or a count per element."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}")
    totals = np.asarray(totals, dtype=np.float64)
    totals_sq = np.asarray(totals_sq, dtype=np.float64)
    n_arr = np.broadcast_to(np.asarray(n, dtype=np.int64), np.broadcast_shapes(np.shape(n), totals.shape))
    shape = n_arr.shape
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(n_arr > 0, totals / n_arr, np.nan)
        # Sum of squared deviations; rounding can make it slightly negative for constant data.
        ss = np.maximum(totals_sq - totals * mean, 0.0)
        sem = np.sqrt(ss / (n_arr - 1) / n_arr)
    q = 0.5 + 0.5 * confidence
    t = np.full(shape, np.nan)
    for df in np.unique(n_arr[n_arr > 1] - 1):
        t[n_arr - 1 == df] = student_t_quantile(q, int(df))
    half = np.where(n_arr > 1, t * sem, np.nan)
    mean = np.broadcast_to(mean, shape).astype(np.float64)
    return mean, mean - half, mean + half
