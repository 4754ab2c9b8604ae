"""The architecture tab: every loaded model's block graph side by side, one column each, as pyqtgraph items.

Graphs (blocks, edges, layout, parameters and MACs) are built by `analysis.architecture` in workers,
once per model. In each column, rows are scale levels (finest on top, the left axis names stride and
feature size), edges are the layout's Bezier routes (one curve item per edge kind), nodes one
scatter item sized by channels and coloured by role or by a per-block number on ONE log colour
scale shared by every column (one colour bar under them). Names are placed after every zoom: every
block's name when the names fit, else each stage's run of blocks once. The wheel zooms gently;
Reset zoom (Ctrl+0) fits every column again. A double-click opens a block: the operations inside
it, traced from the model (`analysis.architecture.interior`), in a window of its own. The model box
picks the column that Export writes (the command line's figure of that model) and hover describes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QFont, QFontMetricsF, QKeySequence, QPainterPath, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGraphicsPathItem,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from fishspine.analysis.architecture.macs import format_count
from fishspine.analysis.jobs import Progress
from fishspine.analysis.options import GRAPH_COLOR_BY
from fishspine.app.components.state import AppState, ModelEntry
from fishspine.app.qt.views import base as view_base
from fishspine.app.qt.views.base import SELECTED_PEN, View, bind_setting, lookup_table, show_block_map

if TYPE_CHECKING:
    from fishspine.analysis.architecture.graph import ArchitectureGraph
    from fishspine.analysis.architecture.interior import BlockInterior

RunJob = Callable[[str, Callable[[], Iterator[Any]], Callable[[Any], None]], Any]

COLOR_BY = GRAPH_COLOR_BY
VALUE_LABEL = {"params": "parameters per block", "macs": "MACs per block", "gradient": "‖∂L/∂ block output‖₂"}
LEVEL_SHADES = ("#eef1f5", "#fafbfc")
LABEL_PT = 8.0  # block and stage names
LABEL_GAP_PX = 2.0  # between a marker and its name
LABEL_PAD_PX = 4.0  # between two names
EDGE_SAMPLES = 24  # points per Bezier route
MIN_DIAMETER_PX, MAX_DIAMETER_PX = 7.0, 24.0
#: pyqtgraph zooms by 1.02 ** (wheel delta * factor): its -1/8 is 35% a notch; this is 10%.
WHEEL_SCALE_FACTOR = -1.0 / 24.0
RESET_ZOOM_KEYS = "Ctrl+0"


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


def shared_log_span(columns_values: list[dict[str, float] | None]) -> tuple[float, float] | None:
    """log10 of the smallest and largest positive value over every column: one colour scale for all."""
    known = [v for values in columns_values if values for v in values.values() if np.isfinite(v) and v > 0]
    if not known:
        return None if all(v is None for v in columns_values) else (0.0, 1.0)
    lo, hi = min(known), max(known)
    if lo == hi:  # one value: a colour scale still needs a range
        lo, hi = lo / 2, hi * 2
    return math.log10(lo), math.log10(hi)


class GraphColumn:
    """One model's diagram: a plot and its items, kept and refilled when its graph is drawn again."""

    def __init__(self, plot: pg.PlotItem, label_font: QFont, owner: QWidget) -> None:
        self.plot = plot
        self.box: pg.ViewBox = plot.getViewBox()
        self.box.invertY(True)  # fine resolutions on top, as in the figure
        self.box.setMenuEnabled(False)
        self.box.state["wheelScaleFactor"] = WHEEL_SCALE_FACTOR
        plot.hideButtons()
        plot.setMenuEnabled(False)
        plot.showAxis("top")
        for side in ("top", "bottom"):
            plot.getAxis(side).setStyle(tickLength=0)
        plot.getAxis("left").setStyle(tickLength=0)
        plot.getAxis("bottom").setStyle(showValues=False)
        plot.getAxis("bottom").setTicks([[], []])
        plot.setLabel("bottom", "forward order →")
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
            plot.addItem(item)
        self._label_font = label_font
        self.hover_label.setFont(label_font)
        # What a name's box is measured with when deciding whether names fit; anything with
        # height() and horizontalAdvance(text), so a test can give sizes that no installed font decides.
        self.label_metrics = QFontMetricsF(label_font)
        self.graph: ArchitectureGraph | None = None
        self.label = ""
        self.first = True  # the leftmost column, which names the rows' axis
        self.key: tuple[str, int] | None = None
        self.span: tuple[float, float] | None = None  # the log colour scale its nodes were coloured on
        self.has_missing = False
        self.build_seconds = 0.0
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._xy = np.zeros((0, 2))
        self._radius_frac = np.zeros(0)  # node diameter as a fraction of the largest
        self._diameter = np.zeros(0)
        self._edge_points = np.zeros((0, 2))
        self._band_ticks: list[tuple[float, str, float]] = []  # x, name, span of each layout segment
        self.selected = ""
        self.node_labels: dict[str, pg.TextItem] = {}  # made when first shown
        self.group_labels: list[tuple[Any, pg.TextItem | None]] = []
        self._spare_labels: list[pg.TextItem] = []
        self.label_mode = ""  # "nodes" or "groups": what the last placement showed
        self._place_timer = QTimer(owner, singleShot=True, interval=10)  # dies with the view
        self._place_timer.timeout.connect(self._zoomed)
        self.box.sigRangeChanged.connect(lambda *_: self._place_timer.start())
        self.box.sigResized.connect(lambda *_: self._place_timer.start())

    # ------------------------------------------------------------------ drawing
    def draw(self, graph: ArchitectureGraph, label: str) -> None:
        """Show `graph`: new data in the kept items (bands, edges, nodes), new names; colours by `recolor`."""
        import time

        from fishspine.analysis.figures.architecture import EDGE_STYLE, _node_radii, y_limits

        t0 = time.perf_counter()
        self.graph, self.label, self.selected = graph, label, ""
        self._names = [n.name for n in graph.nodes]
        self._index = {name: i for i, name in enumerate(self._names)}
        self._xy = np.array([graph.positions[n] for n in self._names], dtype=float)
        xs = self._xy[:, 0]
        x0, x1 = float(xs.min()) - 0.8, float(xs.max()) + 0.8
        top, bottom = y_limits(graph)
        levels = graph.levels

        # One row per scale level, shaded alternately; the left axis names its stride and size.
        paths = [QPainterPath() for _ in self.shades]
        for i, lvl in enumerate(levels):
            paths[i % 2].addRect(QRectF(x0, lvl - 0.5, x1 - x0, 1.0))
        for item, path in zip(self.shades, paths):
            item.setPath(path)
        self.plot.getAxis("left").setTicks([[(lvl, f"1/{2**lvl} · {graph.feature_size(lvl)}²") for lvl in levels]])
        self.plot.setLabel("left", f"1/stride · feature side at {graph.input_size}²")
        self.plot.getAxis("left").showLabel(self.first)  # the same words in every column: the first says them
        # Segments of the layout (roles, stages) named along the top, split by faint lines.
        self._band_ticks = [((b.x_start + b.x_end) / 2, b.label, b.x_end - b.x_start) for b in graph.bands]
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
        # Unlocked aspect: side by side, columns are tall and narrow, and a diagram locked to the
        # figure's proportions would fill a sliver of its column.
        self.box.setAspectLocked(False)
        self.box.setLimits(minXRange=2.0, maxXRange=4.0 * (x1 - x0), minYRange=0.5, maxYRange=4.0 * (bottom - top))
        self.nodes.setData(x=xs, y=self._xy[:, 1], size=MIN_DIAMETER_PX)
        self.reset_zoom()  # on the new data, before markers are sized and names placed at that zoom
        self._diameter = self._diameters()
        self.nodes.setSize(self._diameter)
        self.place_band_names()
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
        # Short lines: a title's width is its column's minimum, and the columns share the window.
        lines = [f"<b>{label}</b>", f"{graph.model + ', ' if graph.model != label else ''}{graph.layout}"]
        lines.append(f"{len(graph.nodes)} blocks · {format_count(params, ' params')}")
        if macs:
            lines.append(f"{format_count(macs, 'MACs')} at {graph.input_size}²")
        self.plot.setTitle("<br>".join(lines), size="9pt")
        height = 15 * len(lines) + 4  # pyqtgraph gives a title one line
        self.plot.titleLabel.setMaximumHeight(height)
        self.plot.titleLabel.setMinimumWidth(0)  # never widens the column: the columns share the window
        self.plot.layout.setRowFixedHeight(0, height)
        self.place_labels()
        self.build_seconds = time.perf_counter() - t0

    def reset_zoom(self) -> None:
        """Fit the whole diagram again (the view it was first shown in), now rather than at the next paint."""
        self.box.enableAutoRange()
        self.box.updateAutoRange()

    def recolor(self, values: dict[str, float] | None, span: tuple[float, float] | None) -> None:
        """Brushes by role (`values` None) or by `values` on the log scale `span` shared by every column."""
        from fishspine.analysis.figures.architecture import NO_VALUE_COLOR, ROLE_COLORS

        graph = self.graph
        self.span = None if values is None else span
        self.has_missing = False
        if values is None or span is None:
            brushes = [pg.mkBrush(ROLE_COLORS.get(n.role, "#333333")) for n in graph.nodes]
            pens = pg.mkPen("w", width=1.0)
        else:
            vals = np.array([values.get(n.name, np.nan) for n in graph.nodes], dtype=float)
            with np.errstate(invalid="ignore"):
                known = np.isfinite(vals) & (vals > 0)
            self.has_missing = not known.all()
            frac = np.zeros(len(vals))
            frac[known] = (np.log10(vals[known]) - span[0]) / max(span[1] - span[0], 1e-12)
            rgba = lookup_table("viridis")[np.clip(np.round(frac * 255), 0, 255).astype(int)]
            no_value, edge, grey = pg.mkBrush(NO_VALUE_COLOR), pg.mkPen("#333333", width=0.8), pg.mkPen("#777777")
            brushes = [pg.mkBrush(*rgba[i]) if known[i] else no_value for i in range(len(vals))]
            pens = [edge if known[i] else grey for i in range(len(vals))]
        self.nodes.setBrush(brushes, update=False)
        self.nodes.setPen(pens)

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
        self.place_band_names()
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

    def place_band_names(self) -> list[str]:
        """Name the layout's segments along the top, the widest segments first, skipping a name that
        would overlap one already placed (narrow columns); returns the names shown, left to right."""
        psx = max(self.box.viewPixelSize()[0], 1e-12)
        placed: list[tuple[float, float, float, str]] = []  # left, right, x, text
        for x, text, _span in sorted(self._band_ticks, key=lambda t: -t[2]):
            half = (self.label_metrics.horizontalAdvance(text) + 6) / 2
            left, right = x / psx - half, x / psx + half
            if all(right <= a or left >= b for a, b, _x, _t in placed):
                placed.append((left, right, x, text))
        shown = sorted((x, text) for _a, _b, x, text in placed)
        self.plot.getAxis("top").setTicks([shown])
        return [t for _x, t in shown]

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

    def show_hover(self, name: str | None) -> None:
        """Name the hovered block beside its marker when its own name is hidden; None hides it."""
        if name is None or (name in self.node_labels and self.node_labels[name].isVisible()):
            self.hover_label.hide()
            return
        i = self._index[name]
        psy = self.box.viewPixelSize()[1]
        self.hover_label.setText(name)
        self.hover_label.setPos(float(self._xy[i, 0]), float(self._xy[i, 1]) - (self._diameter[i] / 2 + 3) * psy)
        self.hover_label.show()

    def highlight(self, model: str, block: str) -> None:
        """Ring `block` when it is this column's (or any model's, `model` "")."""
        self.selected = block if self.graph is not None and block in self._index and model in ("", self.label) else ""
        self._update_ring()

    def _update_ring(self) -> None:
        if not self.selected:
            self.ring.setData([], [])
            return
        i = self._index[self.selected]
        self.ring.setData([self._xy[i, 0]], [self._xy[i, 1]], size=float(self._diameter[i]) + 9)


