"""Figures of the COCO per-scale evaluation: size bars with deltas, PR curves per size range,
per-class x per-size heat map, and the table itself."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from fishspine.analysis.coco.evaluation import CocoEvaluation, per_scale_table
from fishspine.analysis.coco.tables import LATEX_HEADERS
from fishspine.analysis.figures.base import model_colors, new_figure, style_context

SIZES = (("small", "AP_S"), ("medium", "AP_M"), ("large", "AP_L"))
#: Gains and losses against the baseline (Okabe-Ito bluish green and vermillion: colour-blind safe).
GAIN, LOSS, NEUTRAL = "#009E73", "#D55E00", "#555555"
# matplotlib's mathtext reads the LaTeX table's headers as they are
TABLE_HEADERS = {
    **LATEX_HEADERS,
    **{f"AR{m}": f"AR$_{{{m}}}$" for m in (1, 10, 100)},
    **{f"AR_{k}": f"AR$_{k}$" for k in "SML"},
}
AP_COLUMNS = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L")
LABEL_CLEARANCE_PT = 1.5  # between a bar's label and the baseline's dashed line


def delta_color(d: float | None) -> str:
    """Green for a gain, vermillion for a loss, grey for none (below the table's 0.1 resolution)."""
    if d is None or math.isnan(d) or abs(d) < 0.05:
        return NEUTRAL
    return GAIN if d > 0 else LOSS


def size_bars_figure(
    evals: Mapping[str, CocoEvaluation], baseline: str | None = None, bootstrap: int = 0, seed: int = 0
) -> Figure:
    """AP_S / AP_M / AP_L per backbone, grouped by size, deltas against the baseline above the bars and the
    baseline's level as a dashed line across each group (a label the line would strike through sits above it);
    with `bootstrap` > 0, error bars show each delta's 95% paired-bootstrap interval around the bar's top."""
    rows = per_scale_table(evals, baseline, bootstrap, seed)
    with_ci = any("ΔAP_S_lo" in r for r in rows)
    fig = new_figure(5.5, 3.3)
    with style_context():
        ax = fig.add_subplot()
        n = len(rows)
        width = 0.8 / max(n, 1)
        colors = model_colors(r["backbone"] for r in rows)
        labels = []  # (annotation, size group)
        levels = {}  # size group -> the baseline's AP
        for j, r in enumerate(rows):
            xs = np.arange(len(SIZES)) + (j - (n - 1) / 2) * width
            vals = [r[key] for _, key in SIZES]
            is_base = r["backbone"] == baseline
            bars = ax.bar(
                xs,
                [0 if math.isnan(v) else v for v in vals],
                width * 0.92,
                color=colors[r["backbone"]],
                label=f"{r['backbone']} (baseline)" if is_base else r["backbone"],
                edgecolor="#222222" if is_base else "none",
                linewidth=0.8,
            )
            tops = [bar.get_height() for bar in bars]
            if with_ci and not is_base:
                lo = [r.get(f"Δ{k}") - r.get(f"Δ{k}_lo", math.nan) for _, k in SIZES]
                hi = [r.get(f"Δ{k}_hi", math.nan) - r.get(f"Δ{k}") for _, k in SIZES]
                err = np.nan_to_num(np.array([lo, hi]), nan=0.0).clip(min=0)
                ax.errorbar(xs, tops, yerr=err, fmt="none", ecolor="#222222", elinewidth=0.7, capsize=1.5)
                tops = [t + e for t, e in zip(tops, err[1])]
            if is_base:
                levels = {i: v for i, v in enumerate(vals) if not math.isnan(v)}
                for i, v in levels.items():
                    ax.plot([i - 0.42, i + 0.42], [v, v], color=colors[r["backbone"]], lw=0.9, ls="--", zorder=1.5)
            for i, (bar, top, (_, key)) in enumerate(zip(bars, tops, SIZES)):
                d = r.get(f"Δ{key}")
                text = f"{r[key]:.1f}" if d is None or math.isnan(d) else f"{d:+.1f}"
                label = ax.annotate(
                    text,
                    (bar.get_x() + bar.get_width() / 2, top),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=6,
                    color="#222222",  # not green/vermillion: those are also two backbones' bar colours here
                )
                labels.append((label, i))
        ax.set_xticks(range(len(SIZES)), [f"{s}\n{k}" for s, k in SIZES])
        ax.set_ylabel("AP (%)")
        first = next(iter(evals.values()))
        title = f"COCO {first.iou_type} AP by object size"
        if baseline:
            title += f"\nlabels: Δ against {baseline}" + (
                f"\nerror bars: 95% paired bootstrap CI of Δ ({bootstrap} resamples)" if with_ci else ""
            )
        ax.set_title(title, fontsize=8)
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        _clear_of_lines(fig, ax, labels, levels)
    return fig


def _clear_of_lines(fig: Figure, ax, labels: list, levels: Mapping[int, float]) -> None:
    """Lift each label that the baseline's line of its group would cross (or touch) to just above the line.

    Measured in points after a layout pass: the label's height is fixed in points, the distance from its bar to
    the line is not, so the shift is decided where both are known; the labels then stay put in points, which
    every later layout (a PNG at 300 dpi, a PDF) keeps, since the figure's size in inches does not change."""
    if not levels or not labels:
        return
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if hasattr(fig.canvas, "get_renderer") else FigureCanvasAgg(fig)
    for _ in range(3):  # a lifted label can move the layout (and the scale) a little: settle it
        canvas.draw()
        renderer = canvas.get_renderer()
        to_points = 72.0 / fig.dpi
        moved = False
        for label, group in labels:
            if group not in levels:
                continue
            box = label.get_window_extent(renderer)
            line = ax.transData.transform((0, levels[group]))[1]
            clearance = LABEL_CLEARANCE_PT / to_points
            if box.y0 - clearance < line < box.y1 + clearance:
                dx, dy = label.xyann
                label.xyann = (dx, dy + (line + clearance - box.y0) * to_points + 0.01)
                moved = True
        if not moved:
            return


def pr_curves_figure(evals: Mapping[str, CocoEvaluation], iou: float | None = 0.5) -> Figure:
    """Precision-recall per size range (one panel each), backbones overlaid, classes averaged."""
    areas = list(next(iter(evals.values())).area_ranges)
    fig = new_figure(2.4 * len(areas), 2.8 + 0.13 * len(evals))
    with style_context():
        axes = fig.subplots(1, len(areas), sharey=True)
        colors = model_colors(evals)
        for ax, area in zip(np.atleast_1d(axes), areas):
            for name, ev in evals.items():
                rec, prec = ev.pr_curve(area, iou)
                ap = ev.average_precision(area, iou=iou)
                ax.plot(rec, prec, color=colors[name], label=f"{name} ({100 * ap:.1f})")
            ax.set_title(area)
            ax.set_xlabel("recall")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            # below the panel, off the curves (each panel's AP differs, so each has its legend)
            ax.legend(frameon=False, fontsize=5.5, loc="upper left", bbox_to_anchor=(0.0, -0.22), borderaxespad=0)
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


def table_figure(
    evals: Mapping[str, CocoEvaluation],
    baseline: str | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    columns: tuple[str, ...] | None = None,
) -> Figure:
    """The per-scale table as a paper's table: booktabs rules (thick top and bottom, thin mid rule),
    values in %, each delta against the baseline below its value (green gain, vermillion loss) with its
    95% paired-bootstrap interval when `bootstrap` > 0; the baseline marked with a dagger. `columns`: any of
    per_scale_table's (AR1 ... AR_L), AP to AP_L by default."""
    rows = per_scale_table(evals, baseline, bootstrap, seed)
    cols = tuple(columns or AP_COLUMNS)
    with_delta = any(f"Δ{c}" in r for r in rows for c in cols)
    with_ci = any(f"Δ{c}_lo" in r for r in rows for c in cols)
    name_w = 0.3 + 0.065 * max(len(r["backbone"]) + 2 for r in rows)
    col_w = 1.05 if with_ci else 0.62
    row_h = 0.36 if with_delta else 0.22
    width = name_w + col_w * len(cols) + 0.2
    height = 0.62 + 0.3 + row_h * len(rows) + (0.25 if baseline else 0)
    fig = new_figure(width, height)
    fig.set_layout_engine(None)
    with style_context():
        ax = fig.add_axes((0, 0, 1, 1))
        ax.axis("off")
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)  # inches, top down
        first = next(iter(evals.values()))
        measure = "AR" if all(c.startswith("AR") for c in cols) else "AP"
        title = f"COCO {first.iou_type} {measure} (%), maxDets {first.max_dets[-1]}"
        ax.text(0.1, 0.22, title, fontsize=8.5, va="center", ha="left", weight="bold")
        xs = [name_w + col_w * (i + 0.5) for i in range(len(cols))]
        top = 0.42
        ax.plot([0.1, width - 0.1], [top, top], color="black", lw=1.2, solid_capstyle="butt")
        y = top + 0.15
        ax.text(0.15, y, "Backbone", fontsize=7.5, va="center", ha="left")
        for x, c in zip(xs, cols):
            ax.text(x, y, TABLE_HEADERS.get(c, c), fontsize=7.5, va="center", ha="center")
        mid = top + 0.3
        ax.plot([0.1, width - 0.1], [mid, mid], color="black", lw=0.6, solid_capstyle="butt")
        y = mid
        for r in rows:
            is_base = r["backbone"] == baseline
            centre = y + row_h / 2
            value_y = centre - (0.07 if with_delta else 0)
            ax.text(
                0.15,
                value_y,
                r["backbone"].replace("$", r"\$") + ("$^\\dagger$" if is_base else ""),
                fontsize=7.5,
                va="center",
            )
            for x, c in zip(xs, cols):
                v = r[c]
                ax.text(x, value_y, "-" if math.isnan(v) else f"{v:.1f}", fontsize=7.5, va="center", ha="center")
                d = r.get(f"Δ{c}")
                if d is None or math.isnan(d):
                    continue
                text = f"{d:+.1f}"
                lo, hi = r.get(f"Δ{c}_lo"), r.get(f"Δ{c}_hi")
                resolved = lo is not None and not math.isnan(lo) and (lo > 0 or hi < 0)
                if lo is not None and not math.isnan(lo):
                    text += f" [{lo:+.1f}, {hi:+.1f}]"
                text = text.replace("-", "\u2212")  # a typographic minus, as in the papers' tables
                ax.text(
                    x,
                    centre + 0.085,
                    text,
                    fontsize=5.8,
                    va="center",
                    ha="center",
                    color=delta_color(d),
                    weight="bold" if resolved else "normal",  # the interval excludes 0
                )
            y += row_h
        ax.plot([0.1, width - 0.1], [y + 0.04, y + 0.04], color="black", lw=1.2, solid_capstyle="butt")
        if baseline:
            shown = baseline.replace("$", r"\$")  # a lone $ would start mathtext
            note = f"$^\\dagger$ baseline; below each value: Δ against {shown}"
            if with_ci:
                note += f" [95% paired bootstrap CI over images, {bootstrap} resamples; bold: it excludes 0]"
            ax.text(0.1, y + 0.2, note, fontsize=5.8, va="center", ha="left", color=NEUTRAL)
    return fig
