"""What a CAM's target is called: ImageNet's class names for a 1,000-class classifier, a detector's
category names when its checkpoint gives them, and why there is no class for a bare backbone.

torchvision's list of ImageNet categories ships with torchvision (no download); it is imported the
first time a name is asked for, never when the app starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

IMAGENET_CLASSES = 1000
NO_CLASSIFIER = "no classifier: CAM of the feature energy"


@cache
def imagenet_categories() -> tuple[str, ...]:
    """ImageNet-1k's 1,000 class names in the order of a classifier's logits (torchvision's list)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return tuple(_IMAGENET_CATEGORIES)


def classifier_classes(model: Any) -> int | None:
    """How many classes `model` (a fishspine Backbone) scores, or None when it has no classifier."""
    import torch

    if not getattr(model, "has_classifier", False):
        return None
    last = None
    for module in model.modules():  # the classifier is the last linear layer (or 1x1 convolution)
        if isinstance(module, torch.nn.Linear):
            last = module.out_features
        elif isinstance(module, torch.nn.Conv2d) and module.kernel_size == (1, 1):
            last = module.out_channels
    return last


def class_names(num_classes: int | None, categories: Sequence[str] = ()) -> tuple[str, ...]:
    """The names of a model's classes: `categories` when they are given for every class (a detector's
    checkpoint), ImageNet's for 1,000 classes, else none (the box shows the index alone)."""
    if num_classes is None:
        return ()
    if categories and len(categories) == num_classes:
        return tuple(categories)
    if num_classes == IMAGENET_CLASSES:
        return imagenet_categories()
    return ()


def class_label(index: int | None, names: Sequence[str] = (), has_classifier: bool = True) -> str:
    """A CAM target as a reader wants it: "class 281 · tabby", "class 3", or why there is no class."""
    if not has_classifier:
        return NO_CLASSIFIER
    if index is None:
        return "top class"
    if 0 <= index < len(names):
        return f"class {index} · {names[index]}"
    return f"class {index}"
