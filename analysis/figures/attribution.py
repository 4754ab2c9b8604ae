"""Figures of activations, CAMs and gradient traces, in the house style."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from fishspine.analysis.attribution.activations import ActivationResult, colour_scales, sample_rows
from fishspine.analysis.attribution.cam import CamResult, cam_colour_scale, overlay
from fishspine.analysis.attribution.colour_scale import ColourScale
from fishspine.analysis.attribution.gradients import GradientTrace
from fishspine.analysis.figures.base import ViewExport, model_colors, new_figure, style_context
from fishspine.analysis.options import CAM_CMAPS

COLOUR_BAR_ROW = 0.1  # height of the colour bar row, as a share of a map row


def draw_colour_bar(fig: Figure, cax, scale: ColourScale) -> None:
    """A horizontal colour bar of `scale` in axes `cax`: its colour map, ticks at its named values, its label."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), scale.cmap), cax=cax, orientation="horizontal")
    bar.set_ticks([p for p, _ in scale.ticks], labels=[t for _, t in scale.ticks])
    bar.ax.tick_params(labelsize=5.5, length=2, pad=1)
    bar.set_label(scale.label, fontsize=6, labelpad=2)
    bar.outline.set_linewidth(0.4)


def activation_gallery_figure(
    image: np.ndarray,
    results: Mapping[str, ActivationResult],
    rows: int = 8,
    cmap: str | None = None,
    families: Mapping[str, str] | None = None,
) -> Figure:
    """Rows = blocks at matching relative depth (shallow at the top), columns = models; one colour bar below
    for every model (`colour_scales`). `cmap` overrides the results' own (a diverging one for signed
    maps); `families` (label -> family) choose the models' colours."""
    labels = list(results)
    picks = {m: sample_rows(len(r.blocks), rows) for m, r in results.items()}
    n_rows = max(len(p) for p in picks.values()) + 1
    first = next(iter(results.values()), None)
    cmap = cmap or (first.cmap if first else "inferno")
    scales = colour_scales(results)
    cell = 1.25
    aspect = image.shape[0] / image.shape[1]
    fig = new_figure(0.6 + cell * len(labels), 0.95 + cell * (n_rows + COLOUR_BAR_ROW) * aspect)
    with style_context():
        grid = fig.add_gridspec(n_rows + 1, len(labels), height_ratios=[1.0] * n_rows + [COLOUR_BAR_ROW])
        colors = model_colors(labels, families)
        for j, m in enumerate(labels):
            ax = fig.add_subplot(grid[0, j])
            ax.imshow(image)
            ax.set_title(m, fontsize=8, color=colors[m])
            ax.axis("off")
            res = results[m]
            for i, idx in enumerate(picks[m], start=1):
                b = res.blocks[idx]
                ax = fig.add_subplot(grid[i, j])
                ax.imshow(b.map.astype(np.float32), cmap=cmap, vmin=0, vmax=1, interpolation="bilinear")
                ax.set_xticks([])
                ax.set_yticks([])
                for s in ax.spines.values():
                    s.set_visible(False)
                ax.set_xlabel(f"{b.name} · {b.role} · 1/{2**b.level}", fontsize=5.5, labelpad=1)
        for scale in scales:
            columns = [labels.index(m) for m in scale.models]
            cax = fig.add_subplot(grid[n_rows, min(columns) : max(columns) + 1])
            draw_colour_bar(fig, cax, replace_cmap(scale, cmap))
        norm = first.normalisation if first else ""
        red = first.reduction if first else ""
        fig.suptitle(f"Block activations ({red}, normalised per {norm})\nrows at matching relative depth", fontsize=8)
    return fig


def replace_cmap(scale: ColourScale, cmap: str) -> ColourScale:
    """`scale` drawn with `cmap`."""
    from dataclasses import replace

    return replace(scale, cmap=cmap)


