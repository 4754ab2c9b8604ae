"""The backbone contract every model in the zoo implements.

A backbone describes itself as data: an ordered tuple of `BlockInfo` (stable name, role, scale
level, output channels, parents, the modules owning its weights). Each block's output passes
through a parameterless tap module (`nn.Identity`), so any block can be captured by the same
mechanism whatever the architecture, and the taps add no state_dict keys.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .registry import ModelSpec

ROLES = ("stem", "tail", "body", "head", "stage", "permuted", "output")


@dataclass(frozen=True)
class BlockInfo:
    """One block of a backbone, as the architecture diagram and the analyses see it.

    `level` is log2 of the block output's stride against the input. `modules` names the
    submodules (dotted paths) whose parameters belong to this block, for per-block parameter
    counts and weight-gradient norms. `kind` is a free-form architecture detail (e.g.
    "bottleneck", "transfer") shown in labels.
    """

    name: str
    role: str
    level: int
    channels: int
    parents: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    kind: str = ""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"block {self.name!r}: role {self.role!r} is not one of {ROLES}")


@dataclass
class Capture:
    """Block outputs (and their gradients, after a backward pass) recorded during a forward."""

    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    grads: dict[str, torch.Tensor] = field(default_factory=dict)


class Backbone(nn.Module):
    """Base class of every zoo model.

    Subclasses build their layers, call `_init_taps(blocks)` once with their block list, route
    every block output through `self._tap(name, x)` in `forward_features`, and set
    `feature_levels` (level -> channels of the multi-scale outputs).
    """

    #: Architecture family, e.g. "fishnet"; set by subclasses.
    family: str = ""
    #: Registered variant name, set by the registry when built through `create_model`.
    variant: str = ""
    #: Builder arguments as handed to the constructor (for checkpoints), set by the registry.
    config: dict
    #: The registered variant's facts (natural input size, output levels, ...), set by the registry.
    spec: ModelSpec

    def _init_taps(self, blocks: Iterable[BlockInfo]) -> None:
        blocks = tuple(blocks)
        names = [b.name for b in blocks]
        if len(set(names)) != len(names):
            raise ValueError(f"{type(self).__name__}: duplicate block names")
        known: set[str] = set()
        for b in blocks:
            missing = [p for p in b.parents if p not in known]
            if missing:
                raise ValueError(f"block {b.name!r} lists parents {missing} that do not come before it")
            known.add(b.name)
        self._blocks = blocks
        # Module names may not contain dots; block names may.
        self.taps = nn.ModuleDict({self._tap_key(n): nn.Identity() for n in names})

    @staticmethod
    def _tap_key(name: str) -> str:
        return name.replace(".", "__")

    def _tap(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return self.taps[self._tap_key(name)](x)

    def tap(self, name: str) -> nn.Module:
        """The parameterless module block `name`'s output passes through, for hooks (e.g. Grad-CAM)."""
        self.block(name)  # raises a KeyError naming the model on unknown names
        return self.taps[self._tap_key(name)]

    @property
    def blocks(self) -> tuple[BlockInfo, ...]:
        """Blocks in forward (depth) order."""
        return self._blocks

    def block(self, name: str) -> BlockInfo:
        """The block called `name`."""
        for b in self._blocks:
            if b.name == name:
                return b
        raise KeyError(f"{self.variant or type(self).__name__} has no block {name!r}")

    def block_parameters(self, name: str) -> list[nn.Parameter]:
        """Parameters owned by block `name` (through its `modules`)."""
        seen: dict[int, nn.Parameter] = {}
        for path in self.block(name).modules:
            for p in self.get_submodule(path).parameters():
                seen.setdefault(id(p), p)
        return list(seen.values())

    @property
    def feature_levels(self) -> dict[int, int]:
        """Level -> channels of the outputs of `forward_features`."""
        return self._feature_levels

    @property
    def has_classifier(self) -> bool:
        """Whether `forward` returns class logits (otherwise it returns the feature dict)."""
        return False

    def forward_features(self, x: torch.Tensor) -> dict[int, torch.Tensor]:  # pragma: no cover
        """The multi-scale outputs a detector consumes: level -> tensor."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor):
        return self.forward_features(x)

    @contextlib.contextmanager
    def capture(
        self, names: Iterable[str] | None = None, grads: bool = False, detach: bool = False
    ) -> Iterator[Capture]:
        """Record the outputs of blocks `names` (all blocks if None) during forwards inside the block.

        With `grads=True`, the gradient at each recorded output is stored by a backward pass run
        inside the block.
        With `detach=True` the stored outputs are detached (no graph kept alive by the capture).
        Every hook is removed on exit, also on error.
        """
        wanted = [b.name for b in self._blocks] if names is None else list(names)
        for n in wanted:
            self.block(n)  # raises on unknown names
        cap = Capture()
        handles: list = []
        grad_store = cap.grads  # closures hold the dict, not `cap`: no cycle through C++-held hooks

        def make_hook(block_name: str):
            def hook(_module, _inputs, output):
                if grads and output.requires_grad:

                    def store_grad(g, key=block_name):
                        grad_store[key] = g

                    handles.append(output.register_hook(store_grad))
                cap.outputs[block_name] = output.detach() if detach else output

            return hook

        try:
            for n in wanted:
                handles.append(self.taps[self._tap_key(n)].register_forward_hook(make_hook(n)))
            yield cap
        finally:
            for h in handles:
                h.remove()


def count_hooks(module: nn.Module) -> int:
    """Number of forward/backward hooks registered anywhere in `module`."""
    total = 0
    for m in module.modules():
        total += len(m._forward_hooks) + len(m._forward_pre_hooks)
        total += len(m._backward_hooks) + len(getattr(m, "_backward_pre_hooks", {}))
    return total


def check_block_shapes(model: Backbone, x: torch.Tensor) -> Mapping[str, tuple[int, ...]]:
    """Run `x` through `model` and return each block's output shape (for metadata checks)."""
    with torch.no_grad(), model.capture(detach=True) as cap:
        model.forward_features(x)
    return {n: tuple(t.shape) for n, t in cap.outputs.items()}
