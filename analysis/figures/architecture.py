"""Architecture diagrams rendered with matplotlib: vector figures sized from the layout, legible up
to FishNet-201 and SpineNet-190.

Rows are scale levels (finest on top, labelled 1/stride and the feature-map side at the graph's
input size), columns the layout's x. Edges are the layout's Bezier routes, coloured by kind;
nodes are coloured by role or by any per-block number, sized by channels. Every node is named
when the names fit side by side; otherwise each stage's run of blocks is named once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.bezier import inside_circle, split_path_inout
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch
from matplotlib.path import Path
from matplotlib.textpath import TextToPath
from matplotlib.transforms import Bbox, blended_transform_factory

from fishspine.analysis.architecture.graph import EDGE_KIND_LABELS, EDGE_KINDS, ArchitectureGraph
from fishspine.analysis.architecture.macs import format_count
from fishspine.analysis.figures.base import new_figure, style_context

#: Node colour per role (Okabe-Ito, the house palette).
ROLE_COLORS = {
    "stem": "#7f7f7f",
    "tail": "#0072B2",
    "body": "#009E73",
    "head": "#D55E00",
    "stage": "#0072B2",
    "permuted": "#56B4E9",
    "output": "#D55E00",
}
#: Edge colour and line width per kind.
EDGE_STYLE = {
    "sequential": ("#4d4d4d", 0.7),
    "lateral": ("#009E73", 0.9),
    "down": ("#0072B2", 0.9),
    "up": ("#D55E00", 0.9),
}
BAND_SHADES = ("#f0f0f0", "#ffffff")
NO_VALUE_COLOR = "#ffffff"
LABEL_MODES = ("auto", "nodes", "groups", "none")

NODE_FONT = 5.5
GROUP_FONT = 6.0
ROW_IN = 0.62  # inches per scale level
_TEXT = TextToPath()


def column_width(n_columns: int) -> float:
    """Inches per layout column: roomy for small graphs, narrower (down to 0.2 in) for large ones."""
    return min(0.36, max(0.2, 8.0 / max(n_columns, 1)))


def figure_size(graph: ArchitectureGraph, with_colorbar: bool = False) -> tuple[float, float]:
    """Figure width and height in inches for `graph`: they grow with its columns and levels."""
    xs = [p[0] for p in graph.positions.values()]
    n_columns = max(xs) - min(xs) + 1
    top, bottom = y_limits(graph)
    plot_w = (n_columns + 1.6) * column_width(n_columns)
    plot_h = (bottom - top) * ROW_IN
    width = max(5.0, plot_w + 0.8 + 1.9)  # + y axis, + legend
    height = plot_h + 0.95 + (0.55 if with_colorbar else 0.0)  # + title and band names, + colour bar
    return width, height


def y_limits(graph: ArchitectureGraph) -> tuple[float, float]:
    """The finest and coarsest y the axes show: the rows, room for names, and every edge's bulge."""
    ys = np.concatenate([_bezier_points(graph.route(e), 24)[:, 1] for e in graph.edges]) if graph.edges else np.zeros(0)
    levels = graph.levels
    top = min([levels[0] - 0.45, *(ys - 0.15)])
    bottom = max([levels[-1] + 0.5, *(ys + 0.15)])
    return float(top), float(bottom)


def graph_figure(
    graph: ArchitectureGraph,
    values: Mapping[str, float] | None = None,
    value_label: str = "",
    cmap: str = "viridis",
    log_values: bool = False,
    labels: str = "auto",
) -> Figure:
    """The diagram of `graph`; with `values` (block name -> number) nodes are coloured by it.

    `labels`: "nodes" names every block, "groups" each stage's run of blocks, "auto" the first
    when the names fit, "none" nothing. With `log_values`, values <= 0 count as missing.
    """
    if labels not in LABEL_MODES:
        raise ValueError(f"labels must be one of {LABEL_MODES}, not {labels!r}")
    fig = new_figure(*figure_size(graph, with_colorbar=values is not None))
    xs = [p[0] for p in graph.positions.values()]
    n_columns = max(xs) - min(xs) + 1
    col_pt = column_width(n_columns) * 72
    radius = _node_radii(graph, max_diameter=min(11.0, 0.72 * col_pt))
    with style_context():
        ax = fig.add_subplot()
        mappable, has_missing = _draw_panel(ax, graph, radius, values, cmap, log_values)
        handles = _legend_handles(graph, radius, values is None, has_missing, log_values)
        _legend_and_colour_bar(fig, ax, ax, handles, mappable, value_label)
        if labels != "none":
            fig.draw_without_rendering()  # fixes the layout, so label extents can be measured
            _draw_labels(ax, graph, radius, labels)
    return fig


