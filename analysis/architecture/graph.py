"""Architecture graphs from block metadata alone, and their layouts.

Nodes carry each block's name, role, level, channels, parameters and MACs; edges are classified
by the levels and order of their ends as sequential, lateral (same level, not the next block),
down (to a coarser level) or up (to a finer level). The layout is chosen from the roles present,
never from the architecture's name (`LAYOUTS`, tried in order):

- scale-permuted (a `permuted` role: SpineNet): x is the block order, outputs in a last column;
- fish (`tail`, `body` and `head`: FishNet): the role segments follow each other along x and,
  inside a segment, every block sits as late as its consumers allow, so side branches (FishNet's
  transfer blocks) run beside the trunk they join and the tail-body-head curve draws the fish;
- staircase (`stage`, and the fallback: ResNet, SCNet): the same layering, a plain descent.

In every layout y is the scale level (log2 of the stride) and parents sit left of their children.
Positions, bands, stage groups and edge routes are plain data (`ArchitectureGraph`, `to_json`),
so the matplotlib figure and any other view draw the same diagram.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from fishspine.analysis.architecture.macs import block_macs
from fishspine.models import Backbone, BlockInfo

EDGE_KINDS = ("sequential", "lateral", "down", "up")
#: How the figure legend names each edge kind.
EDGE_KIND_LABELS = {
    "sequential": "sequential",
    "lateral": "lateral (same scale)",
    "down": "cross-scale down",
    "up": "cross-scale up",
}

Point = tuple[float, float]


@dataclass(frozen=True)
class GraphNode:
    """One block as the diagram draws it; `index` is its position in forward order."""

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


@dataclass(frozen=True)
class Band:
    """A labelled span of x (a role such as "tail", or a stage of a staircase)."""

    label: str
    x_start: float
    x_end: float


@dataclass(frozen=True)
class StageGroup:
    """Neighbouring blocks of one row that share a stage name: labelled once when single labels do not fit."""

    label: str
    level: int
    x_start: float
    x_end: float
    members: tuple[str, ...]


@dataclass
class ArchitectureGraph:
    """Nodes, edges and one layout: positions (name -> (x, y), y = scale level), bands and stage groups."""

    model: str
    layout: str
    input_size: int
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    positions: dict[str, Point]
    bands: list[Band] = field(default_factory=list)
    stages: list[StageGroup] = field(default_factory=list)

    def node(self, name: str) -> GraphNode:
        """The node called `name`."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"{self.model} has no block {name!r}")

    @property
    def levels(self) -> list[int]:
        """Every level from the finest to the coarsest block, gaps included."""
        present = [n.level for n in self.nodes]
        return list(range(min(present), max(present) + 1))

    def feature_size(self, level: int) -> int:
        """Side of a level's feature map for a square input of `input_size` (ceil, like strided convs)."""
        return math.ceil(self.input_size / 2**level)

    def route(self, edge: GraphEdge) -> tuple[Point, Point, Point, Point]:
        """The edge's path as cubic Bezier control points in layout coordinates."""
        return edge_route(self.positions, edge, self._rows())

    def _rows(self) -> dict[float, list[float]]:
        rows: dict[float, list[float]] = {}
        for x, y in self.positions.values():
            rows.setdefault(y, []).append(x)
        return rows

    def to_json(self) -> dict[str, Any]:
        """Plain data for JSON export (and for views that draw the diagram themselves)."""
        rows = self._rows()
        return {
            "model": self.model,
            "layout": self.layout,
            "input_size": self.input_size,
            "levels": [{"level": lvl, "stride": 2**lvl, "feature_size": self.feature_size(lvl)} for lvl in self.levels],
            "nodes": [asdict(n) | {"x": self.positions[n.name][0], "y": self.positions[n.name][1]} for n in self.nodes],
            "edges": [
                asdict(e) | {"route": [list(p) for p in edge_route(self.positions, e, rows)]} for e in self.edges
            ],
            "bands": [asdict(b) for b in self.bands],
            "stages": [asdict(s) | {"members": list(s.members)} for s in self.stages],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArchitectureGraph:
        """The graph `to_json` wrote."""
        node_fields = GraphNode.__dataclass_fields__
        nodes = [GraphNode(**{k: v for k, v in n.items() if k in node_fields}) for n in data["nodes"]]
        return cls(
            data["model"],
            data["layout"],
            int(data["input_size"]),
            nodes,
            [GraphEdge(e["source"], e["target"], e["kind"]) for e in data["edges"]],
            {n["name"]: (float(n["x"]), float(n["y"])) for n in data["nodes"]},
            [Band(**b) for b in data.get("bands", [])],
            [
                StageGroup(s["label"], s["level"], s["x_start"], s["x_end"], tuple(s["members"]))
                for s in data.get("stages", [])
            ],
        )

    def rows(self) -> list[dict[str, Any]]:
        """One row per node (CSV export)."""
        return [
            asdict(n)
            | {
                "x": self.positions[n.name][0],
                "y": self.positions[n.name][1],
                "parents": " ".join(e.source for e in self.edges if e.target == n.name),
            }
            for n in self.nodes
        ]


# ------------------------------------------------------------------------------------------ edges


def edge_kind(parent: GraphNode, child: GraphNode) -> str:
    """Classify a connection by the levels and order of its ends."""
    if child.level > parent.level:
        return "down"
    if child.level < parent.level:
        return "up"
    return "sequential" if child.index == parent.index + 1 else "lateral"


def edge_route(
    positions: Mapping[str, Point], edge: GraphEdge, rows: Mapping[float, Sequence[float]] | None = None
) -> tuple[Point, Point, Point, Point]:
    """Cubic Bezier control points of an edge in layout coordinates.

    Cross-scale edges are S-curves that leave and enter horizontally. Same-row edges are straight
    unless another block of the row lies between the ends; then they bridge over the row (under it
    for the coarsest row, where there is free space), higher for longer spans so parallel bridges
    stay apart. Bezier curves survive any axis scaling, so every view draws the same path.
    """
    (x0, y0), (x1, y1) = positions[edge.source], positions[edge.target]
    dx = x1 - x0
    if y0 != y1:
        k = dx / 2
        return (x0, y0), (x0 + k, y0), (x1 - k, y1), (x1, y1)
    if rows is None:
        rows = {}
        for x, y in positions.values():
            rows.setdefault(y, []).append(x)
    lo, hi = min(x0, x1), max(x0, x1)
    blocked = any(lo < x < hi for x in rows.get(y0, ()))
    if not blocked:
        return (x0, y0), (x0 + dx / 3, y0), (x1 - dx / 3, y1), (x1, y1)
    coarsest = max(rows)
    height = 0.26 + 0.14 * min(1.0, abs(dx) / 40)
    sign = 1.0 if y0 == coarsest else -1.0
    lift = sign * height / 0.75  # a cubic reaches 3/4 of its control points' offset
    rise = math.copysign(min(0.8, abs(dx) / 3), dx)
    return (x0, y0), (x0 + rise, y0 + lift), (x1 - rise, y1 + lift), (x1, y1)


# ---------------------------------------------------------------------------------------- layouts

Placer = Callable[[Sequence[GraphNode], Sequence[GraphEdge]], dict[str, Point]]


@dataclass(frozen=True)
class Layout:
    """A layout, chosen when all of `roles` are present.

    `band_of` names a node's band; with `stage_bands` a band whose blocks share a stage name
    (e.g. "layer3") is labelled by it.
    """

    name: str
    roles: frozenset[str]
    place: Placer
    band_of: Callable[[GraphNode], str]
    stage_bands: bool = False


#: Layouts by name, tried in this order by `choose_layout`; the last one is the fallback.
LAYOUTS: dict[str, Layout] = {}


def register_layout(
    name: str, roles: Iterable[str], band_of: Callable[[GraphNode], str], stage_bands: bool = False
) -> Callable[[Placer], Placer]:
    """Register a placement function as layout `name`, chosen for models having all of `roles`."""

    def decorator(place: Placer) -> Placer:
        if name in LAYOUTS:
            raise ValueError(f"layout {name!r} is registered twice")
        LAYOUTS[name] = Layout(name, frozenset(roles), place, band_of, stage_bands)
        return place

    return decorator


def choose_layout(roles: Iterable[str]) -> str:
    """The layout for a model with these block roles."""
    roles = set(roles)
    for layout in LAYOUTS.values():
        if layout.roles <= roles:
            return layout.name
    return next(reversed(LAYOUTS))


@register_layout("scale-permuted", {"permuted"}, band_of=lambda n: n.role)
def _scale_permuted(nodes: Sequence[GraphNode], edges: Sequence[GraphEdge]) -> dict[str, Point]:
    # The order is the searched permutation itself, so x keeps it; outputs share a last column.
    inner = [n for n in nodes if n.role != "output"]
    pos = {n.name: (float(i), float(n.level)) for i, n in enumerate(inner)}
    for n in nodes:
        if n.role == "output":
            pos[n.name] = (float(len(inner)), float(n.level))
    return pos


@register_layout("fish", {"tail", "body", "head"}, band_of=lambda n: n.role)
def _fish(nodes: Sequence[GraphNode], edges: Sequence[GraphEdge]) -> dict[str, Point]:
    return _layered_by_role(nodes, edges)


def _stride_band(n: GraphNode) -> str:
    return n.role if n.role == "stem" else f"stride {2**n.level}"


@register_layout("staircase", {"stage"}, band_of=_stride_band, stage_bands=True)
def _staircase(nodes: Sequence[GraphNode], edges: Sequence[GraphEdge]) -> dict[str, Point]:
    return _layered_by_role(nodes, edges)


def _layered_by_role(nodes: Sequence[GraphNode], edges: Sequence[GraphEdge]) -> dict[str, Point]:
    """Role segments one after the other; inside each, every block as late as its consumers allow.

    Placing late puts a side branch (a chain whose input comes from far back) right before the
    block that joins it, in parallel with the trunk, instead of at its own x far from both ends.
    Should two blocks of one level land in one column, the segment falls back to forward order.
    """
    children: dict[str, list[str]] = {n.name: [] for n in nodes}
    for e in edges:
        children[e.source].append(e.target)
    segments: list[list[GraphNode]] = []
    for n in nodes:
        if segments and segments[-1][-1].role == n.role:
            segments[-1].append(n)
        else:
            segments.append([n])
    pos: dict[str, Point] = {}
    start = 0
    for seg in segments:
        inside = {n.name for n in seg}
        to_end: dict[str, int] = {}
        for n in reversed(seg):  # forward order is topological, so consumers come first here
            kids = [to_end[c] for c in children[n.name] if c in inside]
            to_end[n.name] = 1 + max(kids) if kids else 0
        width = max(to_end.values())
        cols = {n.name: width - to_end[n.name] for n in seg}
        if len({(cols[n.name], n.level) for n in seg}) < len(seg):
            cols = {n.name: i for i, n in enumerate(seg)}
            width = len(seg) - 1
        for n in seg:
            pos[n.name] = (float(start + cols[n.name]), float(n.level))
        start += width + 1
    return pos


def _bands(nodes: Sequence[GraphNode], positions: Mapping[str, Point], layout: Layout) -> list[Band]:
    """Runs of nodes, in x order, with the same band key."""
    runs: list[tuple[str, list[GraphNode]]] = []
    for n in sorted(nodes, key=lambda n: (positions[n.name][0], n.index)):
        key = layout.band_of(n)
        if runs and runs[-1][0] == key:
            runs[-1][1].append(n)
        else:
            runs.append((key, [n]))
    bands = []
    for key, members in runs:
        xs = [positions[n.name][0] for n in members]
        stages = {_stage_name(n.name) for n in members}
        label = stages.pop() if layout.stage_bands and len(stages) == 1 else key
        bands.append(Band(label, min(xs), max(xs)))
    return bands


def _stage_name(name: str) -> str:
    """The stage a block belongs to, as its name says: the part before the first dot."""
    return name.split(".", 1)[0]


def _stage_groups(nodes: Sequence[GraphNode], positions: Mapping[str, Point]) -> list[StageGroup]:
    """Per row, neighbouring nodes (one column apart at most) with the same stage name."""
    by_row: dict[int, list[GraphNode]] = {}
    for n in nodes:
        by_row.setdefault(n.level, []).append(n)
    groups: list[StageGroup] = []
    for level in sorted(by_row):
        run: list[GraphNode] = []
        for n in sorted(by_row[level], key=lambda n: positions[n.name][0]):
            if run and (
                _stage_name(n.name) != _stage_name(run[-1].name)
                or positions[n.name][0] - positions[run[-1].name][0] > 1
            ):
                groups.append(_group(run, positions))
                run = []
            run.append(n)
        if run:
            groups.append(_group(run, positions))
    return sorted(groups, key=lambda g: (g.x_start, g.level))


def _group(run: list[GraphNode], positions: Mapping[str, Point]) -> StageGroup:
    label = run[0].name if len(run) == 1 else f"{_stage_name(run[0].name)} ×{len(run)}"
    return StageGroup(
        label, run[0].level, positions[run[0].name][0], positions[run[-1].name][0], tuple(n.name for n in run)
    )


def block_param_counts(model: Backbone) -> dict[str, int]:
    """Parameters owned by each block (a parameter shared by two blocks counts in both)."""
    return {b.name: sum(p.numel() for p in model.block_parameters(b.name)) for b in model.blocks}


# ------------------------------------------------------------------------------------- the graph


def graph_from_blocks(
    blocks: Sequence[BlockInfo],
    params: Mapping[str, int] | None = None,
    macs: Mapping[str, int] | None = None,
    model: str = "",
    input_size: int = 224,
    layout: str | None = None,
) -> ArchitectureGraph:
    """The graph of a block list, laid out by `layout` or by the layout its roles select."""
    params, macs = params or {}, macs or {}
    nodes = [
        GraphNode(b.name, b.role, b.level, b.channels, b.kind, int(params.get(b.name, 0)), int(macs.get(b.name, 0)), i)
        for i, b in enumerate(blocks)
    ]
    by_name = {n.name: n for n in nodes}
    edges = [GraphEdge(p, b.name, edge_kind(by_name[p], by_name[b.name])) for b in blocks for p in b.parents]
    chosen = layout or choose_layout({n.role for n in nodes})
    if chosen not in LAYOUTS:
        raise ValueError(f"unknown layout {chosen!r}; use one of {', '.join(LAYOUTS)}")
    spec = LAYOUTS[chosen]
    positions = spec.place(nodes, edges)
    return ArchitectureGraph(
        model,
        chosen,
        input_size,
        nodes,
        edges,
        positions,
        _bands(nodes, positions, spec),
        _stage_groups(nodes, positions),
    )


def architecture_graph(
    model: Backbone, input_size: int = 224, layout: str | None = None, with_macs: bool = True
) -> ArchitectureGraph:
    """The model's block graph with parameters and MACs (at `input_size`²) per block, laid out for its kind."""
    macs = block_macs(model, input_size) if with_macs else {}
    return graph_from_blocks(
        model.blocks, block_param_counts(model), macs, model.variant or type(model).__name__, input_size, layout
    )
