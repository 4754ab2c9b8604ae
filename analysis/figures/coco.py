"""Figures of the COCO per-scale evaluation: size bars with deltas, PR curves per size range,
per-class x per-size heat map, and the table itself."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from fishspine.analysis.coco.evaluation import CocoEvaluation, per_scale_table
from fishspine.analysis.figures.base import model_color, new_figure, style_context

SIZES = (("small", "AP_S"), ("medium", "AP_M"), ("large", "AP_L"))


def size_bars_figure(evals: Mapping[str, CocoEvaluation], baseline: str | None = None) -> Figure:
    """AP_S / AP_M / AP_L per backbone, grouped by size, deltas against the baseline above the bars."""
    rows = per_scale_table(evals, baseline)
    fig = new_figure(5.5, 3.3)
    with style_context():
        ax = fig.add_subplot()
        n = len(rows)
        width = 0.8 / max(n, 1)
        for j, r in enumerate(rows):
            xs = np.arange(len(SIZES)) + (j - (n - 1) / 2) * width
            vals = [r[key] for _, key in SIZES]
            bars = ax.bar(
                xs, [0 if math.isnan(v) else v for v in vals], width * 0.92, color=model_color(j), label=r["backbone"]
            )
            for bar, (_, key) in zip(bars, SIZES):
                d = r.get(f"Δ{key}")
                text = f"{r[key]:.1f}" if d is None or math.isnan(d) else f"{d:+.1f}"
                ax.annotate(
                    text,
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=6,
                )
        ax.set_xticks(range(len(SIZES)), [f"{s}\n{k}" for s, k in SIZES])
        ax.set_ylabel("AP (%)")
        first = next(iter(evals.values()))
        title = f"COCO {first.iou_type} AP by object size"
        if baseline:
            title += f" (labels: Δ against {baseline})"
        ax.set_title(title)
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def pr_curves_figure(evals: Mapping[str, CocoEvaluation], iou: float | None = 0.5) -> Figure:
    """Precision-recall per size range (one panel each), backbones overlaid, classes averaged."""
    areas = list(next(iter(evals.values())).area_ranges)
    fig = new_figure(2.4 * len(areas), 2.8)
    with style_context():
        axes = fig.subplots(1, len(areas), sharey=True)
        for ax, area in zip(np.atleast_1d(axes), areas):
            for j, (name, ev) in enumerate(evals.items()):
                rec, prec = ev.pr_curve(area, iou)
                ap = ev.average_precision(area, iou=iou)
                ax.plot(rec, prec, color=model_color(j), label=f"{name} ({100 * ap:.1f})")
            ax.set_title(area)
            ax.set_xlabel("recall")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.legend(frameon=False, fontsize=5.5, loc="lower left")
        np.atleast_1d(axes)[0].set_ylabel("precision")
        fig.suptitle(
            f"Precision-recall per size range, IoU {'0.50:0.95' if iou is None else f'{iou:.2f}'} (AP in the legend)",
            fontsize=8,
        )
    return fig


def per_class_figure(ev: CocoEvaluation) -> Figure:
    """AP per class (rows) and size range (columns) of one backbone, as a heat map."""
    table = ev.per_class_table()
    areas = list(ev.area_ranges)
    data = np.array([[r[f"AP_{a}"] for a in areas] for r in table], dtype=float) * 100
    fig = new_figure(1.2 + 0.9 * len(areas), 0.8 + 0.22 * len(table))
    with style_context():
        ax = fig.add_subplot()
        ax.grid(False)
        im = ax.imshow(np.ma.masked_invalid(data), cmap="viridis", vmin=0, vmax=100, aspect="auto")
        ax.set_xticks(range(len(areas)), areas)
        ax.set_yticks(range(len(table)), [r["category"] for r in table])
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                v = data[i, j]
                ax.text(
                    j,
                    i,
                    "-" if math.isnan(v) else f"{v:.0f}",
                    ha="center",
                    va="center",
                    fontsize=5.5,
                    color="white" if not math.isnan(v) and v < 55 else "black",
                )
        fig.colorbar(im, ax=ax, label="AP (%)", fraction=0.05)
        ax.set_title(f"{ev.name}: AP per class and size")
    return fig


def table_figure(evals: Mapping[str, CocoEvaluation], baseline: str | None = None) -> Figure:
    """The per-scale table as a figure (values in %, deltas against the baseline)."""
    rows = per_scale_table(evals, baseline)
    cols = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L")
    cells = []
    for r in rows:
        line = []
        for c in cols:
            d = r.get(f"Δ{c}")
            v = "-" if math.isnan(r[c]) else f"{r[c]:.1f}"
            line.append(v if d is None or math.isnan(d) else f"{v} ({d:+.1f})")
        cells.append(line)
    fig = new_figure(1.2 + 1.0 * len(cols), 0.6 + 0.28 * (len(rows) + 1))
    with style_context():
        ax = fig.add_subplot()
        ax.axis("off")
        t = ax.table(
            cellText=cells,
            rowLabels=[r["backbone"] for r in rows],
            colLabels=list(cols),
            loc="center",
            cellLoc="center",
        )
        t.auto_set_font_size(False)
        t.set_fontsize(7)
        first = next(iter(evals.values()))
        ax.set_title(
            f"COCO {first.iou_type}, maxDets {first.max_dets[-1]}" + (f", Δ vs {baseline}" if baseline else ""),
            fontsize=8,
        )
    return fig