def cam_title(model: str, cam: CamResult) -> str:
    """The title of one CAM overlay: model, method, block and target (and that it is constant)."""
    target = cam.target_label.replace("detection: ", "detection\n", 1)  # a detection's line is long
    title = f"{model}\n{cam.method} @ {cam.block}\n{target}"
    return title + ("\nconstant CAM" if cam.box is not None else " · constant CAM") if cam.constant else title


def _draw_box(ax, box, color: str, dashed: bool = False) -> None:
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = box
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.2, ec=color, ls=(0, (3, 2)) if dashed else "-"))


def cam_figure(
    image: np.ndarray,
    cams: Mapping[str, CamResult],
    cmap: str = CAM_CMAPS[0],
    alpha: float = 0.5,
    asked_box: tuple[float, float, float, float] | None = None,
    families: Mapping[str, str] | None = None,
) -> Figure:
    """The image, then one CAM overlay per model (block, method and target in each title), a colour bar below.

    A CAM of a detection has the detection's box drawn in the model's colour; `asked_box` (the object
    asked about, x0, y0, x1, y1) is drawn dashed in white on every panel."""
    n = len(cams) + 1
    title_lines = max((cam_title(m, c).count("\n") + 1 for m, c in cams.items()), default=1)
    extra = 0.5 * max(0, title_lines - 3)  # a detection's title has two more lines than a class's
    fig = new_figure(1.9 * n, 1.8 * image.shape[0] / image.shape[1] + 1.05 + extra)
    with style_context():
        grid = fig.add_gridspec(2, n, height_ratios=[1.0, 0.06])
        ax = fig.add_subplot(grid[0, 0])
        ax.imshow(image)
        ax.set_title("image", fontsize=8)
        ax.axis("off")
        if asked_box is not None:
            _draw_box(ax, asked_box, "white", dashed=True)
        colors = model_colors(cams, families)
        for j, (m, c) in enumerate(cams.items()):
            ax = fig.add_subplot(grid[0, j + 1])
            ax.imshow(overlay(image, c.cam, cmap, alpha))
            ax.set_title(cam_title(m, c), fontsize=7, color=colors[m])
            ax.axis("off")
            if asked_box is not None:
                _draw_box(ax, asked_box, "white", dashed=True)
            if c.box is not None:
                _draw_box(ax, c.box, colors[m])
        if cams:
            draw_colour_bar(fig, fig.add_subplot(grid[1, 1:]), cam_colour_scale(cams, cmap))
    return fig


def gradient_trace_figure(
    traces: Mapping[str, GradientTrace], which: str = "output", families: Mapping[str, str] | None = None
) -> Figure:
    """Gradient norm per block against normalised depth (0 = deepest), log scale, models overlaid; each model
    coloured by its family (`families`: label -> family, else the family its label names) as in the app."""
    if which not in ("output", "weight"):
        raise ValueError("which must be 'output' or 'weight'")
    fig = new_figure(5.5, 3.4)
    with style_context():
        ax = fig.add_subplot()
        colors = model_colors(traces, families)
        for m, t in traces.items():
            pts = [(d, y) for d, y in zip(t.depth, t.norms(which)) if y > 0 and math.isfinite(y)]
            if not pts:
                continue
            ratio = "n/a" if not math.isfinite(t.ratio_of(which)) else f"{t.ratio_of(which):.3g}"
            ax.plot(*zip(*pts), marker="o", ms=2.5, color=colors[m], label=f"{m} (shallowest/deepest = {ratio})")
        ax.set_yscale("log")
        _round_decades(ax)
        ax.set_xlabel("normalised depth (0 = deepest block, 1 = shallowest)")
        ax.set_ylabel(f"‖∂L/∂{'block output' if which == 'output' else 'block weights'}‖₂")
        losses = sorted({t.loss for t in traces.values()})
        ax.set_title(f"Gradient magnitude, deepest block to shallowest\nloss: {', '.join(losses)}")
        ax.legend(loc="best", frameon=False)
    return fig