def _legend_and_colour_bar(fig, legend_ax, bar_axes, handles: list, mappable, label: str) -> None:
    """The legend right of `legend_ax` and, when the nodes are coloured by a number, its colour bar below."""
    legend_ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        borderaxespad=0.0,
        handlelength=1.8,
        labelspacing=0.7,
    )
    if mappable is not None:
        cb = fig.colorbar(mappable, ax=bar_axes, location="bottom", shrink=0.35, aspect=30, pad=0.02)
        cb.set_label(label)
        cb.ax.tick_params(labelsize=6)


def graphs_figure(
    graphs: Sequence[ArchitectureGraph],
    values: Sequence[Mapping[str, float] | None] | None = None,
    value_label: str = "",
    cmap: str = "viridis",
    log_values: bool = False,
    labels: str = "auto",
) -> Figure:
    """Several diagrams side by side, one panel each, as the app's columns; with `values` (one
    mapping per graph, None for a graph without numbers) every panel is coloured on ONE scale,
    the range of all of them, and one colour bar under the panels says it."""
    if labels not in LABEL_MODES:
        raise ValueError(f"labels must be one of {LABEL_MODES}, not {labels!r}")
    if values is not None and len(values) != len(graphs):
        raise ValueError(f"{len(values)} value mappings for {len(graphs)} graphs")
    legend_in = 1.9
    sizes = [figure_size(g, with_colorbar=values is not None) for g in graphs]
    panel_w = [w - legend_in for w, _h in sizes]
    fig = new_figure(sum(panel_w) + legend_in, max(h for _w, h in sizes))
    panel_values = [None] * len(graphs) if values is None else [v or {} for v in values]
    value_range = _shared_range(panel_values, log_values) if values is not None else None
    with style_context():
        axes = fig.subplots(1, len(graphs), squeeze=False, width_ratios=panel_w)[0]
        radii, mappable, has_missing = [], None, False
        for ax, graph, vals in zip(axes, graphs, panel_values):
            xs = [p[0] for p in graph.positions.values()]
            col_pt = column_width(max(xs) - min(xs) + 1) * 72
            radius = _node_radii(graph, max_diameter=min(11.0, 0.72 * col_pt))
            radii.append(radius)
            m, missing = _draw_panel(ax, graph, radius, vals, cmap, log_values, value_range)
            mappable, has_missing = mappable or m, has_missing or missing
        last = axes[-1]
        handles = _legend_handles(graphs[-1], radii[-1], values is None, has_missing, log_values)
        if values is None:  # every panel's roles, not only the last one's
            roles = dict.fromkeys(n.role for g in graphs for n in g.nodes)
            known = {h.get_label() for h in handles}
            handles += [
                Line2D([], [], ls="", marker="o", color=ROLE_COLORS.get(r, "#333333"), label=r)
                for r in roles
                if r not in known
            ]
        label = f"{value_label}, one scale for every panel" if value_label else "one scale for every panel"
        _legend_and_colour_bar(fig, last, list(axes), handles, mappable, label)
        if labels != "none":
            fig.draw_without_rendering()
            for ax, graph, radius in zip(axes, graphs, radii):
                _draw_labels(ax, graph, radius, labels)
    return fig


def _shared_range(values: Sequence[Mapping[str, float] | None], log_values: bool) -> tuple[float, float] | None:
    """The smallest and largest usable value over every mapping (one colour scale for all panels)."""
    usable = [u for v in values if v for x in v.values() if (u := _usable(x, log_values)) is not None]
    if not usable:
        return None
    lo, hi = min(usable), max(usable)
    if lo == hi:
        lo, hi = (lo / 2, hi * 2) if log_values else (lo - 0.5, hi + 0.5)
    return lo, hi


