"""The TIDE error breakdown as a figure, a table and data: what each error type costs each backbone."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from fishspine.analysis.coco.errors import BACKGROUND_IOU, ERROR_NAMES, ERROR_TYPES, FOREGROUND_IOU, ErrorBreakdown
from fishspine.analysis.figures.base import ViewExport, model_colors, new_figure, style_context

#: The bars of each panel: the six types, then TIDE's two summaries.
COLUMNS = (*ERROR_TYPES, "fp", "fn")
LABELS = {**ERROR_NAMES, "fp": "all false pos.", "fn": "all false neg."}

Breakdowns = Mapping[str, Mapping[str, ErrorBreakdown]]  # backbone -> size range -> breakdown


def _cost(b: ErrorBreakdown, column: str) -> float:
    """AP points gained by fixing `column` (an error type, "fp" or "fn")."""
    return 100 * (b.delta[column] if column in b.delta else getattr(b, column))


def error_rows(breakdowns: Breakdowns, baseline: str | None = None) -> list[dict]:
    """One row per backbone and size range: AP50, the AP points each error costs, the counts, and the
    difference of each cost against the baseline's (negative: this backbone loses less to it)."""
    rows = []
    for name, per_area in breakdowns.items():
        for area, b in per_area.items():
            row = {"backbone": name, "area": area, "AP50": 100 * b.ap}
            row |= {f"dAP_{c}": _cost(b, c) for c in COLUMNS}
            row |= {f"n_{k}": b.counts[k] for k in ERROR_TYPES}
            if baseline and name != baseline and baseline in breakdowns:
                base = breakdowns[baseline][area]
                row |= {f"vs_baseline_{c}": _cost(b, c) - _cost(base, c) for c in COLUMNS}
            rows.append(row)
    return rows


def format_errors(breakdowns: Breakdowns, baseline: str | None = None, area: str = "all") -> str:
    """A text table of one size range: AP points each error type costs, differences to the baseline in ()."""
    rows = [r for r in error_rows(breakdowns, baseline) if r["area"] == area]
    width = max([len(r["backbone"]) for r in rows] + [8]) + 2
    head = (
        f"TIDE error breakdown ({area}; AP50 points each error type costs; foreground IoU {FOREGROUND_IOU}, "
        f"background {BACKGROUND_IOU})" + (f"; () against {baseline}" if baseline else "")
    )
    lines = [head, "backbone".ljust(width) + "AP50".rjust(7) + "".join(c.rjust(14) for c in COLUMNS)]
    for r in rows:
        cells = []
        for c in COLUMNS:
            cell = f"{r[f'dAP_{c}']:.2f}"
            d = r.get(f"vs_baseline_{c}")
            cells.append((cell + (f" ({d:+.2f})" if d is not None else "")).rjust(14))
        lines.append(r["backbone"].ljust(width) + f"{r['AP50']:.1f}".rjust(7) + "".join(cells))
    return "\n".join(lines)


def errors_figure(breakdowns: Breakdowns, baseline: str | None = None) -> Figure:
    """One panel per size range: per error type, a bar per backbone of the AP50 points it costs."""
    names = list(breakdowns)
    areas = list(next(iter(breakdowns.values())))
    cols = min(len(areas), 2)
    rows_n = math.ceil(len(areas) / cols)
    fig = new_figure(3.4 * cols + 1.2, 2.6 * rows_n + 0.3)
    with style_context():
        axes = np.atleast_1d(fig.subplots(rows_n, cols, sharex=False, squeeze=False)).ravel()
        height = 0.8 / max(len(names), 1)
        ys = np.arange(len(COLUMNS))[::-1].astype(float)
        ys[-2:] -= 0.5  # a gap before the two summaries
        colors = model_colors(names)
        for ax, area in zip(axes, areas):
            for j, name in enumerate(names):
                b = breakdowns[name][area]
                costs = [_cost(b, c) for c in COLUMNS]
                offset = ((len(names) - 1) / 2 - j) * height
                label = f"{name}{' (baseline)' if name == baseline else ''}"
                ax.barh(ys + offset, [0 if math.isnan(v) else v for v in costs], height * 0.9,
                        color=colors[name], label=label if area == areas[0] else None)  # fmt: skip
            ax.set_yticks(ys, [LABELS[c] for c in COLUMNS])
            ax.axhline(ys[-3] - 0.5 - 0.25, color="0.6", lw=0.5)
            aps = ", ".join(f"{100 * breakdowns[n][area].ap:.1f}" for n in names)
            ax.set_title(f"{area}: AP50 {aps}", fontsize=8)
            ax.set_xlabel("AP50 points gained by fixing it")
            ax.grid(axis="y", visible=False)
        for ax in axes[len(areas) :]:
            ax.set_visible(False)
        fig.legend(loc="outside right upper", frameon=False)
        fig.suptitle("Where AP goes: TIDE error types (Bolya et al., ECCV 2020)", fontsize=9)
    return fig


def errors_export(breakdowns: Breakdowns, baseline: str | None = None) -> ViewExport:
    """The breakdown as the app's Export and `fishspine coco --errors` write it."""
    payload = {
        "method": "TIDE (Bolya et al., ECCV 2020), AP50 with COCO's matching and 101-point interpolation",
        "foreground_iou": FOREGROUND_IOU,
        "background_iou": BACKGROUND_IOU,
        "baseline": baseline,
        "breakdowns": {n: {a: b.as_dict() for a, b in per.items()} for n, per in breakdowns.items()},
    }
    return ViewExport(lambda: errors_figure(breakdowns, baseline), error_rows(breakdowns, baseline), payload)
