"""The backbone zoo: exact FishNet, SCNet, SpineNet and ResNet baselines behind one contract."""

from .backbone import Backbone, BlockInfo, Capture, count_hooks
from .registry import (
    ModelSpec,
    create_model,
    list_families,
    list_models,
    list_specs,
    model_family,
    model_spec,
    register_model,
)

__all__ = [
    "Backbone",
    "BlockInfo",
    "Capture",
    "ModelSpec",
    "count_hooks",
    "create_model",
    "list_families",
    "list_models",
    "list_specs",
    "model_family",
    "model_spec",
    "register_model",
]