def _draw_panel(
    ax,
    graph: ArchitectureGraph,
    radius: Mapping[str, float],
    values: Mapping[str, float] | None,
    cmap: str,
    log_values: bool,
    value_range: tuple[float, float] | None = None,
):
    """One diagram in `ax`: rows, bands, edges, nodes and title; returns what `_draw_nodes` does."""
    ax.grid(False)
    xs = [p[0] for p in graph.positions.values()]
    levels = graph.levels
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    top, bottom = y_limits(graph)
    ax.set_ylim(bottom, top)  # fine resolutions on top
    for lvl in levels:
        ax.axhline(lvl, color="#e3e3e3", lw=0.5, zorder=0.5)
    ax.set_yticks(levels, [f"1/{2**lvl}\n{graph.feature_size(lvl)}²" for lvl in levels])
    ax.tick_params(axis="y", length=0, pad=4)
    ax.set_ylabel(f"resolution: 1/stride, feature side at {graph.input_size}² input")
    ax.set_xticks([])
    ax.spines["bottom"].set_visible(False)
    ax.spines["left"].set_visible(False)
    ax.set_xlabel("forward order →")
    _draw_bands(ax, graph)
    _draw_edges(ax, graph, radius)
    result = _draw_nodes(ax, graph, radius, values, cmap, log_values, value_range)
    ax.set_title(_title(graph), loc="left", pad=16)
    return result


def _title(graph: ArchitectureGraph) -> str:
    params = sum(n.params for n in graph.nodes)
    macs = sum(n.macs for n in graph.nodes)
    facts = [f"{len(graph.nodes)} blocks", format_count(params, " parameters in blocks")]
    if macs:
        facts.append(f"{format_count(macs, 'MACs')} at {graph.input_size}²")
    return f"{graph.model}, {graph.layout} layout\n" + ", ".join(facts)


def _node_radii(graph: ArchitectureGraph, max_diameter: float) -> dict[str, float]:
    """Marker radius in points per node; area grows with channels."""
    widest = max(n.channels for n in graph.nodes) or 1
    min_diameter = 0.42 * max_diameter
    return {
        n.name: (min_diameter + (max_diameter - min_diameter) * math.sqrt(max(n.channels, 0) / widest)) / 2
        for n in graph.nodes
    }


def _draw_bands(ax, graph: ArchitectureGraph) -> None:
    above = blended_transform_factory(ax.transData, ax.transAxes)
    for i, band in enumerate(graph.bands):
        ax.axvspan(band.x_start - 0.5, band.x_end + 0.5, color=BAND_SHADES[i % 2], zorder=0, lw=0)
        ax.text(
            (band.x_start + band.x_end) / 2,
            1.005,
            band.label,
            transform=above,
            ha="center",
            va="bottom",
            fontsize=7,
            color="#333333",
        )


class _BezierConnector:
    """Draws an edge along its route (layout coordinates), shortened to leave the markers free."""

    def __init__(self, route, transform) -> None:
        self.route = route
        self.transform = transform

    def __call__(self, posA, posB, shrinkA=2.0, shrinkB=2.0, patchA=None, patchB=None) -> Path:
        verts = self.transform.transform(self.route)
        path = Path(verts, [Path.MOVETO, Path.CURVE4, Path.CURVE4, Path.CURVE4])
        for end, shrink in ((0, shrinkA), (-1, shrinkB)):
            if not shrink:
                continue
            try:
                head, tail = split_path_inout(path, inside_circle(*verts[end], shrink))
                path = tail if end == 0 else head
            except ValueError:  # the whole edge lies inside the marker: draw it unshortened
                pass
        return path


def _draw_edges(ax, graph: ArchitectureGraph, radius: Mapping[str, float]) -> None:
    # Cross-scale and lateral edges over sequential ones: they carry the architecture's story.
    order = {k: i for i, k in enumerate(EDGE_KINDS)}
    for e in sorted(graph.edges, key=lambda e: order[e.kind]):
        color, lw = EDGE_STYLE[e.kind]
        arrow = FancyArrowPatch(
            graph.positions[e.source],
            graph.positions[e.target],
            connectionstyle=_BezierConnector(graph.route(e), ax.transData),
            arrowstyle="-|>",
            mutation_scale=5.5,
            lw=lw,
            color=color,
            alpha=0.9,
            zorder=1 + order[e.kind] * 0.1,
            shrinkA=radius[e.source] + 0.5,
            shrinkB=radius[e.target] + 0.8,
            joinstyle="round",
            capstyle="round",
        )
        ax.add_patch(arrow)


