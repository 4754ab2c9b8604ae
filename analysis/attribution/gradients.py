"""Gradient-magnitude traces: does the gradient reach shallow layers directly?

One backward pass of a loss (cross-entropy of a class, or feature energy for backbones without a
classifier) records, for every block, the L2 norm of the gradient at its output and at its weights.
Blocks are ordered from the deepest to the shallowest; x is normalised depth (0 = deepest block,
1 = shallowest), so models of different depth overlay on one axis. The ratio shallowest/deepest
of the output-gradient norm summarises how much gradient survives the trip back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Mapping

import torch

from fishspine.models import Backbone

from fishspine.analysis.attribution.targets import objective


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

    @property
    def ratio(self) -> float:
        """Output-gradient norm of the shallowest block over that of the deepest."""
        deep, shallow = self.output_grad_norm[0], self.output_grad_norm[-1]
        if deep > 0:
            return shallow / deep
        return math.nan if shallow == 0 else math.inf  # 0/0: e.g. a saturated, untrained classifier

    def rows(self) -> list[dict]:
        """One row per block (CSV export)."""
        return [{"model": self.model, "block": b, "role": r, "level": lvl, "depth": d, "output_grad_norm": o,
                 "weight_grad_norm": w}
                for b, r, lvl, d, o, w in zip(self.blocks, self.roles, self.levels, self.depth,
                                              self.output_grad_norm, self.weight_grad_norm)]


def trace_from_capture(model: Backbone, grads: Mapping[str, torch.Tensor], label: str, loss: str,
                       class_index: int | None) -> GradientTrace:
    """Build a trace from captured output gradients and the parameters' .grad (after backward)."""
    blocks = [b for b in reversed(model.blocks) if b.name in grads]
    out_norms = [float(grads[b.name].float().norm()) for b in blocks]
    weight_norms = []
    for b in blocks:
        gs = [p.grad for p in model.block_parameters(b.name) if p.grad is not None]
        weight_norms.append(float(torch.sqrt(sum(g.float().pow(2).sum() for g in gs))) if gs else math.nan)
    return GradientTrace(label, loss, class_index, [b.name for b in blocks], [b.role for b in blocks],
                         [b.level for b in blocks], out_norms, weight_norms)


def gradient_trace(model: Backbone, x: torch.Tensor, class_index: int | None = None,
                   loss: str = "cross_entropy", label: str = "") -> GradientTrace:
    """The gradient trace of `model` for images x (N, 3, H, W)."""
    model.zero_grad(set_to_none=True)
    try:
        with torch.enable_grad(), model.capture(grads=True) as cap:
            score, class_index = objective(model, x, class_index, loss)
            score.backward()
        used = "feature_energy" if class_index is None else loss
        return trace_from_capture(model, cap.grads, label or model.variant, used, class_index)
    finally:
        model.zero_grad(set_to_none=True)


def iter_gradient_traces(models: Mapping[str, Backbone], x: torch.Tensor, class_index: int | None = None,
                         loss: str = "cross_entropy") -> Iterator[tuple[int, int, str] | dict[str, GradientTrace]]:
    """Yield (done, total, model label) per model, then the dict of traces."""
    traces = {}
    for i, (label, model) in enumerate(models.items()):
        device = next(model.parameters()).device
        traces[label] = gradient_trace(model, x.to(device), class_index, loss, label)
        yield i + 1, len(models), label
    yield traces