class BlockInteriorWindow(QWidget):
    """What is inside one block (the figure `fishspine graph --expand` writes), in a window of its own."""

    def __init__(self, label: str, interior: BlockInterior) -> None:
        super().__init__()
        import io

        from fishspine.analysis.figures.interior import interior_figure

        self.interior = interior
        self.setWindowTitle(f"{label} · inside {interior.block} · {len(interior.operations) - 1} operations")
        layout = QVBoxLayout(self)
        bar = QHBoxLayout()
        from fishspine.analysis.architecture.interior import describe

        # What changes resolution inside the block is what sets it apart (SCNet's pooled calibration).
        facts = [f"{len(interior.operations) - 1} operations", *(describe(o) for o in interior.resamplings)]
        self.summary = QLabel("; ".join(facts))
        self.summary.setTextInteractionFlags(Qt.TextSelectableByMouse)
        bar.addWidget(self.summary, 1)
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(self.export_dialog)
        bar.addWidget(self.export_button)
        layout.addLayout(bar)
        self.figure = interior_figure(interior)
        self.image = QLabel()
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=110)  # screen resolution; the export keeps its own
        pixmap = QPixmap()
        pixmap.loadFromData(buf.getvalue())
        self.image.setPixmap(pixmap)
        scroll = QScrollArea()
        scroll.setWidget(self.image)
        layout.addWidget(scroll, 1)
        self.resize(min(1400, pixmap.width() + 40), min(700, pixmap.height() + 80))
        self.setAttribute(Qt.WA_DeleteOnClose)

    def export(self, stem: str) -> list:
        """The figure (PNG, SVG, PDF) and its data (CSV, JSON), as `fishspine graph --expand` writes them."""
        from fishspine.analysis.figures.base import ViewExport
        from fishspine.analysis.figures.interior import interior_figure

        interior = self.interior
        return ViewExport(lambda: interior_figure(interior), interior.rows(), interior.to_json()).write(stem)

    def export_dialog(self) -> None:
        """Ask for a file stem and export there."""
        from pathlib import Path

        from PySide6.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self, "Export the block's inside", f"{self.interior.block}.pdf")
        if path:
            self.export(str(Path(path).with_suffix("")))