def _draw_nodes(
    ax,
    graph: ArchitectureGraph,
    radius: Mapping[str, float],
    values: Mapping[str, float] | None,
    cmap: str,
    log_values: bool,
    value_range: tuple[float, float] | None = None,
):
    """Scatter the nodes, coloured on `value_range` if given (else their own range); returns (the
    colour mappable or None, whether some node has no value)."""
    xy = [graph.positions[n.name] for n in graph.nodes]
    sizes = [(2 * radius[n.name]) ** 2 for n in graph.nodes]
    if values is None:
        ax.scatter(
            *zip(*xy),
            s=sizes,
            c=[ROLE_COLORS.get(n.role, "#333333") for n in graph.nodes],
            edgecolors="white",
            linewidths=0.6,
            zorder=3,
        )
        return None, False
    vals = [_usable(values.get(n.name), log_values) for n in graph.nodes]
    known = [i for i, v in enumerate(vals) if v is not None]
    missing = [i for i, v in enumerate(vals) if v is None]
    if missing:
        ax.scatter(
            [xy[i][0] for i in missing],
            [xy[i][1] for i in missing],
            s=[sizes[i] for i in missing],
            c=NO_VALUE_COLOR,
            edgecolors="#777777",
            linewidths=0.6,
            zorder=3,
        )
    if not known:
        return None, True
    lo, hi = value_range or (min(vals[i] for i in known), max(vals[i] for i in known))
    if lo == hi:  # one value: a colour bar still needs a range
        lo, hi = (lo / 2, hi * 2) if log_values else (lo - 0.5, hi + 0.5)
    norm = mpl.colors.LogNorm(lo, hi) if log_values else mpl.colors.Normalize(lo, hi)
    sc = ax.scatter(
        [xy[i][0] for i in known],
        [xy[i][1] for i in known],
        s=[sizes[i] for i in known],
        c=[vals[i] for i in known],
        cmap=cmap,
        norm=norm,
        edgecolors="#333333",
        linewidths=0.4,
        zorder=3,
    )
    return sc, bool(missing)


def _usable(value: float | None, log_values: bool) -> float | None:
    if value is None or not math.isfinite(value) or (log_values and value <= 0):
        return None
    return float(value)


def _legend_handles(
    graph: ArchitectureGraph, radius: Mapping[str, float], by_role: bool, has_missing: bool, log_values: bool
) -> list:
    kinds = {e.kind for e in graph.edges}
    handles: list = [
        Line2D([], [], color=EDGE_STYLE[k][0], lw=1.4, label=EDGE_KIND_LABELS[k]) for k in EDGE_KINDS if k in kinds
    ]
    if by_role:
        for role in dict.fromkeys(n.role for n in graph.nodes):
            handles.append(
                Line2D(
                    [],
                    [],
                    marker="o",
                    ls="",
                    markersize=6,
                    markeredgecolor="white",
                    color=ROLE_COLORS.get(role, "#333333"),
                    label=role,
                )
            )
    if has_missing:
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                ls="",
                markersize=6,
                markerfacecolor=NO_VALUE_COLOR,
                markeredgecolor="#777777",
                label="no value" + (" or ≤ 0" if log_values else ""),
            )
        )
    # Marker size is channels: show the narrowest and the widest block.
    narrow = min(graph.nodes, key=lambda n: n.channels)
    wide = max(graph.nodes, key=lambda n: n.channels)
    for n in dict.fromkeys((narrow, wide)):
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                ls="",
                color="#bbbbbb",
                markeredgecolor="white",
                markersize=2 * radius[n.name],
                label=f"{n.channels} channels",
            )
        )
    return handles


# ------------------------------------------------------------------------------------------- labels


def _text_size(text: str, fontsize: float) -> tuple[float, float]:
    """Width and height of `text` in points."""
    w, h, d = _TEXT.get_text_width_height_descent(text, FontProperties(size=fontsize), ismath=False)
    return w, h + d


def _bezier_points(route, n: int) -> np.ndarray:
    """`n` points along a cubic Bezier given by its four control points."""
    p = np.asarray(route, dtype=float)
    t = np.linspace(0.0, 1.0, n)[:, None]
    return ((1 - t) ** 3) * p[0] + 3 * ((1 - t) ** 2) * t * p[1] + 3 * (1 - t) * t**2 * p[2] + t**3 * p[3]


