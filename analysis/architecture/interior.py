"""What is inside one block: the operations that compute its output from its parents' outputs.

Traced, never drawn by hand: a weightless meta-device twin of the model runs one forward while
every leaf module call (a convolution, a norm, an `nn.AvgPool2d`) and every tensor function
called outside a leaf module (`F.avg_pool2d`, `F.interpolate`, `torch.sigmoid`, `+`, `*`, `cat`,
channel slices) is recorded with its module path (its place in the nn.Module tree), its output
shape, and the operations whose outputs it reads. A block's interior is then every operation on
a path from its parents' outputs (or the image, for a stem) to its own output, so whatever the
architecture does in there shows: SCNet's pooled calibration branch and sigmoid gate, FishNet's
upsampling and channel-sum shortcut, SpineNet's resampling.

Each operation also carries its scale level (log2 of its output's stride against the image) and
its resampling factor against its first input, so a layout can put rows at levels exactly as the
block diagram does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from fishspine.analysis.architecture.macs import format_count, meta_twin
from fishspine.models import Backbone

Point = tuple[float, float]

#: Leaf-module attributes worth naming in an operation's label, in this order.
_ATTRS = ("kernel_size", "stride", "dilation", "groups", "scale_factor", "output_size")


@dataclass(frozen=True)
class Operation:
    """One recorded call: `op` is the function or module class, `module` its path in the model."""

    id: int
    op: str
    label: str
    module: str
    shape: tuple[int, ...]
    level: float
    resample: float  # output side / first input side: 0.25 is a 4x down-sampling, 2 an up-sampling
    kind: str  # "input" (a parent's output or the image), "output" (the block's own), "op"
    params: int


@dataclass(frozen=True)
class Flow:
    """Data passing from one operation to another."""

    source: int
    target: int


@dataclass
class BlockInterior:
    """The operations inside one block, their data flow, and a layout (x = depth, y = scale level)."""

    model: str
    block: str
    input_size: int
    operations: list[Operation]
    flows: list[Flow]
    positions: dict[int, Point] = field(default_factory=dict)

    def operation(self, op_id: int) -> Operation:
        """The operation with this id."""
        for o in self.operations:
            if o.id == op_id:
                return o
        raise KeyError(op_id)

    @property
    def resamplings(self) -> list[Operation]:
        """Operations whose output is smaller or larger than their input (pools, strides, upsampling)."""
        return [o for o in self.operations if o.kind == "op" and o.resample != 1.0]

    def rows(self) -> list[dict[str, Any]]:
        """One row per operation (CSV export)."""
        return [
            asdict(o)
            | {
                "shape": "x".join(map(str, o.shape)),
                "x": self.positions[o.id][0],
                "y": self.positions[o.id][1],
                "inputs": " ".join(str(f.source) for f in self.flows if f.target == o.id),
            }
            for o in self.operations
        ]

    def to_json(self) -> dict[str, Any]:
        """Plain data for JSON export."""
        return {
            "model": self.model,
            "block": self.block,
            "input_size": self.input_size,
            "operations": [
                asdict(o) | {"x": self.positions[o.id][0], "y": self.positions[o.id][1]} for o in self.operations
            ],
            "flows": [asdict(f) for f in self.flows],
        }


# ------------------------------------------------------------------------------------ tracing


@dataclass
class _Call:
    op: str
    label: str
    module: str
    shape: tuple[int, ...]
    inputs: list[int]
    in_side: int | None
    params: int
    tap: str = ""


class _Recorder(TorchFunctionMode):
    """Records tensor functions called outside leaf modules; leaf modules are recorded by hooks."""

    def __init__(self, trace: _Trace) -> None:
        super().__init__()
        self.trace = trace

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.trace.inside_leaf == 0:
            self.trace.record_function(func, args, kwargs, out)
        return out


class _Trace:
    """The calls of one forward, linked by the identity of the tensors they pass on."""

    def __init__(self, twin: nn.Module, taps: Mapping[int, str]) -> None:
        self.calls: list[_Call] = []
        self.producer: dict[int, int] = {}  # id(tensor) -> index of the call that made it
        self.alive: list[torch.Tensor] = []  # keeps ids unique while the trace runs (meta tensors cost nothing)
        self.inside_leaf = 0
        self.stack: list[str] = []
        self.paths = {id(m): p for p, m in twin.named_modules()}
        self.taps = taps  # id(tap module) -> block name

    def _tensors(self, obj: Any) -> list[torch.Tensor]:
        if isinstance(obj, torch.Tensor):
            return [obj]
        if isinstance(obj, (list, tuple)):
            return [t for o in obj for t in self._tensors(o)]
        if isinstance(obj, dict):
            return [t for o in obj.values() for t in self._tensors(o)]
        return []

    def _add(self, call: _Call, outputs: list[torch.Tensor], ins: list[torch.Tensor]) -> None:
        call.inputs = list(dict.fromkeys(self.producer[id(t)] for t in ins if id(t) in self.producer))
        index = len(self.calls)
        self.calls.append(call)
        for t in outputs:
            self.producer[id(t)] = index
            self.alive.append(t)

    def record_input(self, x: torch.Tensor) -> None:
        self._add(_Call("image", "image", "", tuple(x.shape[1:]), [], None, 0), [x], [])

    def record_function(self, func, args, kwargs, out) -> None:
        outputs = self._tensors(out)
        ins = self._tensors(args) + self._tensors(kwargs)
        if not outputs or not ins or not any(t.dim() >= 3 for t in outputs):
            return  # shapes, sizes and scalars are not data flow
        name = getattr(func, "__name__", str(func)).strip("_")
        label = _function_label(name, args, kwargs)
        self._add(
            _Call(name, label, self.stack[-1] if self.stack else "", tuple(outputs[0].shape[1:]), [], _side(ins[0]), 0),
            outputs,
            ins,
        )

    def pre(self, module: nn.Module, args) -> None:
        self.stack.append(self.paths.get(id(module), ""))
        if not any(True for _ in module.children()):
            self.inside_leaf += 1

    def post(self, module: nn.Module, args, out) -> None:
        self.stack.pop()
        if any(True for _ in module.children()):
            return
        self.inside_leaf -= 1
        outputs, ins = self._tensors(out), self._tensors(args)
        if not outputs or not ins:
            return
        if isinstance(module, nn.Identity) and id(module) not in self.taps:
            return  # a pass-through (an absent shortcut or avd): the tensor keeps its producer
        tap = self.taps.get(id(module), "")
        path = self.paths.get(id(module), "")
        params = sum(p.numel() for p in module.parameters(recurse=False))
        op = type(module).__name__
        call = _Call(
            op, tap or _module_label(module), path, tuple(outputs[0].shape[1:]), [], _side(ins[0]), params, tap
        )
        self._add(call, outputs, ins)


def _side(t: torch.Tensor) -> int | None:
    return int(t.shape[-1]) if t.dim() >= 3 else None


def _short(v: Any) -> str:
    if isinstance(v, tuple) and len(set(v)) == 1:
        return str(v[0])
    return str(v)


def _module_label(module: nn.Module) -> str:
    """ "Conv2d 3x3 /2 32→64"-style: the class and what sets its shape."""
    name = type(module).__name__
    parts = [name]
    if isinstance(module, nn.modules.conv._ConvNd):
        k = module.kernel_size
        parts.append(f"{k[0]}x{k[1]}" if len(k) == 2 else _short(k))
        if max(module.stride) > 1:
            parts.append(f"/{_short(module.stride)}")
        if max(module.dilation) > 1:
            parts.append(f"d{_short(module.dilation)}")
        parts.append(f"{module.in_channels}→{module.out_channels}")
        return " ".join(parts)
    for attr in _ATTRS:
        v = getattr(module, attr, None)
        if v is not None and v != 1 and v != (1, 1):
            parts.append(f"{attr.split('_')[0]}={_short(v)}")
    return " ".join(parts)


def _function_label(name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """The function and its non-tensor arguments, briefly: "avg_pool2d (4, 4) (4, 4)"."""
    names = {"add": "+", "mul": "×", "getitem": "slice", "cat": "concat"}
    extras = [_short(a) for a in args if not isinstance(a, (torch.Tensor, list, tuple)) or _is_shape(a)]
    # Flags (inplace, antialias) and target sizes (the output shape says them) are left out.
    extras += [
        f"{k}={_short(v)}"
        for k, v in kwargs.items()
        if not isinstance(v, (torch.Tensor, bool)) and v is not None and k != "size"
    ]
    if name == "getitem":
        key = args[1] if len(args) > 1 else None
        if isinstance(key, tuple) and len(key) > 1 and isinstance(key[1], slice) and key[1].step:
            return f"channels {key[1].start or 0}::{key[1].step}"
        return "slice"
    label = names.get(name, name)
    if "pool" in name and len(extras) >= 1:  # (input, kernel_size, stride, ...)
        extras = [f"k={extras[0]}"] + ([f"s={extras[1]}"] if len(extras) > 1 else [])
    extras = [e for e in extras if e not in ("True", "False", "None")][:3]
    return f"{label} {' '.join(extras)}".strip()


def _is_shape(a: Any) -> bool:
    return isinstance(a, (tuple, list)) and all(isinstance(v, int) for v in a)


def trace_calls(model: Backbone, input_size: int) -> list[_Call]:
    """Every recorded call of one forward of a meta twin of `model` on a square image."""
    twin = meta_twin(model)
    taps = {id(twin.tap(b.name)): b.name for b in model.blocks}
    trace = _Trace(twin, taps)
    handles = []
    try:
        for m in twin.modules():
            handles.append(m.register_forward_pre_hook(trace.pre))
            handles.append(m.register_forward_hook(trace.post))
        x = torch.empty(1, 3, input_size, input_size, device="meta")
        trace.record_input(x)
        with torch.no_grad(), _Recorder(trace):
            twin.forward_features(x)
    finally:
        for h in handles:
            h.remove()
    return trace.calls


def block_interior(model: Backbone, block: str, input_size: int | None = None) -> BlockInterior:
    """The operations inside `block`: every call on a path from its parents' outputs to its output."""
    info = model.block(block)
    size = input_size or model.spec.input_size
    calls = trace_calls(model, size)
    taps = [i for i, c in enumerate(calls) if c.tap == block]
    if not taps:
        raise ValueError(f"block {block!r} of {model.variant or type(model).__name__} did not run in forward_features")
    end = taps[-1]
    # Walk back from the block's output; any block output (a parent's) or the image is an entry.
    inside: set[int] = set()
    entries: set[int] = set()
    todo = list(calls[end].inputs)
    while todo:
        i = todo.pop()
        if i in inside or i in entries:
            continue
        if calls[i].tap or calls[i].op == "image":
            entries.add(i)
            continue
        inside.add(i)
        todo.extend(calls[i].inputs)
    keep = sorted(inside | entries | {end})
    operations = []
    for i in keep:
        c = calls[i]
        kind = "output" if i == end else "input" if i in entries else "op"
        side = c.shape[-1] if len(c.shape) >= 2 else None
        level = math.log2(size / side) if side else float("nan")
        resample = side / c.in_side if (side and c.in_side and kind == "op") else 1.0
        label = c.label if kind == "op" else (c.tap or "image")
        operations.append(Operation(i, c.op, label, c.module, c.shape, level, resample, kind, c.params))
    flows = [Flow(s, t) for t in keep if t not in entries for s in calls[t].inputs if s in inside | entries]
    interior = BlockInterior(model.variant or type(model).__name__, info.name, size, operations, flows)
    interior.positions = layered_positions(operations, flows)
    return interior


