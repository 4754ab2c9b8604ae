"""The architecture tab: one model's block graph as pyqtgraph items, with pan, zoom, hover and click.

The graph (blocks, edges, layout, parameters and MACs) is built by `analysis.graph` in a worker, once
per model. On screen, rows are scale levels (finest on top, the left axis names stride and feature
size), edges are the layout's Bezier routes (one curve item per edge kind), nodes one scatter item
sized by channels and coloured by role or by a per-block number (log colour scale). Names are placed
after every zoom: every block's name when the names fit, else each stage's run of blocks once. The
export is the command line's matplotlib figure of the same graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QFont, QFontMetricsF, QPainterPath
from PySide6.QtWidgets import QComboBox, QGraphicsPathItem, QLabel

from fishspine.analysis.architecture.macs import format_count
from fishspine.analysis.jobs import Progress
from fishspine.analysis.options import GRAPH_COLOR_BY
from fishspine.app.components.state import AppState, ModelEntry
from fishspine.app.qt.views.base import SELECTED_PEN, View, bind_setting, lookup_table, show_block_map

if TYPE_CHECKING:
    from fishspine.analysis.architecture.graph import ArchitectureGraph

RunJob = Callable[[str, Callable[[], Iterator[Any]], Callable[[Any], None]], Any]

COLOR_BY = GRAPH_COLOR_BY
VALUE_LABEL = {"params": "parameters per block", "macs": "MACs per block", "gradient": "‖∂L/∂ block output‖₂"}
LEVEL_SHADES = ("#eef1f5", "#fafbfc")
LABEL_PT = 8.0  # block and stage names
LABEL_GAP_PX = 2.0  # between a marker and its name
LABEL_PAD_PX = 4.0  # between two names
EDGE_SAMPLES = 24  # points per Bezier route
MIN_DIAMETER_PX, MAX_DIAMETER_PX = 7.0, 24.0


def _bezier(routes: np.ndarray, n: int) -> np.ndarray:
    """(edges, n, 2) points along cubic Beziers given as (edges, 4, 2) control points."""
    t = np.linspace(0.0, 1.0, n)[None, :, None]
    p0, p1, p2, p3 = (routes[:, i, None, :] for i in range(4))
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def _short_number(v: float) -> str:
    """1.2M, 35k, 0.0031: colour bar ticks."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