class ArchitectureView(View):
    """Every loaded model's block graph side by side in its natural layout; one colour scale across them."""

    title = "Architecture"
    COLOR_BY = COLOR_BY

    def __init__(self, state: AppState, run_job: RunJob) -> None:
        super().__init__(state)
        self.run_job = run_job
        self.model_box = QComboBox()
        self.model_box.setMinimumContentsLength(14)
        self.model_box.setToolTip("the column that Export writes (the command line's figure of that model)")
        self.color_box = QComboBox()
        self.color_box.addItems(COLOR_BY)
        self.color_box.setToolTip(
            "node colour: block role, or a per-block number on one log scale for every column"
            " (gradient: after an image was analysed)"
        )
        # "" (never chosen) shows the first choice, role.
        bind_setting(
            state,
            self.color_box,
            "graph_color_by",
            self._recolor_shown,
            from_setting=lambda how: how if how in COLOR_BY else COLOR_BY[0],
        )
        self.reset_button = QPushButton("Reset zoom")
        self.reset_button.setToolTip(f"fit every column again ({RESET_ZOOM_KEYS})")
        self.reset_button.clicked.connect(self.reset_zoom)
        self.reset_shortcut = QShortcut(QKeySequence(RESET_ZOOM_KEYS), self)
        self.reset_shortcut.activated.connect(self.reset_zoom)
        self.open_button = QPushButton("Open block")
        self.open_button.setToolTip("show the operations inside the selected block (or double-click a block)")
        self.open_button.clicked.connect(self._open_selected)
        self.all_columns = QCheckBox("all columns")
        self.all_columns.setToolTip(
            "Export every column side by side on the one colour scale (as `fishspine graph A B …`),"
            " not only the chosen model"
        )
        self.controls.addWidget(QLabel("export"))
        self.controls.addWidget(self.model_box)
        self.controls.addWidget(self.all_columns)
        self.controls.addWidget(QLabel("colour by"))
        self.controls.addWidget(self.color_box)
        self.controls.addWidget(self.reset_button)
        self.controls.addWidget(self.open_button)

        self.canvas = pg.GraphicsLayoutWidget()
        self.legend = pg.LabelItem(justify="left")

        self.colorbar = pg.ColorBarItem(
            orientation="horizontal",
            interactive=False,
            width=12,
            colorMap=pg.colormap.get("viridis", source="matplotlib"),
        )
        self.colorbar.setMaximumWidth(520)
        self._colorbar_shown = False
        self.set_display(self.canvas)

        self._label_font = QFont()
        self._label_font.setPointSizeF(LABEL_PT)
        self._columns: dict[int, GraphColumn] = {}  # id(model) -> its column (kept across redraws)
        self._spare_columns: list[GraphColumn] = []  # of removed models, reused (new plots are slow)
        self._laid_out: list[GraphColumn] = []  # the columns in the canvas, in order
        self._graphs: dict[int, ArchitectureGraph] = {}  # id(model) -> its graph (a rename keeps it)
        self._pending: set[int] = set()  # id(model) of each graph being built, until its result arrives
        self._in_show = False
        self._waiting_text = self.placeholder.text()
        self.colored_by = ""
        self.color_span: tuple[float, float] | None = None  # log10 range of the one colour scale
        self.interior_windows: list[BlockInteriorWindow] = []

        self.canvas.scene().sigMouseMoved.connect(self.hover)
        self.canvas.scene().sigMouseClicked.connect(self._scene_clicked)
        self.model_box.currentTextChanged.connect(lambda _t: self.refresh())
        state.models_changed.connect(self._models_changed)
        state.results_changed.connect(self._results_changed)
        self._models_changed()

    # ------------------------------------------------------------------ the chosen column
    @property
    def columns(self) -> list[GraphColumn]:
        """The columns shown, one per loaded model whose graph is built, in the model list's order."""
        return list(self._laid_out)

    @property
    def column(self) -> GraphColumn | None:
        """The column of the model chosen in the model box (what Export writes); while that model's
        graph is being built, the first column shown."""
        entry = self.entry()
        column = None if entry is None else self._columns.get(id(entry.model))
        return column if column is not None or not self._laid_out else self._laid_out[0]

    def _chosen(self, attr: str, default: Any = None) -> Any:
        column = self.column
        return default if column is None else getattr(column, attr)

    graph = property(lambda self: self._chosen("graph"), doc="The chosen column's graph.")
    plot = property(lambda self: self._chosen("plot"), doc="The chosen column's plot.")
    box = property(lambda self: self._chosen("box"), doc="The chosen column's view box.")
    nodes = property(lambda self: self._chosen("nodes"), doc="The chosen column's node scatter.")
    ring = property(lambda self: self._chosen("ring"), doc="The chosen column's selection ring.")
    edge_curves = property(lambda self: self._chosen("edge_curves", {}), doc="The chosen column's edge curves.")
    hover_label = property(lambda self: self._chosen("hover_label"), doc="The chosen column's hover name.")
    node_labels = property(lambda self: self._chosen("node_labels", {}), doc="The chosen column's block names.")
    group_labels = property(lambda self: self._chosen("group_labels", []), doc="The chosen column's stage names.")
    label_mode = property(lambda self: self._chosen("label_mode", ""), doc="What the chosen column names.")
    selected = property(lambda self: self._chosen("selected", ""), doc="The chosen column's ringed block.")
    shown_model = property(lambda self: self._chosen("label", ""), doc="The chosen column's model label.")
    build_seconds = property(lambda self: self._chosen("build_seconds", 0.0), doc="UI time of its last draw.")

    @property
    def label_metrics(self):
        """What names are measured with (every column's)."""
        return self._chosen("label_metrics")

    @label_metrics.setter
    def label_metrics(self, metrics) -> None:
        for column in {*self._columns.values(), *self._spare_columns}:
            column.label_metrics = metrics

    def place_labels(self) -> str:
        """Place the names of the chosen column (every column places its own after each zoom)."""
        return self.column.place_labels() if self.column is not None else ""

    def scene_pos(self, name: str) -> QPointF:
        """Where block `name` of the chosen column is drawn, in scene coordinates."""
        return self.column.scene_pos(name)

    def node_at(self, scene_pos: QPointF) -> str | None:
        """The block under a scene position in the chosen column, or None."""
        return self.column.node_at(scene_pos) if self.column is not None else None

    def draw(self, graph: ArchitectureGraph, label: str) -> None:
        """Draw `graph` in the chosen column again (its items refilled), coloured as every column is."""
        self.column.draw(graph, label)
        self.recolor()

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
        for key in [k for k in self._columns if k not in live]:
            column = self._columns.pop(key)
            column.key = None
            self._spare_columns.append(column)
        if self.isVisible():
            self.refresh()
        elif self._layout_order() != self._laid_out or any(
            c.key != (m.label, id(m.model)) for m in self.state.models for c in [self._columns.get(id(m.model))] if c
        ):
            self.has_content = False  # the shown columns are not the loaded models' any more
            self.stack.setCurrentIndex(0)

    def _layout_order(self) -> list[GraphColumn]:
        return [self._columns[id(m.model)] for m in self.state.models if id(m.model) in self._columns]

    def _recolor_shown(self) -> None:
        if self._laid_out:
            self.recolor()

    def _results_changed(self) -> None:
        if self._laid_out and self.color_box.currentText() == "gradient":
            self.recolor()

    def show_state(self) -> bool:
        entries = list(self.state.models)
        chosen = self.entry()
        if chosen is None:
            self.placeholder.setText(self._waiting_text)
            self._relayout([])
            return False
        for entry in entries:
            if id(entry.model) not in self._graphs:
                self._start_graph_job(entry, id(entry.model))
        building = [e.label for e in entries if id(e.model) in self._pending]
        # The first time, every column at once (they share the width); later ones join when built.
        if id(chosen.model) not in self._graphs or (building and not self._laid_out):
            if building:
                self.placeholder.setText(f"Building the graph of {', '.join(building)}…")
            return False
        drawn = False
        for entry in entries:  # columns are laid out before they draw: sizing markers needs a scene
            if id(entry.model) in self._graphs and id(entry.model) not in self._columns:
                self._columns[id(entry.model)] = self._new_column()
        order = self._layout_order()
        if order != self._laid_out:
            self._relayout(order)
            drawn = True
        for entry in entries:
            key = id(entry.model)
            column = self._columns.get(key)
            if column is not None and column.key != (entry.label, key):
                column.draw(self._graphs[key], entry.label)
                column.key = (entry.label, key)
                drawn = True
        if drawn or self.colored_by != self._color_signature():
            self.recolor()
        return True

    def _new_column(self) -> GraphColumn:
        if self._spare_columns:
            return self._spare_columns.pop()
        column = GraphColumn(pg.PlotItem(), self._label_font, self)
        if self._columns:
            column.label_metrics = next(iter(self._columns.values())).label_metrics
        return column

    def _relayout(self, order: list[GraphColumn]) -> None:
        """Put `order`'s plots side by side, the colour bar and the legend under them."""
        ci = self.canvas.ci
        for item in [*(c.plot for c in self._laid_out), self.legend]:
            if item in ci.items:
                ci.removeItem(item)
        if self._colorbar_shown:
            ci.removeItem(self.colorbar)
            self._colorbar_shown = False
        for c in self._laid_out:
            if c not in order:
                c.plot.hide()
        for i, c in enumerate(order):
            ci.addItem(c.plot, row=0, col=i)
            c.first = i == 0
            c.plot.getAxis("left").showLabel(c.first)  # the same words in every column: the first says them
            c.plot.show()
        if order:  # under the columns: a legend beside them would take a column's width
            ci.addItem(self.legend, row=2, col=0, colspan=len(order))
            ci.layout.setAlignment(self.legend, Qt.AlignHCenter)
        self._laid_out = list(order)

    def _start_graph_job(self, entry: ModelEntry, key: int) -> None:
        if key in self._pending:
            return  # being built: its graph is on the way (a job's run() ends before its result is delivered)
        self._pending.add(key)
        model, size = entry.model, entry.model.spec.input_size

        def job():
            from fishspine.analysis.architecture.graph import architecture_graph

            yield Progress(0, 1, f"graph of {entry.label}")
            try:
                return architecture_graph(model, size)
            except Exception as exc:  # noqa: BLE001 - reported below; the view stays usable
                return exc

        def arrived(graph) -> None:
            self._pending.discard(key)
            if isinstance(graph, Exception):
                text = f"The graph of {entry.label} could not be built ({type(graph).__name__}: {graph})"
                self.state.notify("error", f"Architecture: {text}")
                self.placeholder.setText(f"{text}; switch tabs or models to try again")
                return
            if graph is None or not any(id(m.model) == key for m in self.state.models):
                return
            self._graphs[key] = graph
            if not self._in_show and self.isVisible():
                self.refresh()

        self._in_show = True
        try:
            worker = self.run_job(f"architecture of {entry.label}", job, arrived)
        finally:
            self._in_show = False
        signals = getattr(worker, "signals", None)
        if key in self._pending and signals is not None:  # a cancelled or failed job delivers no graph: build again
            for ended in (signals.cancelled, signals.failed):
                ended.connect(lambda *_: self._pending.discard(key))

    # ------------------------------------------------------------------ values and colours
    def values(self, column: GraphColumn | None = None) -> dict[str, float] | None:
        """Block name -> the number a column's nodes are coloured by (the chosen column's by default),
        or None for role colours."""
        column = column or self.column
        how = self.color_box.currentText()
        if column is None or column.graph is None:
            return None
        if how in ("params", "macs"):
            return {n.name: float(getattr(n, how)) for n in column.graph.nodes}
        insight = self.state.insights.get(column.label)
        if how == "gradient" and insight is not None:
            t = insight.trace
            return {b: float(v) for b, v in zip(t.blocks, t.output_grad_norm)}
        return None

    def _color_signature(self) -> str:
        how = self.color_box.currentText()
        if how == "gradient":
            return "gradient:" + ",".join(str(id(self.state.insights.get(c.label))) for c in self._laid_out)
        return how

    def recolor(self) -> None:
        """Brushes of every column on one colour scale (and the legend and colour bar); nothing else is rebuilt."""
        columns = self._laid_out
        if not columns:
            return
        values = [self.values(c) for c in columns]
        self.colored_by = self._color_signature()
        span = shared_log_span(values)
        self.color_span = span
        for c, v in zip(columns, values):
            # A column without numbers (no gradient analysed for it) shows "no value", not role colours.
            c.recolor(None if span is None else (v or {}), span)
        self._show_colorbar(span)
        self._fill_legend(span is None, any(c.has_missing for c in columns), span is not None)

    def _show_colorbar(self, span: tuple[float, float] | None) -> None:
        if span is None:
            if self._colorbar_shown:
                self.canvas.ci.removeItem(self.colorbar)
                self.colorbar.hide()
                self._colorbar_shown = False
            return
        if not self._colorbar_shown:
            self.canvas.ci.addItem(self.colorbar, row=1, col=0, colspan=max(1, len(self._laid_out)))
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
            f"{VALUE_LABEL.get(how, how)}, log scale, every column: {_short_number(10**lo)} to {_short_number(10**hi)}"
        )

    def _fill_legend(self, by_role: bool, has_missing: bool, log_values: bool) -> None:
        """Edge kinds, node colours and marker sizes, as one rich-text label (cheap to redo on a recolour)."""
        from fishspine.analysis.architecture.graph import EDGE_KIND_LABELS, EDGE_KINDS
        from fishspine.analysis.figures.architecture import EDGE_STYLE, ROLE_COLORS

        graphs = [c.graph for c in self._laid_out]
        kinds = {e.kind for g in graphs for e in g.edges}
        edges = [
            f'<span style="color:{EDGE_STYLE[k][0]}; font-size:13pt">━━</span>&nbsp;{EDGE_KIND_LABELS[k]}'
            for k in EDGE_KINDS
            if k in kinds
        ]
        dot = '<span style="color:{}; font-size:{}pt">●</span>&nbsp;{}'
        nodes = []
        if by_role:
            roles = dict.fromkeys(n.role for g in graphs for n in g.nodes)
            nodes += [dot.format(ROLE_COLORS.get(r, "#333333"), 12, r) for r in roles]
        if has_missing:
            nodes.append(
                '<span style="color:#777777; font-size:12pt">○</span>&nbsp;no value' + (" or ≤ 0" if log_values else "")
            )
        column = self.column or self._laid_out[0]
        narrow = min(column.graph.nodes, key=lambda n: n.channels)
        wide = max(column.graph.nodes, key=lambda n: n.channels)
        sizes = []
        for n in dict.fromkeys((narrow, wide)):
            size = 7 + 9 * column._radius_frac[column._index[n.name]]
            sizes.append(dot.format("#b0b0b0", f"{size:.0f}", f"{n.channels} channels ({column.label})"))
        sizes.append('<span style="color:#777777">· double-click a block to see inside it</span>')
        # Three short lines under the columns (one long line would set the window's minimum width).
        gap = "&nbsp;&nbsp;&nbsp;"
        text = "<br>".join(gap.join(group) for group in (edges, nodes, sizes) if group)
        self.legend.setText(text, size="9pt", color="#222222")

    # ------------------------------------------------------------------ zoom
    def reset_zoom(self) -> None:
        """Fit every column again, as first shown."""
        for c in self._laid_out:
            c.reset_zoom()

    # ------------------------------------------------------------------ hover, click, selection, opening
    def _column_at(self, scene_pos: QPointF) -> GraphColumn | None:
        return next((c for c in self._laid_out if c.box.sceneBoundingRect().contains(scene_pos)), None)

    def hover(self, scene_pos: QPointF) -> None:
        """Describe the block under the mouse; name it beside the marker when its label is hidden."""
        column = self._column_at(scene_pos)
        name = column.node_at(scene_pos) if column is not None else None
        for c in self._laid_out:
            if c is not column or name is None:
                c.show_hover(None)
        if name is None:
            return
        n = column.graph.node(name)
        self.info.setText(
            f"{n.name} · {column.label} · {n.role} · stride {2**n.level} · {n.channels} ch · "
            f"{format_count(n.params, ' params')} · {format_count(n.macs, 'MACs')}"
        )
        column.show_hover(name)

    def _scene_clicked(self, event) -> None:
        if event.button() != Qt.LeftButton:
            return
        column = self._column_at(event.scenePos())
        name = column.node_at(event.scenePos()) if column is not None else None
        if name is None:
            return
        if event.double():
            self.open_block(name, column.label)
        else:
            self.click_block(name, column.label)

    def click_block(self, name: str, model: str | None = None) -> None:
        """What a click on a node does: select the block everywhere, open its activation map if there is one."""
        label = self.shown_model if model is None else model
        self.state.select_block(name, model=label)
        insight = self.state.insights.get(label)
        if insight is not None:
            try:
                block = insight.activations.block(name)
            except KeyError:
                return
            show_block_map(label, block)

    def _open_selected(self) -> None:
        column = self.column
        if column is None or not column.selected:
            self.state.notify("info", "Architecture: select a block first (click it), or double-click it")
            return
        self.open_block(column.selected, column.label)

    def open_block(self, name: str, model: str | None = None) -> None:
        """Trace what is inside block `name` of `model` (the chosen one by default) in a worker, then show it."""
        label = self.shown_model if model is None else model
        entry = next((m for m in self.state.models if m.label == label), None)
        if entry is None:
            return
        net, size = entry.model, entry.model.spec.input_size

        def job():
            from fishspine.analysis.architecture.interior import block_interior

            yield Progress(0, 1, f"inside {name} of {label}")
            try:
                return block_interior(net, name, size)
            except Exception as exc:  # noqa: BLE001 - reported below
                return exc

        def arrived(interior) -> None:
            if isinstance(interior, Exception):
                self.state.notify(
                    "error", f"Architecture: inside {name} of {label}: {type(interior).__name__}: {interior}"
                )
                return
            if interior is None:
                return
            window = BlockInteriorWindow(label, interior)
            window.destroyed.connect(
                lambda *_: view_base._open_windows.remove(window) if window in view_base._open_windows else None
            )
            view_base._open_windows.append(window)
            self.interior_windows.append(window)
            window.show()

        self.run_job(f"inside {name} of {label}", job, arrived)

    def highlight(self, model: str, block: str) -> None:
        for c in self._laid_out:
            c.highlight(model, block)

    # ------------------------------------------------------------------ export
    def export_figure(self):
        from fishspine.analysis.figures.architecture import graph_figure, graphs_figure

        how = self.color_box.currentText()
        if self.all_columns.isChecked() and len(self._laid_out) > 1:
            values = [self.values(c) for c in self._laid_out]
            numbers = any(v is not None for v in values)
            graphs = [c.graph for c in self._laid_out]
            return graphs_figure(graphs, values if numbers else None, how if numbers else "", log_values=numbers)
        values = self.values()
        return graph_figure(self.graph, values, how if values else "", log_values=values is not None)

    def export_data(self):
        if self.all_columns.isChecked() and len(self._laid_out) > 1:
            columns = self._laid_out
            rows = [{"model": c.label} | row for c in columns for row in c.graph.rows()]
            return rows, {"models": [{"name": c.label} | c.graph.to_json() for c in columns]}
        return self.graph.rows(), self.graph.to_json()
