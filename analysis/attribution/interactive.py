"""Everything the app shows for one image, in one forward and one backward pass per model.

A single pass with every block captured (outputs and gradients) yields the activation maps of
every block, the gradient trace and the CAM at the chosen block, instead of one pass per view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping

import torch

from fishspine.models import Backbone

from fishspine.analysis.attribution.activations import ActivationResult, _finish, block_maps, normalise
from fishspine.analysis.attribution.cam import CamResult, cam_from_gradients, finish_cam
from fishspine.analysis.attribution.gradients import GradientTrace, trace_from_capture
from fishspine.analysis.attribution.targets import target_of


@dataclass
class ModelInsight:
    """One model's activations, gradient trace and CAM for one image."""

    activations: ActivationResult
    trace: GradientTrace
    cam: CamResult


def default_cam_block(model: Backbone) -> str:
    """The last block at stride 32 (or the coarsest below it): where Grad-CAM is usually taken."""
    level = max(b.level for b in model.blocks if b.level <= 5)
    return [b.name for b in model.blocks if b.level == level][-1]


def analyse(model: Backbone, x: torch.Tensor, label: str = "", cam_block: str | None = None,
            cam_method: str = "gradcam", reduction: str = "mean_abs", class_index: int | None = None,
            loss: str = "cross_entropy") -> ModelInsight:
    """Activations (not yet normalised across models), trace and CAM of `model` for image x (1, 3, H, W)."""
    label = label or model.variant
    cam_block = cam_block or default_cam_block(model)
    model.zero_grad(set_to_none=True)
    try:
        with torch.enable_grad(), model.capture(grads=True) as cap:
            out = model(x)
            score, class_index = target_of(out, class_index, "score")
            if class_index is not None and loss != "score":
                # Grad-CAM takes the class score's gradient; the trace takes the loss's. The first
                # only runs back to the CAM block, so it costs a fraction of a pass.
                (cam_grad,) = torch.autograd.grad(score, cap.outputs[cam_block], retain_graph=True)
                score, _ = target_of(out, class_index, loss)
            else:
                cam_grad = None
            score.backward()
        if cam_grad is None:
            cam_grad = cap.grads[cam_block]
        maps = block_maps(model, x, cap.outputs, reduction)
        acts = _finish(model, maps, label, reduction, tuple(x.shape[-2:]))
        trace = trace_from_capture(model, cap.grads, label, "feature_energy" if class_index is None else loss,
                                   class_index)
        raw = cam_from_gradients(cap.outputs[cam_block][0].detach(), cam_grad[0], cam_method)
        cam, peak = finish_cam(raw, tuple(x.shape[-2:]))
        return ModelInsight(acts, trace, CamResult(label, cam_block, cam_method, class_index, peak, cam))
    finally:
        model.zero_grad(set_to_none=True)


def iter_analysis(models: Mapping[str, Backbone], x: torch.Tensor, normalisation: str = "block",
                  cam_blocks: Mapping[str, str] | None = None,
                  **kwargs) -> Iterator[tuple[int, int, str] | dict[str, ModelInsight]]:
    """Yield (done, total, model label) per model, then {label: ModelInsight} with maps normalised.

    `cam_blocks` picks the CAM block per model label (default: `default_cam_block`)."""
    out: dict[str, ModelInsight] = {}
    for i, (label, model) in enumerate(models.items()):
        device = next(model.parameters()).device
        block = (cam_blocks or {}).get(label)
        out[label] = analyse(model, x.to(device), label, cam_block=block, **kwargs)
        yield i + 1, len(models), label
    normalise([r.activations for r in out.values()], normalisation)
    yield out
