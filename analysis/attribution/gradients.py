"""Gradient-magnitude traces: does the gradient reach shallow layers directly?

One backward pass of a loss (cross-entropy of a class, or feature energy for backbones without a
classifier) records, for every block, the L2 norm of the gradient at its output and at its weights.
Blocks are ordered from the deepest to the shallowest; x is normalised depth (0 = deepest block,
1 = shallowest), so models of different depth overlay on one axis. The ratio shallowest/deepest
of the gradient norm summarises how much gradient survives the trip back. The norms come from the
engine's pass (analysis/attribution/engine.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from fishspine.analysis.options import GRADIENT_WHICH


@dataclass
class GradientTrace:
    """Per-block gradient norms of one model, deepest block first."""

    model: str
    loss: str
    class_index: int | None
    blocks: list[str]
    roles: list[str]
    levels: list[int]
    output_grad_norm: list[float]
    weight_grad_norm: list[float]  # nan for blocks without parameters

    @property
    def depth(self) -> list[float]:
        """Normalised depth of each entry: 0 = deepest, 1 = shallowest."""
        n = len(self.blocks)
        return [i / (n - 1) if n > 1 else 0.0 for i in range(n)]

    def norms(self, which: str = "output") -> list[float]:
        """The norms at block outputs ("output") or at block weights ("weight")."""
        if which not in GRADIENT_WHICH:
            raise ValueError(f"which must be one of {', '.join(GRADIENT_WHICH)}, not {which!r}")
        return self.output_grad_norm if which == "output" else self.weight_grad_norm

    def ratio_of(self, which: str = "output") -> float:
        """Gradient norm of the shallowest block over that of the deepest, of outputs or of weights.

        For weights, the shallowest and deepest blocks that have weights.
        """
        values = [v for v in self.norms(which) if not math.isnan(v)]
        if not values:
            return math.nan
        deep, shallow = values[0], values[-1]
        if deep > 0:
            return shallow / deep
        return math.nan if shallow == 0 else math.inf  # 0/0: e.g. a saturated, untrained classifier

    @property
    def ratio(self) -> float:
        """Output-gradient norm of the shallowest block over that of the deepest."""
        return self.ratio_of("output")

    def summary(self, which: str = "output") -> dict:
        """The trace as exported data: what was traced, the ratio of `which`, and every block."""
        return {
            "which": which,
            "ratio": self.ratio_of(which),
            "loss": self.loss,
            "class_index": self.class_index,
            "blocks": self.rows(),
        }

    def rows(self) -> list[dict]:
        """One row per block (CSV export)."""
        return [
            {
                "model": self.model,
                "block": b,
                "role": r,
                "level": lvl,
                "depth": d,
                "output_grad_norm": o,
                "weight_grad_norm": w,
            }
            for b, r, lvl, d, o, w in zip(
                self.blocks, self.roles, self.levels, self.depth, self.output_grad_norm, self.weight_grad_norm
            )
        ]


def mean_trace(traces: Sequence[GradientTrace]) -> GradientTrace:
    """The block-wise mean of one model's traces over several images (each image traced on its own)."""
    if not traces:
        raise ValueError("no traces to average")
    first = traces[0]
    if any(t.blocks != first.blocks for t in traces):
        raise ValueError("traces of different models cannot be averaged")

    def mean(column: list[list[float]]) -> list[float]:
        return [math.fsum(values) / len(values) for values in zip(*column)]

    classes = {t.class_index for t in traces}
    return GradientTrace(
        first.model,
        first.loss,
        first.class_index if len(classes) == 1 else None,
        list(first.blocks),
        list(first.roles),
        list(first.levels),
        mean([t.output_grad_norm for t in traces]),
        mean([t.weight_grad_norm for t in traces]),
    )
