"""The gradient trace: gradient norm per block from the deepest block to the shallowest, models overlaid.

A pyqtgraph plot on a log scale with a legend; hovering names the nearest block, clicking a point
selects that block in every view, and the selected block is ringed on every trace that has it. The log
axis places its own ticks (LogTickAxis): labels never crowd, whatever the number of decades.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QFontMetricsF
from PySide6.QtWidgets import QComboBox, QLabel

from fishspine.analysis.options import GRADIENT_WHICH
from fishspine.app.components.state import AppState
from fishspine.app.qt.views.base import SELECTED_PEN, View, bind_setting, model_qcolors

Y_LABEL = {"output": "‖∂L/∂ block output‖₂", "weight": "‖∂L/∂ block weights‖₂"}
SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
DECADE_STEPS = (1, 2, 5)  # decades between labelled ticks: 1, 2, 5, 10, 20, 50, ...
MINOR_PRIORITY = (5, 2, 3, 4, 6, 7, 8, 9)  # the minor ticks (k x 10^n) that get a label first
MINOR_LABELLED = (5, 2, 3)  # over a decade or more only these get labels: 2, 3, 5 read as a scale, 7 alone does not
LABEL_GAP = 1.3  # label centres at least this many label heights apart


def log_tick_label(v: float) -> str:
    """The label of log10 value `v`: '0.02', '300', '10⁻⁶', '2·10⁻⁶' (plain from 10⁻³ to 10³)."""
    n = math.floor(v + 1e-9)
    k = 10 ** (v - n)
    k = round(k) if abs(k - round(k)) < 1e-6 else k
    if k == 10:
        n, k = n + 1, 1
    if -3 <= n <= 3:
        return f"{k * 10.0**n:.6g}"  # 6 digits: 1000 stays 1000, 0.30000000000000004 is 0.3
    head = "" if k == 1 else f"{k:.3g}·"
    return f"{head}10{str(n).translate(SUPERSCRIPT)}"


def _nice(x: float) -> float:
    e = math.floor(math.log10(x))
    return next(m * 10.0**e for m in (1, 2, 5, 10) if m * 10.0**e >= x)


def log_ticks(lo: float, hi: float, length_px: float, label_px: float) -> tuple[list[float], list[float], list[float]]:
    """Ticks of a log10 axis from `lo` to `hi` (log10 units) drawn `length_px` long, for labels `label_px` high:
    (labelled decades, labelled minor ticks, unlabelled minor ticks). Labels are at least LABEL_GAP label heights
    apart: a decade step of 1, 2, 5, 10, 20 ... decades, and minor labels (k·10ⁿ) only where they fit."""
    span = hi - lo
    if not (span > 0 and length_px > 0 and math.isfinite(span)):
        return [], [], []
    per_decade = length_px / span
    gap = LABEL_GAP * label_px / per_decade  # in decades
    step, scale = 1, 1
    while step * scale < gap:
        i = DECADE_STEPS.index(step) + 1
        step, scale = (DECADE_STEPS[i], scale) if i < len(DECADE_STEPS) else (1, scale * 10)
    step *= scale
    majors = [float(n) for n in range(math.ceil(lo / step) * step, math.floor(hi) + 1, step) if lo <= n <= hi]
    labelled: list[float] = []
    unlabelled: list[float] = []
    if step == 1:
        candidates = [n + math.log10(k) for k in MINOR_PRIORITY for n in range(math.floor(lo), math.ceil(hi) + 1)]
        candidates = [c for c in candidates if lo <= c <= hi]
        few = len(MINOR_PRIORITY) if span < 1 else len(MINOR_LABELLED)
        allowed = [n + math.log10(k) for k in MINOR_PRIORITY[:few] for n in range(math.floor(lo), math.ceil(hi) + 1)]
        for c in candidates:  # by priority: 5s, then 2s, ... each where it keeps its distance
            if c in allowed and all(abs(c - t) >= gap for t in majors + labelled):
                labelled.append(c)
        unlabelled = [c for c in candidates if c not in labelled] if 0.1 * per_decade >= 3 else []
        if len(majors) + len(labelled) < 2:  # less than a decade and no k·10ⁿ fits: round numbers
            a, b = 10.0**lo, 10.0**hi
            d = _nice((b - a) / 4)
            labelled = [math.log10(v) for v in np.arange(math.ceil(a / d) * d, b, d) if v > 0]
            labelled = [t for t in labelled if lo <= t <= hi and all(abs(t - m) >= gap for m in majors)]
            unlabelled = []
    elif per_decade >= 4:  # the decades between the labelled ones
        unlabelled = [float(n) for n in range(math.ceil(lo), math.floor(hi) + 1) if n % step]
    return majors, sorted(labelled), sorted(unlabelled)


class LogTickAxis(pg.AxisItem):
    """A log-mode axis whose labels never overlap: log_ticks places them for the axis's length and font."""

    def __init__(self, orientation: str) -> None:
        super().__init__(orientation)
        # Show every label log_ticks chose (they are already spaced); level 2 (the unlabelled minors) has none.
        self.setStyle(textFillLimits=[(0, 1.0)], maxTextLevel=1)
        self.enableAutoSIPrefix(False)  # a "(x0.001)" beside the axis name would rescale every label

    def label_height(self) -> float:
        """The height of one tick label in pixels (the font the axis draws with)."""
        font = self.style.get("tickFont") or self.font()
        return QFontMetricsF(font).height()

    def logTickValues(self, minVal, maxVal, size, stdTicks):  # noqa: N802 - pyqtgraph's name
        majors, minors, rest = log_ticks(minVal, maxVal, size, self.label_height())
        return [(1.0, majors), (0.5, minors), (0.0, rest)]

    def logTickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph's name
        return [log_tick_label(v) if spacing else "" for v in values]


