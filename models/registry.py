"""The model registry: variants are small builders registered by name."""

from __future__ import annotations

import inspect
from typing import Callable

from .backbone import Backbone

_builders: dict[str, Callable[..., Backbone]] = {}
_families: dict[str, str] = {}


def register_model(family: str) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    """Register a builder under its function name, in architecture `family`; duplicates raise."""

    def decorator(builder: Callable[..., Backbone]) -> Callable[..., Backbone]:
        name = builder.__name__
        if name in _builders:
            raise ValueError(f"model {name!r} is registered twice")
        _builders[name] = builder
        _families[name] = family
        return builder

    return decorator


def _ensure_zoo_loaded() -> None:
    # Importing the architecture modules runs their @register_model decorators.
    from . import fishnet, resnet, scnet, spinenet  # noqa: F401


def list_models(family: str | None = None) -> list[str]:
    """Registered variant names, sorted; only those of `family` if given."""
    _ensure_zoo_loaded()
    return sorted(n for n in _builders if family is None or _families[n] == family)


def model_family(name: str) -> str:
    """The architecture family of a registered variant."""
    _ensure_zoo_loaded()
    if name not in _families:
        raise KeyError(_unknown(name))
    return _families[name]


def _unknown(name: str) -> str:
    return f"unknown model {name!r}; known models: {', '.join(list_models())}"


def create_model(name: str, **kwargs) -> Backbone:
    """Build variant `name`; keyword arguments (num_classes, width, ...) go to its builder."""
    _ensure_zoo_loaded()
    if name not in _builders:
        raise KeyError(_unknown(name))
    builder = _builders[name]
    accepted = inspect.signature(builder).parameters
    has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    unexpected = [k for k in kwargs if k not in accepted and not has_var_kw]
    if unexpected:
        raise TypeError(f"model {name!r} does not take {unexpected}; it takes {list(accepted)}")
    model = builder(**kwargs)
    model.variant = name
    model.family = _families[name]
    bound = inspect.signature(builder).bind(**kwargs)
    bound.apply_defaults()
    model.config = dict(bound.arguments)
    return model