def _round_decades(ax, most: int = 8) -> None:
    """Over many decades, label every 2nd, 5th, 10th, 20th ... decade (matplotlib's own stride is any integer,
    10⁻³¹⁵, 10⁻²⁷³, ...), at most `most` labels, with an unlabelled tick at the decades between."""
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullFormatter

    lo, hi = (math.log10(v) for v in ax.get_ylim())
    span = hi - lo
    if not math.isfinite(span) or span <= most:
        return  # matplotlib labels a few decades (and the 2, 3, 5 between them) without crowding
    stride = next(m * 10**e for e in range(6) for m in (1, 2, 5) if span / (m * 10**e) <= most)
    ax.yaxis.set_major_locator(LogLocator(base=10.0**stride, numticks=most + 2))
    ax.yaxis.set_major_formatter(LogFormatterSciNotation(base=10.0))
    if span <= 60:  # a tick per decade where decades are still a few points apart
        ax.yaxis.set_minor_locator(LogLocator(base=10.0, subs=(1.0,), numticks=int(span) + 3))
    ax.yaxis.set_minor_formatter(NullFormatter())


# ---------------------------------------------------------------------- exports (the app's and the CLI's)


def activations_export(
    image_label: str,
    shown: np.ndarray,
    results: Mapping[str, ActivationResult],
    rows: int = 8,
    families: Mapping[str, str] | None = None,
) -> ViewExport:
    """The activation gallery of one image as exported: figure, one CSV row per block, JSON."""
    data = [row for r in results.values() for row in r.rows()]
    first = next(iter(results.values()), None)
    payload = {
        "image": image_label,
        "input_size": list(shown.shape[:2]),
        "reduction": first.reduction if first else "",
        "normalisation": first.normalisation if first else "",
        "blocks": data,
    }
    return ViewExport(lambda: activation_gallery_figure(shown, results, rows=rows, families=families), data, payload)


def cam_export(
    image_label: str,
    shown: np.ndarray,
    cams: Mapping[str, CamResult],
    alpha: float = 0.5,
    cmap: str = CAM_CMAPS[0],
    asked_box: tuple[float, float, float, float] | None = None,
    families: Mapping[str, str] | None = None,
) -> ViewExport:
    """The CAM overlays of one image as exported (`alpha`: the overlay's opacity, as on screen;
    `asked_box`: the object a detection CAM was asked about)."""
    data = [
        {
            "model": m,
            "block": c.block,
            "method": c.method,
            "target": c.target_label,
            "class_index": c.class_index,
            "raw_max": c.raw_max,
            "scaling": c.scaling,
            "shown_hi": c.hi,
            "constant": c.constant,
            "box_xyxy": None if c.box is None else [round(v, 2) for v in c.box],
        }
        for m, c in cams.items()
    ]
    payload = {
        "image": image_label,
        "input_size": list(shown.shape[:2]),
        "alpha": alpha,
        "cmap": cmap,
        "cams": data,
    }
    if asked_box is not None:
        payload["asked_box_xyxy"] = [round(v, 2) for v in asked_box]
    return ViewExport(lambda: cam_figure(shown, cams, cmap, alpha, asked_box, families), data, payload)


def gradients_export(
    images: list[str],
    input_size: int,
    traces: Mapping[str, GradientTrace],
    which: str = "output",
    families: Mapping[str, str] | None = None,
) -> ViewExport:
    """The gradient traces as exported: the ratio and the loss of the plotted norms (`which`); NaN and
    infinite numbers (a block without weights, a 0/0 ratio) are written as null."""
    data = [row for t in traces.values() for row in t.rows()]
    payload = {
        "images": images,
        "input_size": input_size,
        "which": which,
        "models": {m: t.summary(which) for m, t in traces.items()},
    }
    return ViewExport(lambda: gradient_trace_figure(traces, which, families), data, payload)
