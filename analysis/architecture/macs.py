"""Multiply-accumulates, counted one way for every caller: architecture graphs, the model list, the benchmark.

Convolutions (transposed ones too) and linear layers, counted on a weightless meta-device twin, so
counting costs no memory and never touches the model; the counts equal fvcore's and the authors'.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fishspine.models import Backbone


def block_macs(model: Backbone, input_size: int = 224) -> dict[str, int]:
    """Multiply-accumulates of convolutions and linear layers per block, for one square image.

    Layers outside every block (a classifier) are not counted.
    """
    owner: dict[str, str] = {}
    for b in model.blocks:
        for path in b.modules:
            owner[path] = b.name

    def block_of(module_path: str) -> str | None:
        parts = module_path.split(".")
        for i in range(len(parts), 0, -1):
            hit = owner.get(".".join(parts[:i]))
            if hit is not None:
                return hit
        return None

    return {b.name: 0 for b in model.blocks} | _count_macs(model, input_size, block_of)


def model_macs(model: nn.Module, input_size: int = 224) -> int:
    """Multiply-accumulates of every convolution and linear layer of any module (a classifier included)."""
    return sum(_count_macs(model, input_size, lambda _path: "all").values())


def _count_macs(model: nn.Module, input_size: int, owner_of: Callable[[str], str | None]) -> dict[str, int]:
    """MACs per owner of each convolution and linear layer (layers whose owner is None are skipped).

    Runs a weightless copy of the model on the meta device (no memory, nothing computed, the
    model itself untouched, so another thread may use it meanwhile); cheap for the largest
    variants.
    """
    twin = meta_twin(model)
    macs: dict[str, int] = {}

    def count(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            macs[name] = macs.get(name, 0) + _layer_macs(module, inputs[0], output)

        return hook

    handles = []
    try:
        for path, module in twin.named_modules():
            name = owner_of(path)
            if name is not None and isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
                handles.append(module.register_forward_hook(count(name)))
        with torch.no_grad():
            twin(torch.empty(1, 3, input_size, input_size, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return macs


def meta_twin(model: nn.Module) -> nn.Module:
    """A copy of `model` whose parameters and buffers are meta tensors, in eval mode, without hooks."""
    memo: dict[int, Any] = {}
    for t in [*model.parameters(), *model.buffers()]:
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, t.requires_grad) if isinstance(t, nn.Parameter) else meta
    twin = copy.deepcopy(model, memo)
    for m in twin.modules():  # copies of the user's hooks (an open capture) must not fire here
        for hooks in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks, m._backward_pre_hooks):
            hooks.clear()
    # Train-mode BN refuses 1x1 maps of one image, which small widths reach; eval changes no count.
    return twin.eval()


def _layer_macs(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    batch = x.shape[0] if x.dim() > 1 else 1
    if isinstance(module, nn.Linear):
        return y.numel() // batch * module.in_features
    per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
    if module.transposed:  # every input element is spread over out_channels/groups * kernel outputs
        return x.numel() // batch * (module.out_channels // module.groups) * math.prod(module.kernel_size)
    return y.numel() // batch * per_output


_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def format_count(value: float, unit: str) -> str:
    """`value` with an SI prefix and three significant digits: "4.11 GMACs", "18 MMACs", "512 MACs";
    a `unit` with a leading space keeps the prefix apart: " params" gives "25.6 M params"."""
    for scale, prefix in _PREFIXES:
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit.lstrip()}"