class ArchitectureView(View):
    """One model's block graph in its natural layout; nodes coloured by role or by a per-block number."""

    title = "Architecture"
    COLOR_BY = COLOR_BY

    def __init__(self, state: AppState, run_job: RunJob) -> None:
        super().__init__(state)
        self.run_job = run_job
        self.model_box = QComboBox()
        self.model_box.setMinimumContentsLength(14)
        self.color_box = QComboBox()
        self.color_box.addItems(COLOR_BY)
        self.color_box.setToolTip(
            "node colour: block role, or a per-block number on a log scale (gradient: after an image was analysed)"
        )
        # "" (never chosen) shows the first choice, role.
        bind_setting(
            state,
            self.color_box,
            "graph_color_by",
            self._recolor_shown,
            from_setting=lambda how: how if how in COLOR_BY else COLOR_BY[0],
        )
        self.controls.addWidget(QLabel("model"))
        self.controls.addWidget(self.model_box)
        self.controls.addWidget(QLabel("colour by"))
        self.controls.addWidget(self.color_box)

        self.canvas = pg.GraphicsLayoutWidget()
        self.plot: pg.PlotItem = self.canvas.addPlot(row=0, col=0)
        self.box: pg.ViewBox = self.plot.getViewBox()
        self.box.invertY(True)  # fine resolutions on top, as in the figure
        self.box.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setMenuEnabled(False)
        self.plot.showAxis("top")
        for side in ("top", "bottom"):
            self.plot.getAxis(side).setStyle(tickLength=0)
        self.plot.getAxis("left").setStyle(tickLength=0)
        self.plot.getAxis("bottom").setStyle(showValues=False)
        self.plot.getAxis("bottom").setTicks([[], []])
        self.plot.setLabel("bottom", "forward order →")
        self.legend = pg.LabelItem(justify="left")
        self.legend.setMaximumWidth(220)
        self.canvas.addItem(self.legend, row=0, col=1)
        self.canvas.ci.layout.setAlignment(self.legend, Qt.AlignTop)
        self.colorbar = pg.ColorBarItem(
            orientation="horizontal",
            interactive=False,
            width=12,
            colorMap=pg.colormap.get("viridis", source="matplotlib"),
        )
        self.colorbar.setMaximumWidth(420)
        self._colorbar_shown = False
        # Items kept for every graph (new data, not new items, when the model changes).
        self.shades = [QGraphicsPathItem() for _ in LEVEL_SHADES]
        for item, shade in zip(self.shades, LEVEL_SHADES):
            item.setPen(pg.mkPen(None))
            item.setBrush(pg.mkBrush(shade))
            item.setZValue(-10)
        self.cuts = pg.PlotCurveItem(pen=pg.mkPen("#b8bec6", width=1, style=Qt.DashLine))
        self.edge_curves: dict[str, pg.PlotCurveItem] = {}
        self.nodes = pg.ScatterPlotItem(symbol="o", pxMode=True, hoverable=False)
        self.nodes.setZValue(3)
        self.ring = pg.ScatterPlotItem(symbol="o", pen=SELECTED_PEN, brush=None, pxMode=True)
        self.ring.setZValue(4)
        self.hover_label = pg.TextItem(
            "", color="#000000", anchor=(0.5, 1.0), fill=pg.mkBrush(255, 255, 224, 235), border=pg.mkPen("#999999")
        )
        self.hover_label.setZValue(20)
        self.hover_label.hide()
        for item in (*self.shades, self.cuts, self.nodes, self.ring, self.hover_label):
            self.plot.addItem(item)
        self.set_display(self.canvas)

        self._label_font = QFont()
        self._label_font.setPointSizeF(LABEL_PT)
        # What a name's box is measured with when deciding whether names fit; anything with
        # height() and horizontalAdvance(text), so a test can give sizes that no installed font decides.
        self.label_metrics = QFontMetricsF(self._label_font)
        self.hover_label.setFont(self._label_font)
        self._graphs: dict[int, ArchitectureGraph] = {}  # id(model) -> its graph (a rename keeps it)
        self._pending: dict[int, Any] = {}  # id(model) -> the worker building its graph
        self._in_show = False
        self._waiting_text = self.placeholder.text()
        self.graph: ArchitectureGraph | None = None
        self.shown_key: tuple[str, int] | None = None
        self.shown_model = ""
        self.colored_by = ""
        self.build_seconds = 0.0  # UI-thread time of the last full build of the items
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._xy = np.zeros((0, 2))
        self._radius_frac = np.zeros(0)  # node diameter as a fraction of the largest
        self._diameter = np.zeros(0)
        self._edge_points = np.zeros((0, 2))
        self.selected = ""
        self.node_labels: dict[str, pg.TextItem] = {}  # made when first shown
        self.group_labels: list[tuple[Any, pg.TextItem | None]] = []
        self._spare_labels: list[pg.TextItem] = []
        self.label_mode = ""  # "nodes" or "groups": what the last placement showed

        self._place_timer = QTimer(self, singleShot=True, interval=10)
        self._place_timer.timeout.connect(self._zoomed)
        self.box.sigRangeChanged.connect(lambda *_: self._place_timer.start())
        self.box.sigResized.connect(lambda *_: self._place_timer.start())
        self.canvas.scene().sigMouseMoved.connect(self.hover)
        self.canvas.scene().sigMouseClicked.connect(self._scene_clicked)
        self.model_box.currentTextChanged.connect(lambda _t: self.refresh())
        state.models_changed.connect(self._models_changed)
        state.results_changed.connect(self._results_changed)
        self._models_changed()

    # ------------------------------------------------------------------ state
    def entry(self) -> ModelEntry | None:
        """The chosen model's entry, or None."""
        label = self.model_box.currentText()
        return next((m for m in self.state.models if m.label == label), None)

    def _models_changed(self) -> None:
        current = self.model_box.currentData()  # id of the chosen model: it stays chosen when renamed
        self.model_box.blockSignals(True)
        self.model_box.clear()
        for m in self.state.models:
            self.model_box.addItem(m.label, id(m.model))
        if self.model_box.findData(current) >= 0:
            self.model_box.setCurrentIndex(self.model_box.findData(current))
        self.model_box.blockSignals(False)
        live = {id(m.model) for m in self.state.models}
        self._graphs = {k: g for k, g in self._graphs.items() if k in live}
        entry = self.entry()
        key = None if entry is None else (entry.label, id(entry.model))
        if self.isVisible():
            self.refresh()
        elif key != self.shown_key:
            self.has_content = False  # the shown graph is not the chosen model's any more
            self.stack.setCurrentIndex(0)

    def _recolor_shown(self) -> None:
        if self.graph is not None:
            self.recolor()

    def _results_changed(self) -> None:
        if self.graph is not None and self.color_box.currentText() == "gradient":
            self.recolor()

    def show_state(self) -> bool:
        entry = self.entry()
        if entry is None:
            self.placeholder.setText(self._waiting_text)
            return False
        key, gid = (entry.label, id(entry.model)), id(entry.model)
        if gid not in self._graphs:
            self._start_graph_job(entry, gid)
            if gid not in self._graphs:  # a synchronous run_job has it already
                if gid in self._pending:
                    self.placeholder.setText(f"Building the graph of {entry.label}…")
                return False
        if key != self.shown_key:
            self.draw(self._graphs[gid], entry.label)
            self.shown_key = key
        elif self.colored_by != self._color_signature():
            self.recolor()
        return True

    def _start_graph_job(self, entry: ModelEntry, key: int) -> None:
        if key in self._pending and not getattr(self._pending[key], "done", True):
            return  # being built (a cancelled or lost job is started again)
        self._pending[key] = None
        model, size = entry.model, entry.model.spec.input_size

        def job():
            from fishspine.analysis.architecture.graph import architecture_graph

            yield Progress(0, 1, f"graph of {entry.label}")
            try:
                return architecture_graph(model, size)
            except Exception as exc:  # noqa: BLE001 - reported below; the view stays usable
                return exc

        def arrived(graph) -> None:
            self._pending.pop(key, None)
            if isinstance(graph, Exception):
                text = f"The graph of {entry.label} could not be built ({type(graph).__name__}: {graph})"
                self.state.notify("error", f"Architecture: {text}")
                self.placeholder.setText(f"{text}; switch tabs or models to try again")
                return
            if graph is None or not any(id(m.model) == key for m in self.state.models):
                return
            self._graphs[key] = graph
            entry_now = self.entry()
            if not self._in_show and entry_now is not None and id(entry_now.model) == key:
                self.refresh()

        self._in_show = True
        try:
            worker = self.run_job(f"architecture of {entry.label}", job, arrived)
        finally:
            self._in_show = False
        if key in self._pending:  # still building (a synchronous run_job has delivered already)
            self._pending[key] = worker

    # ------------------------------------------------------------------ values and colours
    def values(self) -> dict[str, float] | None:
        """Block name -> the number nodes are coloured by, or None for role colours."""
        graph, how = self.graph, self.color_box.currentText()
        if graph is None:
            return None
        if how in ("params", "macs"):
            return {n.name: float(getattr(n, how)) for n in graph.nodes}
        insight = self.state.insights.get(self.shown_model)
        if how == "gradient" and insight is not None:
            t = insight.trace
            return {b: float(v) for b, v in zip(t.blocks, t.output_grad_norm)}
        return None

    def _color_signature(self) -> str:
        how = self.color_box.currentText()
        if how == "gradient":
            insight = self.state.insights.get(self.shown_model)
            return f"gradient:{id(insight)}"
        return how

    def recolor(self) -> None:
        """Brushes (and the legend and colour bar) for the current "colour by"; nothing else is rebuilt."""
        from fishspine.analysis.figures.architecture import NO_VALUE_COLOR, ROLE_COLORS

        graph = self.graph
        if graph is None:
            return
        values = self.values()
        self.colored_by = self._color_signature()
        has_missing = False
        if values is None:
            brushes = [pg.mkBrush(ROLE_COLORS.get(n.role, "#333333")) for n in graph.nodes]
            pens = pg.mkPen("w", width=1.0)
            span = None
        else:
            vals = np.array([values.get(n.name, np.nan) for n in graph.nodes], dtype=float)
            with np.errstate(invalid="ignore"):
                known = np.isfinite(vals) & (vals > 0)
            has_missing = not known.all()
            lo, hi = (float(vals[known].min()), float(vals[known].max())) if known.any() else (1.0, 10.0)
            if lo == hi:  # one value: a colour scale still needs a range
                lo, hi = lo / 2, hi * 2
            span = (math.log10(lo), math.log10(hi))
            frac = np.zeros(len(vals))
            frac[known] = (np.log10(vals[known]) - span[0]) / (span[1] - span[0])
            rgba = lookup_table("viridis")[np.clip(np.round(frac * 255), 0, 255).astype(int)]
            no_value, edge, grey = pg.mkBrush(NO_VALUE_COLOR), pg.mkPen("#333333", width=0.8), pg.mkPen("#777777")
            brushes = [pg.mkBrush(*rgba[i]) if known[i] else no_value for i in range(len(vals))]
            pens = [edge if known[i] else grey for i in range(len(vals))]
        self.nodes.setBrush(brushes, update=False)
        self.nodes.setPen(pens)
        self._show_colorbar(span)
        self._fill_legend(values is None, has_missing, values is not None)

    def _show_colorbar(self, span: tuple[float, float] | None) -> None:
        if span is None:
            if self._colorbar_shown:
                self.canvas.ci.removeItem(self.colorbar)
                self.colorbar.hide()
                self._colorbar_shown = False
            return
        if not self._colorbar_shown:
            self.canvas.ci.addItem(self.colorbar, row=1, col=0)
            self.canvas.ci.layout.setAlignment(self.colorbar, Qt.AlignHCenter)
            self.colorbar.show()
            self._colorbar_shown = True
        lo, hi = span
        self.colorbar.setLevels((lo, hi))
        decades = range(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1)
        major = [(float(d), _short_number(10.0**d)) for d in decades]
        if len(major) < 2:  # a narrow range: name its ends
            major = [(lo, _short_number(10**lo)), (hi, _short_number(10**hi))]
        minor = [
            (d + math.log10(k), "")
            for d in range(math.floor(lo), math.ceil(hi) + 1)
            for k in range(2, 10)
            if lo <= d + math.log10(k) <= hi
        ]
        self.colorbar.axis.setTicks([major, minor])
        how = self.color_box.currentText()
        self.colorbar.getAxis("bottom").setLabel(
            f"{VALUE_LABEL.get(how, how)}, log scale: {_short_number(10**lo)} to {_short_number(10**hi)}"
        )

    def _fill_legend(self, by_role: bool, has_missing: bool, log_values: bool) -> None:
        """Edge kinds, node colours and marker sizes, as one rich-text label (cheap to redo on a recolour)."""
        from fishspine.analysis.architecture.graph import EDGE_KIND_LABELS, EDGE_KINDS
        from fishspine.analysis.figures.architecture import EDGE_STYLE, ROLE_COLORS

        graph = self.graph
        kinds = {e.kind for e in graph.edges}
        lines = [
            f'<span style="color:{EDGE_STYLE[k][0]}; font-size:13pt">━━</span>&nbsp;{EDGE_KIND_LABELS[k]}'
            for k in EDGE_KINDS
            if k in kinds
        ]
        dot = '<span style="color:{}; font-size:{}pt">●</span>&nbsp;{}'
        if by_role:
            lines += [
                dot.format(ROLE_COLORS.get(r, "#333333"), 12, r) for r in dict.fromkeys(n.role for n in graph.nodes)
            ]
        if has_missing:
            lines.append(
                '<span style="color:#777777; font-size:12pt">○</span>&nbsp;no value' + (" or ≤ 0" if log_values else "")
            )
        narrow = min(graph.nodes, key=lambda n: n.channels)
        wide = max(graph.nodes, key=lambda n: n.channels)
        for n in dict.fromkeys((narrow, wide)):
            size = 7 + 9 * self._radius_frac[self._index[n.name]]
            lines.append(dot.format("#b0b0b0", f"{size:.0f}", f"{n.channels} channels"))
        self.legend.setText("<br>".join(lines), size="9pt", color="#222222")

    # ------------------------------------------------------------------ drawing
    def draw(self, graph: ArchitectureGraph, label: str) -> None:
        """Show `graph`: new data in the kept items (bands, edges, nodes), new names; colours follow "colour by"."""
        import time

        from fishspine.analysis.figures.architecture import EDGE_STYLE, ROW_IN, _node_radii, column_width, y_limits

        t0 = time.perf_counter()
        self.graph, self.shown_model, self.selected = graph, label, ""
        self._names = [n.name for n in graph.nodes]
        self._index = {name: i for i, name in enumerate(self._names)}
        self._xy = np.array([graph.positions[n] for n in self._names], dtype=float)
        xs = self._xy[:, 0]
        x0, x1 = float(xs.min()) - 0.8, float(xs.max()) + 0.8
        top, bottom = y_limits(graph)
        levels = graph.levels
        n_columns = xs.max() - xs.min() + 1

        # One row per scale level, shaded alternately; the left axis names its stride and size.
        paths = [QPainterPath() for _ in self.shades]
        for i, lvl in enumerate(levels):
            paths[i % 2].addRect(QRectF(x0, lvl - 0.5, x1 - x0, 1.0))
        for item, path in zip(self.shades, paths):
            item.setPath(path)
        self.plot.getAxis("left").setTicks([[(lvl, f"1/{2**lvl} · {graph.feature_size(lvl)}²") for lvl in levels]])
        self.plot.setLabel("left", f"resolution: 1/stride · feature side at {graph.input_size}² input")
        # Segments of the layout (roles, stages) named along the top, split by faint lines.
        self.plot.getAxis("top").setTicks([[((b.x_start + b.x_end) / 2, b.label) for b in graph.bands]])
        cuts = [(a.x_end + b.x_start) / 2 for a, b in zip(graph.bands, graph.bands[1:])]
        self.cuts.setData(np.repeat(cuts, 2), np.tile([top, bottom], len(cuts)), connect="pairs")

        # Edges: one curve per kind, every route sampled, kept apart by a connect mask.
        points = []
        for z, (kind, (color, width)) in enumerate(EDGE_STYLE.items()):
            edges = [e for e in graph.edges if e.kind == kind]
            curve = self.edge_curves.get(kind)
            if curve is None:
                curve = self.edge_curves[kind] = pg.PlotCurveItem(pen=pg.mkPen(color, width=1.2 + width))
                curve.setZValue(1 + z * 0.1)  # cross-scale and lateral over sequential
                self.plot.addItem(curve)
            if not edges:
                curve.setData([], [])
                continue
            pts = _bezier(np.array([graph.route(e) for e in edges], dtype=float), EDGE_SAMPLES)
            points.append(pts.reshape(-1, 2))
            connect = np.ones(pts.shape[:2], dtype=bool)
            connect[:, -1] = False
            curve.setData(pts[..., 0].ravel(), pts[..., 1].ravel(), connect=connect.ravel())
        self._edge_points = np.concatenate(points) if points else np.zeros((0, 2))

        # Nodes: one scatter, area growing with channels as in the figure.
        radii = _node_radii(graph, max_diameter=1.0)
        self._radius_frac = np.array([(2 * radii[n] - 0.42) / 0.58 for n in self._names])
        # A level is as many columns high as in the exported figure, or more for long flat graphs,
        # so that the fitted diagram is at least 0.6 times as high as wide and fills a screen better.
        row_columns = max(ROW_IN / column_width(n_columns), 0.6 * (x1 - x0) / (bottom - top))
        self.box.setAspectLocked(True, ratio=1.0 / row_columns)
        # Zoom bounds on x only: with the aspect locked, bounds on y too would fight it and crop the fit.
        self.box.setLimits(minXRange=2.0, maxXRange=4.0 * (x1 - x0))
        self.box.enableAutoRange()  # fits the bands and routes until the user zooms or pans, whatever the size
        self._diameter = self._diameters()
        self.nodes.setData(x=xs, y=self._xy[:, 1], size=self._diameter)
        self.ring.setData([], [])

        # Names: made when first shown (`place_labels`, after every zoom).
        for t in [*self.node_labels.values(), *(t for _g, t in self.group_labels if t is not None)]:
            t.hide()
            self._spare_labels.append(t)
        self.node_labels = {}
        band_spans = {(b.label, b.x_start, b.x_end) for b in graph.bands}
        self.group_labels = [
            (g, None)
            for g in sorted(graph.stages, key=lambda g: (-len(g.members), g.x_start, g.level))
            if (g.members[0].split(".", 1)[0], g.x_start, g.x_end) not in band_spans
        ]
        self.hover_label.hide()

        params = sum(n.params for n in graph.nodes)
        macs = sum(n.macs for n in graph.nodes)
        facts = [f"{len(graph.nodes)} blocks", f"{params / 1e6:.2f} M parameters in blocks"]
        if macs:
            facts.append(f"{format_count(macs, 'MACs')} at {graph.input_size}²")
        variant = f"{graph.model}, " if graph.model != label else ""
        self.plot.setTitle(f"<b>{label}</b> ({variant}{graph.layout} layout) · {', '.join(facts)}", size="10pt")
        self.colored_by = ""
        self.recolor()
        self.place_labels()
        self.build_seconds = time.perf_counter() - t0

    def _label_item(self, text: str) -> pg.TextItem:
        """A name on the plot: one of the previous graph's if any is spare (new text items are slow)."""
        if self._spare_labels:
            item = self._spare_labels.pop()
            item.setText(text)
            return item
        item = pg.TextItem(text, color="#222222", anchor=(0.5, 0.0), fill=pg.mkBrush(255, 255, 255, 210))
        item.setFont(self._label_font)
        item.setZValue(5)
        self.plot.addItem(item)
        return item

    def _diameters(self) -> np.ndarray:
        """Marker diameters in pixels: the widest block fills about 72% of a column at this zoom."""
        px_per_column = 1.0 / max(self.box.viewPixelSize()[0], 1e-9)
        biggest = float(np.clip(0.72 * px_per_column, 10.0, MAX_DIAMETER_PX))
        smallest = max(MIN_DIAMETER_PX, 0.42 * biggest)
        return smallest + (biggest - smallest) * self._radius_frac

    def _zoomed(self) -> None:
        if self.graph is None:
            return
        d = self._diameters()
        if not np.allclose(d, self._diameter):
            self._diameter = d
            self.nodes.setSize(d)
            self._update_ring()
        self.place_labels()

    # ------------------------------------------------------------------ names
    def _to_px(self, xy: np.ndarray) -> np.ndarray:
        """Layout coordinates -> pixels (x right, y down), up to a shared offset."""
        psx, psy = self.box.viewPixelSize()
        return xy / np.array([max(psx, 1e-12), max(psy, 1e-12)])

    def place_labels(self) -> str:
        """Show every block's name if all fit side by side, else stage names where they fit; returns which.

        As in the exported figure: each name under or over its node(s), whichever crosses fewer edges,
        never over another name or a marker.
        """
        if self.graph is None or not self._names:
            return ""
        psy = self.box.viewPixelSize()[1]
        node_px = self._to_px(self._xy)
        half = self._diameter / 2
        markers = np.column_stack([node_px - half[:, None], node_px + half[:, None]])  # x0, y0, x1, y1
        edge_px = self._to_px(self._edge_points)
        line_h = self.label_metrics.height() + 2

        def crossings(b: np.ndarray) -> int:
            inside = (edge_px[:, 0] > b[0]) & (edge_px[:, 0] < b[2]) & (edge_px[:, 1] > b[1]) & (edge_px[:, 1] < b[3])
            return int(np.count_nonzero(inside))

        def clear(b: np.ndarray, kept: list[np.ndarray]) -> bool:
            pad = LABEL_PAD_PX
            for k in kept:
                if b[0] - pad < k[2] and k[0] < b[2] + pad and b[1] < k[3] and k[1] < b[3]:
                    return False
            hit = (
                (markers[:, 0] < b[2] - 0.5)
                & (b[0] + 0.5 < markers[:, 2])
                & (markers[:, 1] < b[3] - 0.5)
                & (b[1] + 0.5 < markers[:, 3])
            )
            return not hit.any()

        def spot(indices: list[int], text: str, kept: list[np.ndarray]) -> tuple[np.ndarray, bool] | None:
            """A clear box under or over these nodes, fewest edge crossings first: (box, below)."""
            cx = (node_px[indices, 0].min() + node_px[indices, 0].max()) / 2
            cy = node_px[indices[0], 1]
            w = self.label_metrics.horizontalAdvance(text) + 4
            g = float(half[indices].max()) + LABEL_GAP_PX
            below = np.array([cx - w / 2, cy + g, cx + w / 2, cy + g + line_h])
            above = np.array([cx - w / 2, cy - g - line_h, cx + w / 2, cy - g])
            for box, is_below in sorted(((below, True), (above, False)), key=lambda c: crossings(c[0])):
                if clear(box, kept):
                    return box, is_below
            return None

        def put(item: pg.TextItem, indices: list[int], is_below: bool) -> None:
            x = float(self._xy[indices, 0].min() + self._xy[indices, 0].max()) / 2
            g = (float(half[indices].max()) + LABEL_GAP_PX) * psy
            y = float(self._xy[indices[0], 1])
            item.setAnchor((0.5, 0.0) if is_below else (0.5, 1.0))
            item.setPos(x, y + g if is_below else y - g)
            item.show()

        kept: list[np.ndarray] = []
        spots = []
        for i, name in enumerate(self._names):
            found = spot([i], name, kept)
            if found is None:
                break
            kept.append(found[0])
            spots.append((name, found[1]))
        else:
            for _g, t in self.group_labels:
                if t is not None:
                    t.hide()
            for name, is_below in spots:
                if name not in self.node_labels:
                    self.node_labels[name] = self._label_item(name)
                put(self.node_labels[name], [self._index[name]], is_below)
            self.label_mode = "nodes"
            return self.label_mode
        for t in self.node_labels.values():
            t.hide()
        kept = []
        for j, (g, t) in enumerate(self.group_labels):
            indices = [self._index[m] for m in g.members]
            found = spot(indices, g.label, kept)
            if found is None:
                if t is not None:
                    t.hide()
                continue
            kept.append(found[0])
            if t is None:
                t = self._label_item(g.label)
                self.group_labels[j] = (g, t)
            put(t, indices, found[1])
        self.label_mode = "groups"
        return self.label_mode

    # ------------------------------------------------------------------ hover, click, selection
    def scene_pos(self, name: str) -> QPointF:
        """Where block `name` is drawn, in scene coordinates."""
        x, y = self.graph.positions[name]
        return self.box.mapViewToScene(QPointF(x, y))

    def node_at(self, scene_pos: QPointF) -> str | None:
        """The block under a scene position (within its marker, plus a few pixels), or None."""
        if self.graph is None or not self._names or not self.box.sceneBoundingRect().contains(scene_pos):
            return None
        p = self.box.mapSceneToView(scene_pos)
        d = self._to_px(self._xy) - self._to_px(np.array([[p.x(), p.y()]]))
        dist = np.hypot(d[:, 0], d[:, 1]) - self._diameter / 2
        i = int(np.argmin(dist))
        return self._names[i] if dist[i] <= 4.0 else None

    def hover(self, scene_pos: QPointF) -> None:
        """Describe the block under the mouse; name it beside the marker when its label is hidden."""
        name = self.node_at(scene_pos)
        if name is None:
            self.hover_label.hide()
            return
        n = self.graph.node(name)
        self.info.setText(
            f"{n.name} · {n.role} · stride {2**n.level} · {n.channels} ch · "
            f"{format_count(n.params, ' params')} · {format_count(n.macs, 'MACs')}"
        )
        if name in self.node_labels and self.node_labels[name].isVisible():
            self.hover_label.hide()
            return
        i = self._index[name]
        psy = self.box.viewPixelSize()[1]
        self.hover_label.setText(name)
        self.hover_label.setPos(float(self._xy[i, 0]), float(self._xy[i, 1]) - (self._diameter[i] / 2 + 3) * psy)
        self.hover_label.show()

    def _scene_clicked(self, event) -> None:
        if event.button() != Qt.LeftButton or event.double():
            return
        name = self.node_at(event.scenePos())
        if name is not None:
            self.click_block(name)

    def click_block(self, name: str) -> None:
        """What a click on a node does: select the block everywhere, open its activation map if there is one."""
        label = self.shown_model
        self.state.select_block(name, model=label)
        insight = self.state.insights.get(label)
        if insight is not None:
            try:
                block = insight.activations.block(name)
            except KeyError:
                return
            show_block_map(label, block)

    def highlight(self, model: str, block: str) -> None:
        self.selected = (
            block if self.graph is not None and block in self._index and model in ("", self.shown_model) else ""
        )
        self._update_ring()

    def _update_ring(self) -> None:
        if not self.selected:
            self.ring.setData([], [])
            return
        i = self._index[self.selected]
        self.ring.setData([self._xy[i, 0]], [self._xy[i, 1]], size=float(self._diameter[i]) + 9)

    # ------------------------------------------------------------------ export
    def export_figure(self):
        from fishspine.analysis.figures.architecture import graph_figure

        values = self.values()
        how = self.color_box.currentText()
        return graph_figure(self.graph, values, how if values else "", log_values=values is not None)

    def export_data(self):
        return self.graph.rows(), self.graph.to_json()
