"""The evidence behind a difference as a gallery of crops: each object (or false positive) with the
ground truth and both detectors' boxes drawn, one section per kind, counts in the titles."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from fishspine.analysis.coco.evidence import EVIDENCE_KINDS, EVIDENCE_TITLES, Evidence, EvidenceItem
from fishspine.analysis.figures.base import ViewExport, model_color, new_figure, style_context

COLUMNS = 6
#: Context around an item: its box grown by this fraction of its size on each side (at least MIN_CONTEXT px).
CONTEXT = 0.5
MIN_CONTEXT = 16
GT_COLOR = "white"


def crop_window(box: list[float], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the crop that shows `box` (xywh) with context, inside an image of `shape`."""
    x, y, w, h = box
    pad_x, pad_y = max(CONTEXT * w, MIN_CONTEXT), max(CONTEXT * h, MIN_CONTEXT)
    top, bottom = max(0, math.floor(y - pad_y)), min(shape[0], math.ceil(y + h + pad_y))
    left, right = max(0, math.floor(x - pad_x)), min(shape[1], math.ceil(x + w + pad_x))
    return top, max(bottom, top + 1), left, max(right, left + 1)


def _draw_crop(ax, item: EvidenceItem, pixels: np.ndarray | None, colors: tuple[str, str], category: str) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if pixels is None:
        ax.text(0.5, 0.5, "image not found", ha="center", va="center", transform=ax.transAxes, fontsize=6)
        return
    top, bottom, left, right = crop_window(item.box, pixels.shape[:2])
    ax.imshow(pixels[top:bottom, left:right], extent=(left, right, bottom, top), interpolation="nearest")
    boxes = [(item.box, GT_COLOR, "--")] if item.kind in ("found_only", "missed_only") else []
    boxes += [(d.box, c, "-") for d, c in zip((item.backbone, item.baseline), colors) if d is not None]
    for (x, y, w, h), color, style in boxes:
        ax.add_patch(Rectangle((x, y), w, h, fill=False, ec=color, ls=style, lw=1.0))
    own = item.backbone if item.kind in ("found_only", "false_positive_only") else item.baseline
    ax.set_title(f"img {item.image_id} · {category}\nscore {own.score:.2f} · {math.sqrt(item.area):.0f} px", fontsize=5)


def evidence_figure(
    ev: Evidence,
    image: Callable[[int], np.ndarray | None],
    categories: Mapping[int, str],
    colors: tuple[str, str] = (model_color(1), model_color(0)),
    per_kind: int = 12,
    sort: str = "score",
) -> Figure:
    """Up to `per_kind` crops of each kind, highest `sort` first; `image(id)` gives an image's pixels."""
    sections = [(kind, ev.of_kind(kind, sort)) for kind in EVIDENCE_KINDS]
    rows = [max(1, math.ceil(min(len(items), per_kind) / COLUMNS)) for _, items in sections]
    fig = new_figure(7.2, 0.6 + sum(0.35 + 1.45 * r for r in rows))
    with style_context():
        subs = fig.subfigures(len(sections), 1, height_ratios=[0.35 + 1.45 * r for r in rows])
        for sub, n_rows, (kind, items) in zip(subs, rows, sections):
            shown = items[:per_kind]
            title = EVIDENCE_TITLES[kind].format(backbone=ev.backbone, baseline=ev.baseline)
            more = f" (the {len(shown)} of highest {sort})" if len(items) > len(shown) else ""
            sub.suptitle(f"{title}: {len(items)}{more}", fontsize=7, weight="bold", x=0.01, ha="left")
            axes = sub.subplots(n_rows, COLUMNS, squeeze=False).ravel()
            for ax, item in zip(axes, shown):
                _draw_crop(ax, item, image(item.image_id), colors, categories.get(item.category_id, "?"))
            for ax in axes[len(shown) :]:
                ax.set_axis_off()
        t = ev.thresholds
        fig.suptitle(
            f"{ev.backbone} against {ev.baseline}, {ev.area} objects, IoU 0.5; score thresholds "
            f"{ev.backbone} {t[ev.backbone]:.2f}, {ev.baseline} {t[ev.baseline]:.2f}\n"
            f"boxes: ground truth (white, dashed), {ev.backbone} and {ev.baseline} (their colours)",
            fontsize=7,
        )
    return fig


def evidence_export(
    ev: Evidence,
    image: Callable[[int], np.ndarray | None],
    categories: Mapping[int, str],
    colors: tuple[str, str] = (model_color(1), model_color(0)),
    per_kind: int = 12,
    sort: str = "score",
) -> ViewExport:
    """The gallery, one CSV row per item (all of them, not only those drawn), and the evidence as JSON."""
    return ViewExport(lambda: evidence_figure(ev, image, categories, colors, per_kind, sort), ev.rows(), ev.as_dict())
