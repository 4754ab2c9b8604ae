"""The backbone zoo: exact FishNet, SCNet, SpineNet and ResNet baselines behind one contract."""

from .backbone import Backbone, BlockInfo, Capture, count_hooks
from .registry import create_model, list_models, model_family, register_model

__all__ = [
    "Backbone",
    "BlockInfo",
    "Capture",
    "count_hooks",
    "create_model",
    "list_models",
    "model_family",
    "register_model",
]
