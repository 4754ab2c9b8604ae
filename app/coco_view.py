"""The COCO view: per-scale AP per backbone against a baseline, AP_S/M/L bars and PR curves per size range.

A table (values in %, deltas against the baseline in green or red), grouped bars and one PR panel per
size range, all visible at once. Evaluation runs in a worker; a file that fails leaves the shown
evaluation in place. Export writes the command line's figure chosen in the "figure" box.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QComboBox, QFileDialog, QHeaderView, QLabel, QPushButton, QSplitter, QTableWidget, QTableWidgetItem

from .state import AppState
from .view_base import View, model_qcolor

COLUMNS = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L", "AR100")
SIZES = (("small", "AP_S"), ("medium", "AP_M"), ("large", "AP_L"))
GAIN, LOSS = QColor("#1a7f37"), QColor("#c62828")


class CocoView(View):
    """Per-scale AP of every loaded result file, against the chosen baseline."""

    title = "COCO"

    def __init__(self, state: AppState, run_job: Callable) -> None:
        super().__init__(state)
        self.run_job = run_job
        for text, slot, tip in (("Ground truth…", self.open_gt, "the COCO annotation json (instances_*.json)"),
                                ("Add results…", self.add_results, "one detection json per backbone"),
                                ("Remove", self.remove_result, "remove the chosen backbone's results")):
            b = QPushButton(text)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            self.controls.addWidget(b)
        self.baseline = QComboBox()
        self.baseline.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.baseline.currentTextChanged.connect(self._baseline_chosen)
        self.kind = QComboBox()
        self.kind.addItems(["table", "sizes", "pr"])
        self.kind.setToolTip("the figure Export and Copy write (table, AP by size, PR curves)")
        for text, w in (("baseline", self.baseline), ("figure", self.kind)):
            self.controls.addWidget(QLabel(text))
            self.controls.addWidget(w)

        self.table = QTableWidget()
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.itemSelectionChanged.connect(self._row_chosen)
        self.bars = pg.PlotWidget()
        self.bars.setLabel("left", "AP (%)")
        self.bars.getPlotItem().setMenuEnabled(False)
        self.bars.setMouseEnabled(x=False, y=False)
        self.bars_legend = self.bars.addLegend(offset=(10, 10), labelTextSize="8pt")
        self.pr = pg.GraphicsLayoutWidget()
        plots = QSplitter(Qt.Horizontal)
        plots.addWidget(self.bars)
        plots.addWidget(self.pr)
        plots.setSizes([380, 720])
        body = QSplitter(Qt.Vertical)
        body.addWidget(self.table)
        body.addWidget(plots)
        body.setSizes([190, 520])
        self.set_display(body)
        self.pr_plots: dict[str, pg.PlotItem] = {}
        state.coco_changed.connect(self._coco_changed)

    # -- files
    def open_gt(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "COCO ground truth", "", "JSON (*.json)")
        if path:
            self.state.update_settings(coco_gt=path)
            self.evaluate()

    def add_results(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "COCO result files (one per backbone)", "", "JSON (*.json)")
        self.add_result_files(paths)

    def add_result_files(self, paths) -> None:
        for p in paths:
            self.state.settings.coco_results[Path(p).stem] = str(p)
        if paths:
            self.evaluate()

    def remove_result(self) -> None:
        row = self.table.currentRow()
        if row < 0:
            self.state.notify("warning", "choose a backbone's row in the table to remove its results")
            return
        name = self.table.item(row, 0).text()
        self.state.settings.coco_results.pop(name, None)
        self.state.set_coco({k: v for k, v in self.state.coco.items() if k != name})

    def evaluate(self) -> None:
        s = self.state.settings
        if not s.coco_gt:
            if s.coco_results:
                self.state.notify("warning", "COCO: open the ground-truth json (Ground truth…) to evaluate")
            return
        if not s.coco_results:
            return
        from fishspine.analysis.coco import iter_evaluate

        self.run_job("COCO evaluation", partial(iter_evaluate, s.coco_gt, dict(s.coco_results), "bbox"),
                     self.state.set_coco)

    # -- state -> widgets
    def _coco_changed(self) -> None:
        self.baseline.blockSignals(True)
        self.baseline.clear()
        self.baseline.addItems(["(none)"] + list(self.state.coco))
        chosen = self.state.settings.coco_baseline
        self.baseline.setCurrentText(chosen if chosen in self.state.coco else "(none)")
        self.baseline.blockSignals(False)
        self.refresh()

    def _baseline_chosen(self, text: str) -> None:
        self.state.settings.coco_baseline = text if text in self.state.coco else ""
        self.refresh()

    def base(self) -> str | None:
        b = self.state.settings.coco_baseline
        return b if b in self.state.coco else None

    def show_state(self) -> bool:
        from fishspine.analysis.coco import per_scale_table

        evals = self.state.coco
        if not evals:
            return False
        base = self.base()
        rows = per_scale_table(evals, base)
        self._fill_table(rows, base)
        self._draw_bars(rows, base)
        self._draw_pr(evals)
        first = next(iter(evals.values()))
        self.info.setText(f"COCO {first.iou_type} · object size from the {first.area_source}"
                          + (f" · Δ against {base}" if base else ""))
        return True

    def _fill_table(self, rows: list[dict], base: str | None) -> None:
        self.table.clear()
        self.table.setColumnCount(1 + len(COLUMNS))
        self.table.setRowCount(len(rows))
        self.table.setHorizontalHeaderLabels(["backbone"] + [c.replace("_", " ") for c in COLUMNS])
        bold = QFont()
        bold.setBold(True)
        for i, r in enumerate(rows):
            name = QTableWidgetItem(r["backbone"])
            name.setForeground(QBrush(QColor(model_qcolor(i))))
            name.setFont(bold)
            if r["backbone"] == base:
                name.setToolTip("the baseline")
            self.table.setItem(i, 0, name)
            for j, c in enumerate(COLUMNS, start=1):
                v, d = r.get(c, math.nan), r.get(f"Δ{c}")
                text = "–" if math.isnan(v) else f"{v:.1f}"
                item = QTableWidgetItem(text)
                if d is not None and not math.isnan(d):
                    item.setText(f"{text}  ({d:+.1f})")
                    if abs(d) >= 0.05:
                        item.setForeground(QBrush(GAIN if d > 0 else LOSS))
                if r["backbone"] == base:
                    item.setBackground(QBrush(QColor("#eef3fb")))
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.table.setItem(i, j, item)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)

    def _draw_bars(self, rows: list[dict], base: str | None) -> None:
        self.bars.clear()
        self.bars_legend.clear()
        n = len(rows)
        width = 0.8 / max(n, 1)
        top = 0.0
        for j, r in enumerate(rows):
            xs = np.arange(len(SIZES)) + (j - (n - 1) / 2) * width
            vals = [0.0 if math.isnan(r[k]) else r[k] for _, k in SIZES]
            top = max(top, *vals)
            color = model_qcolor(j)
            bars = pg.BarGraphItem(x=xs, height=vals, width=width * 0.92, brush=color, pen=None, name=r["backbone"])
            self.bars.addItem(bars)  # named: the legend lists it
            for x, v, (_, k) in zip(xs, vals, SIZES):
                d = r.get(f"Δ{k}")
                label = f"{v:.1f}" if d is None or math.isnan(d) else f"{d:+.1f}"
                text = pg.TextItem(label, color="#333", anchor=(0.5, 1.0))
                text.setFont(QFont("", 7))
                text.setPos(x, v)
                self.bars.addItem(text)
        axis = self.bars.getAxis("bottom")
        axis.setTicks([[(i, f"{s} ({k.replace('_', ' ')})") for i, (s, k) in enumerate(SIZES)]])
        self.bars.setXRange(-0.6, len(SIZES) - 0.4, padding=0)
        self.bars.setYRange(0, max(top * 1.25, 1.0), padding=0)
        self.bars.setTitle("AP by object size" + (f" · labels: Δ against {base}" if base else ""), size="9pt")

    def _draw_pr(self, evals) -> None:
        areas = list(next(iter(evals.values())).area_ranges)
        if list(self.pr_plots) != areas:
            self.pr.clear()
            self.pr_plots = {}
            for i, area in enumerate(areas):
                p = self.pr.addPlot(row=0, col=i, title=area)
                p.setXRange(0, 1, padding=0.02)
                p.setYRange(0, 1.02, padding=0)
                p.setLabel("bottom", "recall")
                if i == 0:
                    p.setLabel("left", "precision (IoU 0.50)")
                p.addLegend(offset=(5, -5), labelTextSize="7pt")
                p.setMenuEnabled(False)
                self.pr_plots[area] = p
        for area, p in self.pr_plots.items():
            p.clear()
            if p.legend is not None:
                p.legend.clear()
            for j, (name, ev) in enumerate(evals.items()):
                rec, prec = ev.pr_curve(area, 0.5)
                ap = ev.average_precision(area, iou=0.5)
                ok = np.isfinite(prec)
                p.plot(rec[ok], prec[ok], pen=pg.mkPen(model_qcolor(j), width=2),
                       name=f"{name} ({'–' if math.isnan(ap) else f'{100 * ap:.1f}'})")

    def _row_chosen(self) -> None:
        row = self.table.currentRow()
        if 0 <= row < self.table.rowCount() and self.table.item(row, 0) is not None:
            name = self.table.item(row, 0).text()
            ev = self.state.coco.get(name)
            if ev is not None:
                self.info.setText(f"{name}: {Path(self.state.settings.coco_results.get(name, '')).name or name} · "
                                  f"AP {100 * ev.average_precision():.1f}")

    # -- export
    def export_figure(self):
        from fishspine.analysis.coco_figures import pr_curves_figure, size_bars_figure, table_figure

        evals, base = self.state.coco, self.base()
        return {"table": lambda: table_figure(evals, base), "sizes": lambda: size_bars_figure(evals, base),
                "pr": lambda: pr_curves_figure(evals, 0.5)}[self.kind.currentText()]()

    def export_data(self):
        from fishspine.analysis.coco import per_scale_table

        base = self.base()
        rows = per_scale_table(self.state.coco, base)
        return rows, {"baseline": base, "table": rows}