# ------------------------------------------------------------------------------------ layout


def layered_positions(operations: Sequence[Operation], flows: Sequence[Flow]) -> dict[int, Point]:
    """x: depth, every operation as late as its consumers allow (so a shortcut's own operations sit
    just before the sum they feed, beside the main path); entries in the first column. y: the scale
    level, operations sharing a cell spread inside its row."""
    children: dict[int, list[int]] = {o.id: [] for o in operations}
    for f in flows:
        children[f.source].append(f.target)
    to_end: dict[int, int] = {}
    for o in reversed(operations):  # ids follow call order, a topological order
        to_end[o.id] = 1 + max((to_end[c] for c in children[o.id]), default=-1)
    width = max(to_end.values(), default=0)
    depth = {o.id: 0 if o.kind == "input" else width - to_end[o.id] for o in operations}
    cells: dict[tuple[int, float], list[int]] = {}
    for o in operations:
        cells.setdefault((depth[o.id], _row(o)), []).append(o.id)
    pos: dict[int, Point] = {}
    for (x, y), ids in cells.items():
        n = len(ids)
        for j, i in enumerate(ids):
            pos[i] = (float(x), y + (j - (n - 1) / 2) * min(0.3, 0.8 / n))
    return pos


def _row(o: Operation) -> float:
    return round(o.level) if math.isfinite(o.level) else 0.0


def describe(o: Operation) -> str:
    """One line about an operation: label, output shape, resampling, parameters (SI prefixes)."""
    text = f"{o.label} · {'x'.join(map(str, o.shape))}"
    if o.resample < 1:
        text += f" · ↓{1 / o.resample:.3g}"
    elif o.resample > 1:
        text += f" · ↑{o.resample:.3g}"
    if o.params:
        text += f" · {format_count(o.params, ' params')}"
    if o.module:
        text += f" · {o.module}"
    return text
