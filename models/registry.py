"""The model registry: variants are small builders registered by name, each with its facts as data.

A builder's facts (family, natural input size, output levels, classifier, keyword arguments) live
in a `ModelSpec` made where the builder is registered (after timm's `pretrained_cfg` and
torchvision's `Weights.meta`), so callers ask the registry or the built model instead of testing
a family name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .backbone import Backbone

#: The input size of ImageNet-trained classifiers; detection backbones state their own.
CLASSIFIER_INPUT_SIZE = 224


@dataclass(frozen=True)
class ModelSpec:
    """What a registered variant is, known without building it.

    `input_size` is the square input side the variant is meant for (its training resolution).
    `output_levels` are the levels (log2 stride) of the outputs of `forward_features`.
    `num_classes` is the builder's default class count, None for a backbone without classifier.
    `builder_args` are the builder's keyword arguments with their defaults, in signature order
    (pairs, not a dict, so a spec stays immutable and models carrying it deep-copy and pickle).
    """

    name: str
    family: str
    input_size: int
    output_levels: tuple[int, ...]
    num_classes: int | None
    builder_args: tuple[tuple[str, Any], ...] = ()

    @property
    def has_classifier(self) -> bool:
        """Whether the variant, built with its defaults, ends in a classifier."""
        return bool(self.num_classes)

    @property
    def arguments(self) -> tuple[str, ...]:
        """The keyword arguments the builder accepts."""
        return tuple(name for name, _ in self.builder_args)

    @property
    def defaults(self) -> dict[str, Any]:
        """Each keyword argument the builder accepts -> its default (a fresh dict)."""
        return dict(self.builder_args)


_specs: dict[str, ModelSpec] = {}
_builders: dict[str, Callable[..., Backbone]] = {}


def register_model(
    family: str, *, output_levels: Iterable[int], input_size: int = CLASSIFIER_INPUT_SIZE
) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    """Register a builder under its function name, in architecture `family`; duplicates raise.

    The builder's keyword arguments and their defaults (num_classes among them where the variant
    has a classifier) are read from its signature, so they are stated once, in the builder.
    """

    def decorator(builder: Callable[..., Backbone]) -> Callable[..., Backbone]:
        name = builder.__name__
        if name in _builders:
            raise ValueError(f"model {name!r} is registered twice")
        params = inspect.signature(builder).parameters.values()
        positional = [p.name for p in params if p.default is inspect.Parameter.empty]
        if positional:
            # create_model passes keywords only, so every argument needs a default.
            raise TypeError(f"builder {name!r}: arguments {positional} have no default")
        defaults = {p.name: p.default for p in params}
        _builders[name] = builder
        _specs[name] = ModelSpec(
            name, family, input_size, tuple(output_levels), defaults.get("num_classes") or None, tuple(defaults.items())
        )
        return builder

    return decorator


def _ensure_zoo_loaded() -> None:
    # Importing the architecture modules runs their @register_model decorators.
    from . import fishnet, resnet, scnet, spinenet  # noqa: F401


def list_models(family: str | None = None) -> list[str]:
    """Registered variant names, sorted; only those of `family` if given."""
    _ensure_zoo_loaded()
    return sorted(n for n, s in _specs.items() if family is None or s.family == family)


def list_families() -> list[str]:
    """The architecture families of the registered variants, sorted."""
    _ensure_zoo_loaded()
    return sorted({s.family for s in _specs.values()})


def list_specs(family: str | None = None) -> list[ModelSpec]:
    """The specs of the registered variants, sorted by name; only those of `family` if given."""
    return [_specs[n] for n in list_models(family)]


def model_spec(name: str) -> ModelSpec:
    """The facts of registered variant `name`."""
    _ensure_zoo_loaded()
    if name not in _specs:
        raise KeyError(_unknown(name))
    return _specs[name]


def model_family(name: str) -> str:
    """The architecture family of a registered variant."""
    return model_spec(name).family


def _unknown(name: str) -> str:
    return f"unknown model {name!r}; known models: {', '.join(list_models())}"


def create_model(name: str, **kwargs) -> Backbone:
    """Build variant `name` with its spec's defaults, overridden by `kwargs` (num_classes, width, ...)."""
    spec = model_spec(name)
    unexpected = [k for k in kwargs if k not in spec.defaults]
    if unexpected:
        raise TypeError(f"model {name!r} does not take {unexpected}; it takes {list(spec.arguments)}")
    config = spec.defaults | kwargs
    model = _builders[name](**config)
    model.variant = name
    model.family = spec.family
    model.spec = spec
    model.config = config
    return model
