"""The inside of one block (analysis/architecture/interior.py) as a matplotlib figure.

Columns are depth from the block's inputs, rows scale levels as in the block diagram (finest on
top), so a pooled branch dips down rows and comes back up where it is upsampled. Each operation is
a box naming it and its output shape; down-sampling operations are blue, up-sampling ones orange
(the block diagram's cross-scale colours), with the factor written in the box.
"""

from __future__ import annotations

import math

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from fishspine.analysis.architecture.interior import BlockInterior, Operation
from fishspine.analysis.figures.architecture import EDGE_STYLE
from fishspine.analysis.figures.base import new_figure, style_context

COLUMN_IN = 0.95  # inches per depth column
ROW_IN = 1.0  # inches per scale level
FONT = 5.0
#: Box colours: (face, edge) per sort of operation.
OP_COLORS = {
    "input": ("#e0e0e0", "#555555"),
    "output": ("#555555", "#222222"),
    "down": ("#cfe3f3", EDGE_STYLE["down"][0]),
    "up": ("#f7dcc8", EDGE_STYLE["up"][0]),
    "weights": ("#ffffff", "#4d4d4d"),
    "op": ("#f4f4f4", "#9a9a9a"),
}


def op_style(o: Operation) -> str:
    """Which OP_COLORS entry draws `o`."""
    if o.kind != "op":
        return o.kind
    if o.resample < 1:
        return "down"
    if o.resample > 1:
        return "up"
    return "weights" if o.params else "op"


def op_text(o: Operation) -> str:
    """The text in an operation's box: its label, its resampling factor, its output shape."""
    label = o.label
    if o.resample < 1:
        label += f"  ↓{1 / o.resample:.3g}"
    elif o.resample > 1:
        label += f"  ↑{o.resample:.3g}"
    return f"{label}\n{'×'.join(map(str, o.shape))}"


def interior_figure(interior: BlockInterior) -> Figure:
    """Every operation of the block as a box at (depth, scale level), data flow as arrows."""
    xs = [p[0] for p in interior.positions.values()]
    ys = [p[1] for p in interior.positions.values()]
    levels = sorted({round(o.level) for o in interior.operations if math.isfinite(o.level)})
    n_cols = max(xs) - min(xs) + 1
    top, bottom = min(ys) - 0.5, max(ys) + 0.5
    fig = new_figure(max(4.0, n_cols * COLUMN_IN + 1.0), max(2.0, (bottom - top) * ROW_IN + 0.9))
    with style_context():
        ax = fig.add_subplot()
        ax.grid(False)
        ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
        ax.set_ylim(bottom, top)
        for i, lvl in enumerate(range(levels[0], levels[-1] + 1)):
            ax.axhspan(lvl - 0.5, lvl + 0.5, color=("#f0f0f0", "#ffffff")[i % 2], zorder=0, lw=0)
        size = interior.input_size
        rows = list(range(levels[0], levels[-1] + 1))  # a level a branch skips is still named
        ax.set_yticks(rows, [f"1/{2**lvl}\n{math.ceil(size / 2**lvl)}²" for lvl in rows])
        ax.tick_params(axis="y", length=0, pad=4)
        ax.set_ylabel(f"resolution at {size}² input")
        ax.set_xticks([])
        for side in ("bottom", "left"):
            ax.spines[side].set_visible(False)
        ax.set_xlabel("data flow →")
        texts = {}
        for o in interior.operations:
            face, edge = OP_COLORS[op_style(o)]
            x, y = interior.positions[o.id]
            texts[o.id] = ax.text(
                x,
                y,
                op_text(o),
                ha="center",
                va="center",
                fontsize=FONT,
                color="white" if o.kind == "output" else "#111111",
                zorder=3,
                bbox={"boxstyle": "round,pad=0.3", "fc": face, "ec": edge, "lw": 0.6},
            )
        for f in interior.flows:
            (x0, y0), (x1, y1) = interior.positions[f.source], interior.positions[f.target]
            style = "down" if y1 > y0 + 0.5 else "up" if y1 < y0 - 0.5 else "sequential"
            color = EDGE_STYLE[style][0]
            ax.add_patch(
                FancyArrowPatch(
                    (x0, y0),
                    (x1, y1),
                    patchA=texts[f.source].get_bbox_patch(),
                    patchB=texts[f.target].get_bbox_patch(),
                    arrowstyle="-|>",
                    mutation_scale=5,
                    color=color,
                    lw=0.6,
                    # Long same-row flows (a shortcut) arc over the boxes between their ends.
                    connectionstyle=f"arc3,rad={-min(0.12, 0.4 / (x1 - x0)) if x1 - x0 > 1 else 0.0}"
                    if abs(y1 - y0) < 0.5
                    else "angle3,angleA=0,angleB=90",
                    zorder=2,
                )
            )
        ax.set_title(
            f"{interior.model} · inside {interior.block}: {len(interior.operations) - 1} operations traced",
            loc="left",
        )
    return fig