class GradientView(View):
    """Gradient norms against normalised depth (0 = deepest block, 1 = shallowest), log y."""

    title = "Gradients"

    def __init__(self, state: AppState) -> None:
        super().__init__(state)
        self.which = QComboBox()
        self.which.addItems(GRADIENT_WHICH)
        self.which.setToolTip("gradient of the loss w.r.t. each block's output, or w.r.t. its weights")
        bind_setting(state, self.which, "gradient_which", self.refresh)
        self.controls.addWidget(QLabel("gradient of"))
        self.controls.addWidget(self.which)
        self.plot = pg.PlotWidget(axisItems={"left": LogTickAxis("left")})
        self.plot.setLogMode(x=False, y=True)
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.setLabel("bottom", "normalised depth (0 = deepest block, 1 = shallowest)")
        self.plot.getPlotItem().setMenuEnabled(False)
        self.legend = self.plot.addLegend(
            offset=(10, 10), labelTextSize="9pt"
        )  # top left: deep blocks have small gradients
        self.selected = pg.ScatterPlotItem(size=15, pen=SELECTED_PEN, brush=None, symbol="o")
        self.selected.setZValue(10)
        self.set_display(self.plot)
        # (model, block, depth, value) per shown point, for hover and click
        self.points: list[tuple[str, str, float, float]] = []
        self._curves: list[pg.PlotDataItem] = []
        self.plot.scene().sigMouseMoved.connect(self._hovered)
        # A hover readout names a point of what was drawn: it goes as soon as that changes (another image,
        # models added or removed, a setting), not at the next hover.
        state.selection_changed.connect(self.clear_readout)
        state.models_changed.connect(self.clear_readout)
        state.results_changed.connect(self.clear_readout)
        state.settings_changed.connect(lambda changed: self.clear_readout())

    def clear_readout(self) -> None:
        """Forget the hover readout."""
        self.info.setText("")

    def traces(self) -> dict:
        return {k: v.trace for k, v in self.state.insights.items()}

    def families(self) -> dict[str, str]:
        """Each loaded model's architecture family (what its colour is chosen by)."""
        return {m.label: m.family for m in self.state.models}

    def colors(self) -> dict[str, str]:
        """Each traced model's colour: the one it has in every view and figure, whatever the load order."""
        return model_qcolors(self.traces(), self.families())

    def show_state(self) -> bool:
        self.clear_readout()
        if not self.state.insights:
            return False
        which = self.state.settings.gradient_which
        for c in self._curves:
            self.plot.removeItem(c)
        self.legend.clear()
        self._curves, self.points = [], []
        colors = self.colors()
        for m, t in self.traces().items():
            pts = [(d, y, b) for d, y, b in zip(t.depth, t.norms(which), t.blocks) if y > 0 and math.isfinite(y)]
            if not pts:
                continue
            color = colors[m]
            ratio = "n/a" if not math.isfinite(t.ratio_of(which)) else f"{t.ratio_of(which):.3g}"
            curve = pg.PlotDataItem(
                [p[0] for p in pts],
                [p[1] for p in pts],
                pen=pg.mkPen(color, width=2),
                symbol="o",
                symbolSize=6,
                symbolBrush=color,
                symbolPen=None,
                name=f"{m} (shallowest/deepest = {ratio})",
            )
            curve.sigPointsClicked.connect(lambda _item, spots, _ev, m=m: self._spot_clicked(m, spots))
            self.plot.addItem(curve)
            self._curves.append(curve)
            self.points += [(m, b, d, y) for d, y, b in pts]
        if self.selected not in self.plot.items():
            self.plot.addItem(self.selected)
        self.plot.setLabel("left", Y_LABEL[which])
        losses = sorted({t.loss for t in self.traces().values()})
        self.plot.setTitle(f"Gradient magnitude, deepest block to shallowest · loss: {', '.join(losses)}")
        self.plot.enableAutoRange()
        return True

    def nearest(self, depth: float, log_value: float) -> tuple[str, str, float, float] | None:
        """The shown point nearest to (depth, log10 value), in axis-scaled distance."""
        if not self.points:
            return None
        (x0, x1), (y0, y1) = self.plot.getViewBox().viewRange()
        d = np.array([p[2] for p in self.points])
        v = np.log10([p[3] for p in self.points])
        dist = ((d - depth) / max(x1 - x0, 1e-9)) ** 2 + ((v - log_value) / max(y1 - y0, 1e-9)) ** 2
        return self.points[int(np.argmin(dist))]

    def _hovered(self, pos) -> None:
        box = self.plot.getViewBox()
        if not box.sceneBoundingRect().contains(pos):
            return
        p = box.mapSceneToView(pos)
        hit = self.nearest(p.x(), p.y())
        if hit:
            m, b, d, v = hit
            self.info.setText(f"{m} · {b} · depth {d:.2f} · ‖grad‖ {v:.3g}")

    def _spot_clicked(self, model: str, spots) -> None:
        if len(spots):
            x, y = spots[0].pos().x(), spots[0].pos().y()  # y is log10 in log mode
            hit = self.nearest(x, y)
            if hit:
                self.state.select_block(hit[1], model)
                self.state.notify("info", f"selected block {hit[1]} of {model}")

    def highlight(self, model: str, block: str) -> None:
        pts = [(d, math.log10(v)) for m, b, d, v in self.points if block and b == block and model in ("", m)]
        self.selected.setData([p[0] for p in pts], [p[1] for p in pts])

    def export_result(self):
        from pathlib import Path

        from fishspine.analysis.figures.attribution import gradients_export

        s = self.state.settings
        return gradients_export(
            [Path(self.state.image.label).stem], s.image_size, self.traces(), s.gradient_which, self.families()
        )
