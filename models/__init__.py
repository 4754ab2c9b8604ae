"""The backbone zoo: exact FishNet, SCNet, SpineNet and ResNet baselines behind one contract.

The names are imported on first use (PEP 562), so a torch-free submodule (atomic_files) does not
pay for torch: `fishspine coco` refuses a bad file before torch would have loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Backbone": ".backbone",
    "BlockInfo": ".backbone",
    "Capture": ".backbone",
    "count_hooks": ".backbone",
    "ModelSpec": ".registry",
    "create_model": ".registry",
    "list_families": ".registry",
    "list_models": ".registry",
    "list_specs": ".registry",
    "model_family": ".registry",
    "model_spec": ".registry",
    "register_model": ".registry",
}

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

if TYPE_CHECKING:  # pragma: no cover
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value
