"""Architecture graphs from block metadata alone, and their layouts.

Nodes carry each block's name, role, level, channels, parameters and MACs; edges are classified
as sequential, lateral (same level, not the previous block), down (to a coarser level) or up (to a
finer level). The layout is chosen from the roles present, never from the architecture's name:
scale-permuted (roles stem/permuted/output: SpineNet), fish (tail/body/head: FishNet) or staircase
(stem/stage: ResNet, SCNet). In every layout x is the forward order and y the scale level, so the
diagram reads as the network moves through resolutions; the layouts differ in grouping and bands.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from fishspine.models import Backbone, create_model

EDGE_KINDS = ("sequential", "lateral", "down", "up")


@dataclass(frozen=True)
class GraphNode:
    """One block as the diagram draws it."""

    name: str
    role: str
    level: int
    channels: int
    kind: str
    params: int
    macs: int
    index: int


@dataclass(frozen=True)
class GraphEdge:
    """A parent -> child connection and its kind (one of EDGE_KINDS)."""

    source: str
    target: str
    kind: str


@dataclass
class ArchitectureGraph:
    """Nodes, edges and one layout's positions (name -> (x, y), y = scale level)."""

    model: str
    layout: str
    input_size: int
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    positions: dict[str, tuple[float, float]]
    groups: list[tuple[str, float, float]] = field(default_factory=list)  # (label, x_start, x_end)

    def node(self, name: str) -> GraphNode:
        """The node called `name`."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """Plain data for JSON export."""
        return {"model": self.model, "layout": self.layout, "input_size": self.input_size,
                "nodes": [asdict(n) | {"x": self.positions[n.name][0], "y": self.positions[n.name][1]}
                          for n in self.nodes],
                "edges": [asdict(e) for e in self.edges],
                "groups": [{"label": g, "x_start": a, "x_end": b} for g, a, b in self.groups]}

    def rows(self) -> list[dict[str, Any]]:
        """One row per node (CSV export)."""
        return [asdict(n) | {"x": self.positions[n.name][0], "y": self.positions[n.name][1],
                             "parents": " ".join(e.source for e in self.edges if e.target == n.name)}
                for n in self.nodes]


def edge_kind(parent: GraphNode, child: GraphNode) -> str:
    """Classify a connection by the levels and order of its ends."""
    if child.level > parent.level:
        return "down"
    if child.level < parent.level:
        return "up"
    return "sequential" if child.index == parent.index + 1 else "lateral"


def block_macs(model: Backbone, input_size: int = 224) -> dict[str, int]:
    """Multiply-accumulates of convolutions and linear layers per block for one image.

    Runs a twin of the model on the meta device (no memory, no weights touched), so it is cheap
    for the largest variants; every hook is removed afterwards.
    """
    with torch.device("meta"):
        twin = create_model(model.variant, **model.config) if model.variant else None
    if twin is None:
        raise ValueError("block_macs needs a model built with create_model")
    twin.eval()  # train-mode BN refuses 1x1 maps of one image, which small widths reach
    owner: dict[str, str] = {}
    for b in twin.blocks:
        for path in b.modules:
            owner[path] = b.name
    macs: dict[str, int] = {b.name: 0 for b in twin.blocks}

    def block_of(module_path: str) -> str | None:
        parts = module_path.split(".")
        for i in range(len(parts), 0, -1):
            hit = owner.get(".".join(parts[:i]))
            if hit:
                return hit
        return None

    handles = []
    for path, m in twin.named_modules():
        name = block_of(path)
        if name is None or not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue

        def hook(mod, _inp, out, name=name):
            if isinstance(mod, nn.Conv2d):
                per_out = (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
                macs[name] += int(out[0].numel() * per_out)
            else:
                macs[name] += int(out[0].numel() * mod.in_features)
        handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            twin(torch.empty(1, 3, input_size, input_size, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return macs


def _staircase(nodes: list[GraphNode]) -> tuple[dict[str, tuple[float, float]], list[tuple[str, float, float]]]:
    pos = {n.name: (float(n.index), float(n.level)) for n in nodes}
    return pos, _groups_by(nodes, lambda n: f"stride {2 ** n.level}" if n.role != "stem" else "stem")


def _fish(nodes: list[GraphNode]) -> tuple[dict[str, tuple[float, float]], list[tuple[str, float, float]]]:
    pos = {n.name: (float(n.index), float(n.level)) for n in nodes}
    return pos, _groups_by(nodes, lambda n: n.role)


def _scale_permuted(nodes: list[GraphNode]) -> tuple[dict[str, tuple[float, float]], list[tuple[str, float, float]]]:
    # Outputs sit in one column after the last block, each at its level.
    inner = [n for n in nodes if n.role != "output"]
    pos = {n.name: (float(i), float(n.level)) for i, n in enumerate(inner)}
    x_out = float(len(inner)) + 0.5
    for n in nodes:
        if n.role == "output":
            pos[n.name] = (x_out, float(n.level))
    return pos, _groups_by(nodes, lambda n: n.role, positions=pos)


def _groups_by(nodes: list[GraphNode], key: Callable[[GraphNode], str],
               positions: dict[str, tuple[float, float]] | None = None) -> list[tuple[str, float, float]]:
    groups: list[tuple[str, float, float]] = []
    for n in nodes:
        x = positions[n.name][0] if positions else float(n.index)
        label = key(n)
        if groups and groups[-1][0] == label:
            groups[-1] = (label, groups[-1][1], x)
        else:
            groups.append((label, x, x))
    return groups


#: Layouts keyed by the roles that select them, tried in order.
LAYOUTS: list[tuple[str, Callable[[set[str]], bool], Callable]] = [
    ("scale-permuted", lambda roles: "permuted" in roles, _scale_permuted),
    ("fish", lambda roles: {"tail", "body", "head"} <= roles, _fish),
    ("staircase", lambda roles: True, _staircase),
]


def choose_layout(roles: set[str]) -> str:
    """The layout for a model with these block roles."""
    return next(name for name, matches, _ in LAYOUTS if matches(roles))


def architecture_graph(model: Backbone, input_size: int = 224, layout: str | None = None,
                       with_macs: bool = True) -> ArchitectureGraph:
    """The model's block graph with parameters and MACs per block, laid out for its kind."""
    macs = block_macs(model, input_size) if with_macs else {}
    nodes = [GraphNode(b.name, b.role, b.level, b.channels, b.kind,
                       sum(p.numel() for p in model.block_parameters(b.name)), macs.get(b.name, 0), i)
             for i, b in enumerate(model.blocks)]
    by_name = {n.name: n for n in nodes}
    edges = [GraphEdge(p, b.name, edge_kind(by_name[p], by_name[b.name])) for b in model.blocks for p in b.parents]
    chosen = layout or choose_layout({n.role for n in nodes})
    fn = next((f for name, _, f in LAYOUTS if name == chosen), None)
    if fn is None:
        raise ValueError(f"unknown layout {chosen!r}; use one of {', '.join(n for n, _, _ in LAYOUTS)}")
    positions, groups = fn(nodes)
    return ArchitectureGraph(model.variant or type(model).__name__, chosen, input_size, nodes, edges, positions, groups)
