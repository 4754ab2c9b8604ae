"""Architecture diagrams rendered with matplotlib: clean vector figures, legible up to SpineNet-190."""

from __future__ import annotations

import math
from typing import Mapping

import matplotlib as mpl
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from .figures import new_figure, style_context
from .graph import ArchitectureGraph

ROLE_COLORS = {"stem": "#7f7f7f", "tail": "#0072B2", "body": "#009E73", "head": "#D55E00",
               "stage": "#0072B2", "permuted": "#56B4E9", "output": "#D55E00"}
EDGE_STYLE = {"sequential": ("#555555", 0.0, "-"), "lateral": ("#009E73", 0.25, "-"),
              "down": ("#0072B2", 0.2, "-"), "up": ("#D55E00", -0.2, "-")}
GROUP_SHADES = ("#f2f2f2", "#ffffff")
MAX_NODE_LABELS = 40


def graph_figure(graph: ArchitectureGraph, values: Mapping[str, float] | None = None,
                 value_label: str = "", cmap: str = "viridis", log_values: bool = False) -> Figure:
    """The diagram of `graph`; with `values` (block name -> number) nodes are coloured by it."""
    xs = [p[0] for p in graph.positions.values()]
    levels = sorted({n.level for n in graph.nodes})
    width = min(24.0, max(6.0, 0.16 * (max(xs) - min(xs) + 1) + 2.5))
    height = max(3.0, 0.55 * len(levels) + 1.8)
    fig = new_figure(width, height)
    with style_context():
        ax = fig.add_subplot()
        ax.grid(False)
        _draw_groups(ax, graph, levels)
        _draw_edges(ax, graph)
        sc = _draw_nodes(ax, graph, values, cmap, log_values)
        _draw_labels(ax, graph)
        ax.set_yticks(levels, [f"1/{2 ** lvl}" for lvl in levels])
        ax.set_ylabel("resolution (1/stride)")
        ax.set_ylim(max(levels) + 0.9, min(levels) - 0.9)  # fine resolutions on top
        ax.set_xlim(min(xs) - 1, max(xs) + 1)
        ax.set_xticks([])
        ax.spines["bottom"].set_visible(False)
        ax.set_xlabel("blocks in forward order →")
        total_params = sum(n.params for n in graph.nodes)
        total_macs = sum(n.macs for n in graph.nodes)
        ax.set_title(f"{graph.model} ({graph.layout} layout)\n{len(graph.nodes)} blocks, "
                     f"{total_params / 1e6:.2f} M params in blocks, {total_macs / 1e9:.2f} GMACs at {graph.input_size}²")
        handles = [mpl.lines.Line2D([], [], color=c, lw=1.5, label=k) for k, (c, _, _) in EDGE_STYLE.items()
                   if any(e.kind == k for e in graph.edges)]
        if values is None:
            roles = list(dict.fromkeys(n.role for n in graph.nodes))
            handles += [mpl.lines.Line2D([], [], marker="o", ls="", color=ROLE_COLORS.get(r, "#333"), label=r)
                        for r in roles]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        if values is not None and sc is not None:
            cb = fig.colorbar(sc, ax=ax, fraction=0.04, pad=0.02, location="bottom", aspect=50, shrink=0.5)
            cb.set_label(value_label)
    return fig


def _draw_groups(ax, graph: ArchitectureGraph, levels: list[int]) -> None:
    for i, (label, x0, x1) in enumerate(graph.groups):
        ax.axvspan(x0 - 0.5, x1 + 0.5, color=GROUP_SHADES[i % 2], zorder=0, lw=0)
        ax.text((x0 + x1) / 2, min(levels) - 0.75, label, ha="center", va="bottom", fontsize=7, color="#444")


def _draw_edges(ax, graph: ArchitectureGraph) -> None:
    for e in graph.edges:
        (x0, y0), (x1, y1) = graph.positions[e.source], graph.positions[e.target]
        color, rad, ls = EDGE_STYLE[e.kind]
        # Long edges curve less, so their arcs stay inside the axes.
        rad = 0.0 if e.kind == "sequential" else rad * min(1.0, 6.0 / max(abs(x1 - x0), 1.0))
        arrow = FancyArrowPatch((x0, y0), (x1, y1), connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>",
                                mutation_scale=6, lw=0.7 if e.kind == "sequential" else 0.9, color=color,
                                alpha=0.85, linestyle=ls, zorder=1, shrinkA=3, shrinkB=3)
        ax.add_patch(arrow)


def _draw_nodes(ax, graph: ArchitectureGraph, values, cmap: str, log_values: bool):
    xs = [graph.positions[n.name][0] for n in graph.nodes]
    ys = [graph.positions[n.name][1] for n in graph.nodes]
    max_ch = max(n.channels for n in graph.nodes)
    sizes = [18 + 70 * math.sqrt(n.channels / max_ch) for n in graph.nodes]
    if values is None:
        colors = [ROLE_COLORS.get(n.role, "#333333") for n in graph.nodes]
        ax.scatter(xs, ys, s=sizes, c=colors, edgecolors="white", linewidths=0.6, zorder=3)
        return None
    vals = [values.get(n.name, float("nan")) for n in graph.nodes]
    norm = mpl.colors.LogNorm() if log_values else None
    return ax.scatter(xs, ys, s=sizes, c=vals, cmap=cmap, norm=norm, edgecolors="#333", linewidths=0.4, zorder=3,
                      plotnonfinite=True)


def _draw_labels(ax, graph: ArchitectureGraph) -> None:
    if len(graph.nodes) > MAX_NODE_LABELS:
        return  # the group bands name the parts; hover/click in the app names single blocks
    for n in graph.nodes:
        x, y = graph.positions[n.name]
        ax.annotate(n.name, (x, y), xytext=(0, -9), textcoords="offset points", ha="center", va="top",
                    fontsize=5.5, rotation=45, color="#222", zorder=4)