def _draw_labels(ax, graph: ArchitectureGraph, radius: Mapping[str, float], mode: str) -> None:
    """Name every node if the names fit (or `mode` says so), else each stage group.

    Each name goes under its node(s), or over them when fewer edges cross there; a name that would
    overlap another name or a marker is left out (in "auto" mode one such node name switches to
    group names).
    """
    px_per_pt = ax.figure.dpi / 72
    to_px = ax.transData.transform
    markers = []
    for n in graph.nodes:
        cx, cy = to_px(graph.positions[n.name])
        r = radius[n.name] * px_per_pt
        markers.append(Bbox([[cx - r, cy - r], [cx + r, cy + r]]))
    edge_px = (
        np.concatenate(
            [
                to_px(
                    _bezier_points(
                        graph.route(e), 12 + 4 * int(abs(graph.positions[e.target][0] - graph.positions[e.source][0]))
                    )
                )
                for e in graph.edges
            ]
        )
        if graph.edges
        else np.zeros((0, 2))
    )

    def crossings(box: Bbox) -> int:
        inside = (
            (edge_px[:, 0] > box.x0) & (edge_px[:, 0] < box.x1) & (edge_px[:, 1] > box.y0) & (edge_px[:, 1] < box.y1)
        )
        return int(np.count_nonzero(inside))

    def place(names: Sequence[str], text: str, fontsize: float, kept: list[Bbox]) -> tuple[Bbox, float] | None:
        """The clear spot (box, signed offset in points) under or over `names`, fewest crossings first."""
        xs = [graph.positions[k][0] for k in names]
        (left, cy), (right, _) = to_px((min(xs), graph.positions[names[0]][1])), to_px((max(xs), 0))
        w, h = (v * px_per_pt for v in _text_size(text, fontsize))
        gap_pt = max(radius[k] for k in names) + 1.5
        mid, g = (left + right) / 2, gap_pt * px_per_pt
        below = Bbox([[mid - w / 2, cy - g - h], [mid + w / 2, cy - g]])
        above = Bbox([[mid - w / 2, cy + g], [mid + w / 2, cy + g + h]])
        for box, offset in sorted(((below, -gap_pt), (above, gap_pt)), key=lambda c: crossings(c[0])):
            if _clear(box, kept, markers, pad=2.5 * px_per_pt):
                return box, offset
        return None

    def draw(names: Sequence[str], text: str, fontsize: float, offset: float) -> None:
        xs = [graph.positions[k][0] for k in names]
        t = ax.annotate(
            text,
            ((min(xs) + max(xs)) / 2, graph.positions[names[0]][1]),
            xytext=(0, offset),
            textcoords="offset points",
            ha="center",
            va="top" if offset < 0 else "bottom",
            fontsize=fontsize,
            color="#222222",
            zorder=4,
            # A light backing keeps a name readable where an edge passes under it (a
            # stroke halo would turn the text into outlines in SVG and PDF).
            bbox={"boxstyle": "square,pad=0.08", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
        )
        t.set_in_layout(False)  # placed after the layout was fixed; must not move it

    if mode in ("auto", "nodes"):
        kept: list[Bbox] = []
        spots = []
        for n in graph.nodes:
            spot = place([n.name], n.name, NODE_FONT, kept)
            if spot is None:
                if mode == "auto":
                    break
                spots.append((n.name, -(radius[n.name] + 1.5)))  # asked for every name: under it
                continue
            kept.append(spot[0])
            spots.append((n.name, spot[1]))
        else:
            for name, offset in spots:
                draw([name], name, NODE_FONT, offset)
            return
    band_spans = {(b.label, b.x_start, b.x_end) for b in graph.bands}
    kept = []
    # Longer runs first: they name the most blocks.
    for g in sorted(graph.stages, key=lambda g: (-len(g.members), g.x_start, g.level)):
        if (g.members[0].split(".", 1)[0], g.x_start, g.x_end) in band_spans:
            continue  # the band above already names exactly these blocks
        spot = place(g.members, g.label, GROUP_FONT, kept)
        if spot is not None:
            kept.append(spot[0])
            draw(g.members, g.label, GROUP_FONT, spot[1])


def _clear(box: Bbox, kept: list[Bbox], markers: list[Bbox], pad: float) -> bool:
    """`box` overlaps no marker, and keeps `pad` (pixels) from every kept label."""
    spaced = Bbox([[box.x0 - pad, box.y0], [box.x1 + pad, box.y1]])
    inner = Bbox([[box.x0 + 0.5, box.y0 + 0.5], [box.x1 - 0.5, box.y1 - 0.5]])
    return not any(spaced.overlaps(o) for o in kept) and not any(inner.overlaps(o) for o in markers)
