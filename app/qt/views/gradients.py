"""The gradient trace: gradient norm per block from the deepest block to the shallowest, models overlaid.

A pyqtgraph plot on a log scale with a legend; hovering names the nearest block, clicking a point
selects that block in every view, and the selected block is ringed on every trace that has it.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QComboBox, QLabel

from fishspine.analysis.options import GRADIENT_WHICH
from fishspine.app.components.state import AppState
from fishspine.app.qt.views.base import SELECTED_PEN, View, bind_setting, model_qcolor

Y_LABEL = {"output": "‖∂L/∂ block output‖₂", "weight": "‖∂L/∂ block weights‖₂"}


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
        self.plot = pg.PlotWidget()
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

    def traces(self) -> dict:
        return {k: v.trace for k, v in self.state.insights.items()}

    def show_state(self) -> bool:
        if not self.state.insights:
            return False
        which = self.state.settings.gradient_which
        for c in self._curves:
            self.plot.removeItem(c)
        self.legend.clear()
        self._curves, self.points = [], []
        for j, (m, t) in enumerate(self.traces().items()):
            pts = [(d, y, b) for d, y, b in zip(t.depth, t.norms(which), t.blocks) if y > 0 and math.isfinite(y)]
            if not pts:
                continue
            color = model_qcolor(j)
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
        return gradients_export([Path(self.state.image.label).stem], s.image_size, self.traces(), s.gradient_which)
