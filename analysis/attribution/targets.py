"""What a gradient is taken of: a class score, or, for a backbone without a classifier, feature energy.

Feature energy is the mean squared activation of each multi-scale output, summed over levels: a
scalar that grows with how strongly the backbone responds, so its gradient shows what drives the
features a detector would consume.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fishspine.models import Backbone


def feature_energy(features: dict[int, torch.Tensor]) -> torch.Tensor:
    """Per-image feature energy, shape (N,)."""
    return sum(f.float().pow(2).mean(dim=(1, 2, 3)) for f in features.values())


def objective(
    model: Backbone, x: torch.Tensor, class_index: int | None = None, loss: str = "score"
) -> tuple[torch.Tensor, int | None]:
    """Run `model` on `x` and return (scalar to backpropagate, class used or None).

    With a classifier: the logit of `class_index` (the top prediction when None), or with
    loss="cross_entropy" the cross-entropy of that class (negated so its gradient is the
    direction that raises the class, like the logit's). Without one: feature energy.
    """
    return target_of(model(x), class_index, loss)


def target_of(
    out: torch.Tensor | dict[int, torch.Tensor], class_index: int | None = None, loss: str = "score"
) -> tuple[torch.Tensor, int | None]:
    """`objective` for an output already computed (logits, or the feature dict)."""
    if not torch.is_tensor(out):
        return feature_energy(out).sum(), None
    logits = out.float()
    if class_index is None:
        class_index = int(logits[0].argmax())
    if not 0 <= class_index < logits.shape[1]:
        raise ValueError(f"class {class_index} is out of range: the model has {logits.shape[1]} classes")
    if loss == "cross_entropy":
        target = torch.full((logits.shape[0],), class_index, dtype=torch.long, device=logits.device)
        return -F.cross_entropy(logits, target, reduction="sum"), class_index
    return logits[:, class_index].sum(), class_index
