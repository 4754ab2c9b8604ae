"""The image views: the activation gallery and the CAM overlays, as grids of linked pyqtgraph cells.

Every cell shows a map in the input image's pixel grid, and all cells share one view range: zoom
or pan in any cell and every model's maps follow, so the same region is compared across blocks
and backbones. Cells are built once per layout (rows x models) and only receive new images when
results change.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import (
    QComboBox,
    QGraphicsRectItem,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from fishspine.analysis.attribution.class_names import NO_CLASSIFIER as NO_CLASSIFIER_TEXT
from fishspine.analysis.options import CAM_CMAPS, CAM_METHODS, GALLERY_ROWS_RANGE, INPUT_METHODS, SCALINGS
from fishspine.app.components.state import AppState
from fishspine.app.qt.views.base import SELECTED_PEN, View, bind_setting, lookup_table, model_qcolors

CELL_PX = 170  # the smallest a row of a filling grid may be before it scrolls
MIN_SIDE_PX = 48  # no pane is drawn smaller than this, however narrow the window
BUILD_SLICE_S = 0.03  # longest the UI thread spends laying out grid cells in one go
SPACING_PX = 2
FOCUS_PEN = pg.mkPen("w", width=2, style=Qt.DashLine, cosmetic=True)


@dataclass
class Cell:
    """One linked image box: what it shows, for hover and click."""

    box: pg.ViewBox
    image: pg.ImageItem
    overlay: pg.ImageItem | None
    caption: pg.LabelItem
    model: str = ""
    block: Any = None  # BlockMap (gallery) or CamResult (CAM) or None (the input image)
    values: np.ndarray | None = None  # what the hover reads
    focus: QGraphicsRectItem | None = None  # the outline of the image's focus object, made on first use


class FitLabel(pg.LabelItem):
    """A grid label that never widens its column: its text wraps to the column's width and is clipped
    to its own box (pyqtgraph's LabelItem asks for its text's full width, so long titles made the
    columns of one grid different widths)."""

    def __init__(self, text: str = "", **opts: Any) -> None:
        super().__init__(text, **opts)
        from PySide6.QtGui import QTextOption
        from PySide6.QtWidgets import QGraphicsItem

        self.setFlag(QGraphicsItem.ItemClipsChildrenToShape)
        self.item.document().setDefaultTextOption(QTextOption(Qt.AlignHCenter))

    def updateMin(self) -> None:
        super().updateMin()
        self.setMinimumWidth(0)
        self.setMinimumHeight(0)
        self._sizeHint = {k: (0, 0) if k != Qt.SizeHint.MaximumSize else (-1, -1) for k in self._sizeHint}
        self.updateGeometry()

    def resizeEvent(self, ev) -> None:
        level = getattr(self, "angle", 0) == 0  # set only after the first resize
        if level:
            self.item.setTextWidth(max(self.width(), 1.0))
        super().resizeEvent(ev)
        if level and self.item.boundingRect().height() > self.height():
            self.item.setPos(self.item.pos().x(), 0)  # too long: the first lines (the model) stay in sight


class MapBox(pg.ViewBox):
    """An image box; in a scrolling gallery the wheel scrolls and Ctrl+wheel zooms."""

    def __init__(self, wheel_zooms: bool) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self.wheel_zooms = wheel_zooms
        self.setBackgroundColor("#f4f4f4")

    def wheelEvent(self, ev, axis=None) -> None:
        if self.wheel_zooms or ev.modifiers() & Qt.ControlModifier:
            super().wheelEvent(ev, axis)
        else:
            ev.ignore()  # the scroll area scrolls the gallery


class ImageGrid(pg.GraphicsLayoutWidget):
    """Rows x columns of aspect-locked image boxes that zoom and pan together.

    The boxes are kept in step by hand (a user's zoom or pan is copied to the others) rather than by
    pyqtgraph's view links, whose resize cascades cost seconds when a grid of dozens is laid out.
    """

    def __init__(self, wheel_zooms: bool = True) -> None:
        super().__init__()
        self.wheel_zooms = wheel_zooms
        self.cells: dict[tuple[int, int], Cell] = {}
        self.headers: list[pg.LabelItem] = []
        self.shape = (0, 0)
        self._spec: tuple = ()
        self._pending: Iterator[None] | None = None
        self._on_ready: Callable[[], None] | None = None
        self.ci.layout.setSpacing(SPACING_PX)
        self.ci.setContentsMargins(0, 0, 0, 0)
        self.fill = False
        self.header_px, self.caption_px, self.label_px = 18, 14, 18
        self.aspect = 1.0  # height / width of the images shown
        self.pane = (0, 0)  # (width, height) every image box has now
        self.side_px = 0  # the margin left and right that centres the panes
        self.on_fit: Callable[[], None] | None = None  # told when the panes change size
        self._avail = (0, 0)

    def ensure(
        self,
        rows: int,
        cols: int,
        overlay: bool = False,
        row_labels: list[str] | None = None,
        fill: bool = False,
        on_ready: Callable[[], None] | None = None,
    ) -> bool:
        """Lay out `rows` x `cols` cells; True once they all exist (the layout is kept while the shape is).

        A new layout is built a few rows per turn of the event loop (BUILD_SLICE_S each), so a big
        gallery never holds the UI thread; `on_ready` is called when the last row is in. Every image
        box has one size (`fit`): the columns share the width; with `fill` the rows also share the
        height (nothing scrolls), otherwise a row is at most as high as the space shown (it scrolls)."""
        spec = (rows, cols, overlay, fill)
        if spec != self._spec:
            self.clear()
            self.cells = {}
            self._spec, self.shape, self.fill = spec, (rows, cols), fill
            labels = row_labels or [""] * rows
            self.label_px = 18 if any(labels) else 0
            self._pending = self._build_rows(rows, cols, overlay, labels)
            self.fit(*self._avail)
        self._on_ready = on_ready
        if self._pending is not None:
            self._build_some()
        return self._pending is None

    def _build_rows(self, rows: int, cols: int, overlay: bool, row_labels: list[str]) -> Iterator[None]:
        # Row 0: a header per column; then per row a box with its caption underneath, as in the figures.
        self.headers = [self._label("", row=0, col=c + 1, size="9pt") for c in range(cols)]
        for r in range(rows):
            self._label(row_labels[r], row=1 + 2 * r, col=0, rowspan=2, angle=-90, size="8pt", color="#555")
            for c in range(cols):
                box = MapBox(self.wheel_zooms)
                self.addItem(box, row=1 + 2 * r, col=c + 1)
                box.sigRangeChangedManually.connect(lambda _mask, b=box: self.follow(b))
                caption = self._label("", row=2 + 2 * r, col=c + 1, size="7pt")
                image = pg.ImageItem(axisOrder="row-major")
                box.addItem(image)
                over = None
                if overlay:
                    over = pg.ImageItem(axisOrder="row-major")
                    box.addItem(over)
                self.cells[(r, c)] = Cell(box, image, over, caption)
            yield

    def _label(self, text: str, row: int, col: int, rowspan: int = 1, **opts: Any) -> FitLabel:
        label = FitLabel(text, **opts)
        self.addItem(label, row=row, col=col, rowspan=rowspan)
        return label

    def _build_some(self) -> None:
        start = time.perf_counter()
        while self._pending is not None and time.perf_counter() - start < BUILD_SLICE_S:
            if next(self._pending, StopIteration) is StopIteration:
                self._pending = None
        if self._pending is not None:
            QTimer.singleShot(0, self._build_some)
        elif self._on_ready is not None:
            ready, self._on_ready = self._on_ready, None
            ready()

    def cell_at(self, scene_pos: QPointF) -> tuple[Cell, int, int] | None:
        """The cell under a scene position and the image pixel (x, y) there, if any."""
        for cell in self.cells.values():
            if cell.box.sceneBoundingRect().contains(scene_pos):
                p = cell.box.mapSceneToView(scene_pos)
                x, y = int(p.x()), int(p.y())
                if cell.values is not None and 0 <= y < cell.values.shape[0] and 0 <= x < cell.values.shape[1]:
                    return cell, x, y
                return cell, -1, -1
        return None

    def follow(self, source: pg.ViewBox) -> None:
        """Give every cell the centre and magnification the user just gave `source`."""
        (x0, x1), (y0, y1) = source.viewRange()
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        per_px = (y1 - y0) / max(source.height(), 1.0)  # image pixels per screen pixel
        for cell in self.cells.values():
            if cell.box is not source:
                hw, hh = per_px * cell.box.width() / 2, per_px * cell.box.height() / 2
                cell.box.setRange(xRange=(cx - hw, cx + hw), yRange=(cy - hh, cy + hh), padding=0)

    def frame(self, height: int, width: int) -> None:
        """Show the whole image in every cell."""
        if height and width and abs(height / width - self.aspect) > 1e-6:
            self.aspect = height / width
            self.fit(*self._avail)
        for cell in self.cells.values():
            cell.box.setRange(xRange=(0, width), yRange=(0, height), padding=0.02)

    def pane_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of every image box when the grid has `width` x `height` pixels to show in."""
        rows, cols = self.shape
        if rows == 0 or cols == 0:
            return (0, 0)
        free_w = width - self.label_px - SPACING_PX * cols
        box_w = free_w / cols
        if self.fill:  # every row on screen at once
            free_h = height - self.header_px - SPACING_PX - rows * (self.caption_px + 2 * SPACING_PX)
            box_h_max = free_h / rows
        else:  # one whole row on screen at least; more rows scroll
            box_h_max = height - self.header_px - self.caption_px - 3 * SPACING_PX
        box_w = min(box_w, box_h_max / self.aspect)
        box_w = max(MIN_SIDE_PX, int(box_w))
        return box_w, max(MIN_SIDE_PX, int(round(box_w * self.aspect)))

    def fit(self, width: int, height: int) -> None:
        """Size every pane for `width` x `height` pixels of screen (the scroll area's viewport): equal
        panes as large as fit, the grid centred across the width."""
        self._avail = (width, height)
        rows, cols = self.shape
        if rows == 0 or cols == 0 or width <= 0 or height <= 0:
            return
        box_w, box_h = self.pane_size(width, height)
        layout = self.ci.layout
        layout.setColumnFixedWidth(0, self.label_px)
        for c in range(cols):
            layout.setColumnFixedWidth(c + 1, box_w)
        layout.setRowFixedHeight(0, self.header_px)
        for r in range(rows):
            layout.setRowFixedHeight(1 + 2 * r, box_h)
            layout.setRowFixedHeight(2 + 2 * r, self.caption_px)
        used_w = self.label_px + cols * (box_w + SPACING_PX)
        side = max(0, (width - used_w) // 2)
        self.ci.setContentsMargins(side, 0, side, 0)
        self.side_px = side
        self.setFixedHeight(self.header_px + rows * (box_h + self.caption_px + 2 * SPACING_PX) + 2 * SPACING_PX)
        self.pane = (box_w, box_h)
        if self.on_fit is not None:
            self.on_fit()


class ColourBarLegend(QWidget):
    """The colour bars of the maps shown (analysis ColourScale: the figures' own): gradient, ticks, label."""

    BAR_PX, ROW_PX, LINE_PX = 10, 44, 14  # a row: one label line, the bar, its ticks; more lines add LINE_PX

    @staticmethod
    def label_lines(scale) -> list[str]:
        """The label as drawn: what the colour measures on one line, the models' ranges (per-model
        normalisation) on the next."""
        first, _, rest = scale.label.partition("\n")
        return [first] + ([rest.replace("\n", " ")] if rest else [])

    def row_px(self, scale) -> int:
        return self.ROW_PX + (len(self.label_lines(scale)) - 1) * self.LINE_PX

    def __init__(self) -> None:
        super().__init__()
        self.scales: list = []
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setFixedHeight(0)

    def set_scales(self, scales: list) -> None:
        """Show these analysis.attribution.colour_scale.ColourScale bars, one row each."""
        self.scales = list(scales)
        self.setFixedHeight(sum(self.row_px(s) for s in self.scales) + (4 if self.scales else 0))
        self.setToolTip("\n".join(s.label.replace("\n", " ") for s in self.scales))
        self.update()

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        font = painter.font()
        font.setPointSizeF(8)
        painter.setFont(font)
        margin = 40
        width = max(self.width() - 2 * margin, 10)
        top = 2
        for scale in self.scales:
            lines = self.label_lines(scale)
            painter.setPen(QColor("#222"))
            for j, line in enumerate(lines):
                painter.drawText(
                    QRectF(0, top + j * self.LINE_PX, self.width(), 14), Qt.AlignHCenter | Qt.AlignVCenter, line
                )
            table = np.ascontiguousarray(lookup_table(scale.cmap)[None, :, :])
            gradient = QImage(table.data, 256, 1, 256 * 4, QImage.Format_RGBA8888)
            bar = QRectF(margin, top + 1 + len(lines) * self.LINE_PX, width, self.BAR_PX)
            top += self.row_px(scale)
            painter.drawImage(bar, gradient)
            painter.setPen(QColor("#444"))
            painter.drawRect(bar)
            for pos, text in scale.ticks:
                x = margin + pos * width
                painter.drawLine(QPointF(x, bar.bottom()), QPointF(x, bar.bottom() + 3))
                painter.drawText(QRectF(x - 50, bar.bottom() + 3, 100, 13), Qt.AlignHCenter | Qt.AlignTop, text)
        painter.end()


class MapPanel(QWidget):
    """A clicked map, large, beside the grid (never a window of its own): the grid's colour map, a colour
    bar naming what the colours measure with its scale, and the histogram of the map's values (drag its
    ends to change the levels)."""

    def __init__(self) -> None:
        super().__init__()
        self.model, self.block, self.cmap = "", "", ""
        column = QVBoxLayout(self)
        column.setContentsMargins(4, 0, 0, 0)
        top = QHBoxLayout()
        self.title = QLabel("")
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextSelectableByMouse)
        top.addWidget(self.title, 1)
        close = QPushButton("×")
        close.setToolTip("close the enlarged map")
        close.setFixedWidth(28)
        close.clicked.connect(self.hide)
        top.addWidget(close, 0, Qt.AlignTop)
        column.addLayout(top)
        self.plot = pg.GraphicsLayoutWidget()
        self.box = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.box.setBackgroundColor("#f4f4f4")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.box.addItem(self.image)
        self.plot.addItem(self.box, row=0, col=0)
        # The histogram's gradient is the colour bar: its axis carries the values the colours stand for.
        self.hist = pg.HistogramLUTItem(image=self.image)
        self.hist.gradient.showTicks(False)  # the colour map is the grid's: no stops to drag
        self.hist.gradient.setEnabled(False)
        self.plot.addItem(self.hist, row=0, col=1)
        column.addWidget(self.plot, 1)
        self.scale = QLabel("")
        self.scale.setWordWrap(True)
        self.scale.setStyleSheet("color: #333;")
        column.addWidget(self.scale)
        self.setMinimumWidth(260)
        self.hide()

    def show_map(
        self,
        model: str,
        block: str,
        title: str,
        values: np.ndarray,
        levels: tuple[float, float],
        cmap: str,
        unit: str,
        scale: str,
    ) -> None:
        """Show `values` (H, W) coloured by `cmap` from levels[0] to levels[1]; `unit` names the values on
        the colour bar's axis, `scale` says how the grid's colours span them."""
        self.model, self.block, self.cmap = model, block, cmap
        self.title.setText(title)
        table = lookup_table(cmap)
        self.hist.gradient.setColorMap(pg.ColorMap(np.linspace(0.0, 1.0, len(table)), table))
        self.image.setImage(np.ascontiguousarray(values, dtype=np.float32), autoLevels=False, levels=levels)
        lo, hi = levels
        self.hist.setLevels(lo, hi if hi > lo else lo + 1e-6)
        self.hist.setHistogramRange(min(lo, float(np.nanmin(values))), max(hi, float(np.nanmax(values))))
        self.hist.axis.setLabel(unit)
        self.scale.setText(f"colour bar: {scale}")
        self.box.autoRange(padding=0.02)
        self.show()

    def lookup(self) -> np.ndarray:
        """The 256 RGB colours the panel draws with (for checks: the grid's colour map)."""
        return self.hist.gradient.getLookupTable(256, alpha=False)


class _FitScroll(QScrollArea):
    """A scroll area that tells its grid how much room there is."""

    def __init__(self, grid: ImageGrid) -> None:
        super().__init__()
        self.grid = grid
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # the panes fit the width
        # a scroll bar coming and going would change the width and re-fit: it is there for good
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOn)
        self.setWidget(grid)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.refit()

    def refit(self) -> None:
        """Size the grid's panes for the viewport as it is now."""
        size = self.viewport().size()
        self.grid.fit(size.width(), size.height())


def _set_map(item: pg.ImageItem, values: np.ndarray, cmap: str, levels=(0.0, 1.0)) -> None:
    item.setImage(values, levels=levels, autoLevels=False)
    item.setLookupTable(lookup_table(cmap))


class ClassBox(QSpinBox):
    """The class index box, showing the class's name beside its index when the models name classes."""

    def __init__(self) -> None:
        super().__init__()
        self.names: tuple[str, ...] = ()

    def textFromValue(self, value: int) -> str:
        if 0 <= value < len(self.names):
            return f"{value} · {self.names[value]}"
        return str(value)

    def valueFromText(self, text: str) -> int:
        head = text.split("·")[0].strip()
        return int(head) if head.lstrip("-").isdigit() else self.minimum()

    def validate(self, text: str, pos: int):
        from PySide6.QtGui import QValidator

        head = text.split("·")[0].strip()
        if text == self.specialValueText() or head.lstrip("-").isdigit():
            return QValidator.Acceptable, text, pos
        return (QValidator.Intermediate if head in ("", "-") else QValidator.Invalid), text, pos


class ImageGridView(View):
    """A View whose display is an ImageGrid in a scroll area, with hover read-out and click-to-select."""

    def __init__(self, state: AppState, wheel_zooms: bool = True) -> None:
        super().__init__(state)
        self.grid = ImageGrid(wheel_zooms)
        self.scroll = _FitScroll(self.grid)
        self.legend = ColourBarLegend()
        self.above = QHBoxLayout()  # controls a view puts above its grid (the CAM's block per model)
        self.above.setContentsMargins(0, 0, 0, 0)
        grid_side = QWidget()
        column = QVBoxLayout(grid_side)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        column.addLayout(self.above)
        column.addWidget(self.scroll, 1)
        column.addWidget(self.legend)
        self.column = column  # a view may add a panel below its grid
        self.panel = MapPanel()
        display = QSplitter(Qt.Horizontal)
        display.addWidget(grid_side)
        display.addWidget(self.panel)
        display.setStretchFactor(0, 3)
        display.setStretchFactor(1, 2)
        display.setChildrenCollapsible(False)
        self.splitter = display
        self.set_display(display)
        self._framed: tuple[int, int] | None = None
        self.grid.scene().sigMouseMoved.connect(self._hovered)
        self.grid.scene().sigMouseClicked.connect(self._clicked)
        state.focus_changed.connect(self.draw_focus)

    def families(self) -> dict[str, str]:
        """Each loaded model's family, by label (what its colour follows)."""
        return {m.label: m.family for m in self.state.models}

    def model_colors(self) -> dict[str, str]:
        """Each loaded model's colour (by family, then name: the same in every view and figure)."""
        return model_qcolors([m.label for m in self.state.models], self.families())

    def focus_box(self) -> tuple[float, float, float, float] | None:
        """The selected image's focus object (ImageEntry.focus) in the pixels of the image as shown."""
        entry = self.state.image
        if entry is None or entry.focus is None:
            return None
        scale = self.shown_image().shape[0] / entry.pixels.shape[0]
        return tuple(v * scale for v in entry.focus)

    def draw_focus(self) -> None:
        """Outline the focus object (dashed, as in the exported figures) in every pane, or nothing."""
        box = self.focus_box()
        for cell in self.grid.cells.values():
            if cell.focus is None:
                if box is None:
                    continue
                cell.focus = QGraphicsRectItem()
                cell.focus.setPen(FOCUS_PEN)
                cell.focus.setZValue(10)  # over the map and the CAM overlay
                cell.box.addItem(cell.focus)
            if box is None:
                cell.focus.hide()
                continue
            x0, y0, x1, y1 = box
            cell.focus.setRect(QRectF(x0, y0, x1 - x0, y1 - y0))
            cell.focus.show()

    def shown_image(self) -> np.ndarray:
        """The image as the models saw it (the input size of the analysis shown)."""
        from fishspine.analysis.images import resize_longer_side

        return resize_longer_side(self.state.image.pixels, self.state.settings.image_size)

    def image_name(self) -> str:
        """The image's name in exports: its file name without the suffix, as the command line writes it."""
        from pathlib import Path

        return Path(self.state.image.label).stem

    def frame_once(self, image: np.ndarray) -> None:
        """Fit the view to the image when its size changes (keep the user's zoom otherwise)."""
        size = image.shape[:2]
        if size != self._framed:
            self.grid.frame(*size)
            self._framed = size

    def describe(self, cell: Cell, x: int, y: int) -> str:  # pragma: no cover - per view
        raise NotImplementedError

    def _hovered(self, pos: QPointF) -> None:
        hit = self.grid.cell_at(pos)
        if hit is not None and hit[0].model:
            self.info.setText(self.describe(*hit))

    def _clicked(self, event) -> None:
        if event.button() != Qt.LeftButton:
            return
        hit = self.grid.cell_at(event.scenePos())
        if hit is not None and hit[0].block is not None:
            self.on_cell_clicked(hit[0])

    def on_cell_clicked(self, cell: Cell) -> None:
        pass

    def highlight(self, model: str, block: str) -> None:
        for cell in self.grid.cells.values():
            name = getattr(cell.block, "name", getattr(cell.block, "block", None))
            hit = bool(block) and name == block and model in ("", cell.model)
            cell.box.setBorder(SELECTED_PEN if hit else None)
            if hit:  # scroll the gallery to it
                self.scroll.ensureVisible(0, int(cell.box.sceneBoundingRect().center().y()), 0, CELL_PX)


class ActivationsView(ImageGridView):
    """Rows = blocks at matching relative depth (shallow at the top), columns = models.

    Hover reads the block, its output shape and range and the map's value; a click selects the block
    everywhere and opens the map large.
    """

    title = "Activations"

    def __init__(self, state: AppState) -> None:
        super().__init__(state, wheel_zooms=False)
        self.info.setText("wheel scrolls · Ctrl+wheel zooms every map · drag pans · click a map to select it")
        self.rows_box = QSpinBox()
        self.rows_box.setRange(*GALLERY_ROWS_RANGE)
        self.rows_box.setToolTip("blocks per model, spread evenly over depth")
        bind_setting(state, self.rows_box, "gallery_rows", self.refresh)
        self.controls.addWidget(QLabel("rows"))
        self.controls.addWidget(self.rows_box)
        self.scaling_box = QComboBox()
        self.scaling_box.addItems(SCALINGS)
        self.scaling_box.setToolTip(
            "the range the colours span: each map's 1st-99th percentile (a hot pixel does not black out the rest) "
            "or its min-max"
        )
        bind_setting(state, self.scaling_box, "scaling")
        self.controls.addWidget(QLabel("scale"))
        self.controls.addWidget(self.scaling_box)

    def results(self) -> dict:
        return {k: v.activations for k, v in self.state.insights.items()}

    def show_state(self) -> bool:
        from fishspine.analysis.attribution.activations import colour_scales
        from fishspine.analysis.figures.attribution import sample_rows

        if not self.state.insights or self.state.image is None:
            return False
        results = self.results()
        picks = {
            m: self._with_selected(m, r, sample_rows(len(r.blocks), self.state.settings.gallery_rows))
            for m, r in results.items()
        }
        n_rows = max(len(p) for p in picks.values()) + 1
        labels = ["input"] + [f"depth {i / max(n_rows - 2, 1):.0%}" for i in range(n_rows - 1)]
        if not self.grid.ensure(n_rows, len(results), row_labels=labels, on_ready=self.refresh):
            return False  # laying out the grid; refresh again once it is there
        image = self.shown_image()
        colors = self.model_colors()
        for c, (m, res) in enumerate(results.items()):
            self.grid.headers[c].setText(f"<b>{m}</b>", color=colors.get(m, "k"), size="9pt")
            cell = self.grid.cells[(0, c)]
            cell.image.setImage(image, autoLevels=False, levels=(0, 255))
            cell.image.setLookupTable(None)
            cell.caption.setText("input", size="7pt")
            cell.model, cell.block, cell.values = m, None, None
            for r in range(1, n_rows):
                cell = self.grid.cells[(r, c)]
                if r - 1 >= len(picks[m]):  # a shallower model has fewer blocks than rows
                    cell.image.clear()
                    cell.caption.setText("")
                    cell.model, cell.block, cell.values = "", None, None
                    continue
                b = res.blocks[picks[m][r - 1]]
                values = b.map.astype(np.float32)
                _set_map(cell.image, values, res.cmap)
                cell.caption.setText(f"{b.name} · {b.role} · 1/{2**b.level}", size="7pt")
                cell.model, cell.block, cell.values = m, b, values
        self.legend.set_scales(colour_scales(results))
        self.frame_once(image)
        self.draw_focus()
        if self.panel.isVisible():  # the enlarged map follows new results (another reduction, image, scaling)
            shown = results.get(self.panel.model)
            match = [b for b in shown.blocks if b.name == self.panel.block] if shown is not None else []
            if match:
                self.enlarge(self.panel.model, match[0])
            else:
                self.panel.hide()
        return True

    def _with_selected(self, model: str, result, picks: list[int]) -> list[int]:
        """The sampled rows, with the selected block of this model swapped in for the nearest row."""
        block, chosen_in = self.state.selected_block, self.state.selected_model
        names = [b.name for b in result.blocks]
        if not block or chosen_in not in ("", model) or block not in names or names.index(block) in picks:
            return picks
        i = names.index(block)
        nearest = min(range(len(picks)), key=lambda k: abs(picks[k] - i))
        return sorted(picks[:nearest] + [i] + picks[nearest + 1 :])

    def highlight(self, model: str, block: str) -> None:
        shown = any(getattr(c.block, "name", None) == block for c in self.grid.cells.values())
        exists = any(block in {b.name for b in r.blocks} for m, r in self.results().items() if model in ("", m))
        if block and exists and not shown and self.has_content:
            self.refresh()  # bring the block into the gallery; refresh highlights it
            return
        super().highlight(model, block)

    def describe(self, cell: Cell, x: int, y: int) -> str:
        if cell.block is None:
            return f"{cell.model} · input image"
        b = cell.block
        text = (
            f"{cell.model} · {b.name} ({b.role}, stride {2**b.level}) · output {list(b.shape)} · "
            f"range [{b.out_min:.3g}, {b.out_max:.3g}]"
        )
        if x >= 0:
            text += f" · map at ({x}, {y}): {cell.values[y, x]:.2f}"
        return text

    def on_cell_clicked(self, cell: Cell) -> None:
        self.state.select_block(cell.block.name, cell.model)
        self.enlarge(cell.model, cell.block)

    def enlarge(self, model: str, b) -> None:
        """Show block map `b` (an analysis BlockMap) of `model` in the side panel, in the raw values of
        its reduction: the histogram's levels are the ends the grid's colours span."""
        import math

        from fishspine.analysis.attribution.activations import REDUCTION_LABELS, colour_scales

        result = self.results().get(model)
        if result is None:
            return
        lo, hi = (b.map_min, b.map_max) if math.isnan(b.lo) else (b.lo, b.hi)
        values = lo + b.map.astype(np.float32) * (hi - lo)  # the map as the reduction gave it
        scale = next((s for s in colour_scales({model: result}) if model in s.models), None)
        what = REDUCTION_LABELS.get(result.reduction, result.reduction)
        self.panel.show_map(
            model,
            b.name,
            f"<b>{model}</b> · {b.name} ({b.role}, stride {2**b.level}) · output {list(b.shape)}",
            values,
            (lo, hi),
            result.cmap,
            what,
            (scale.label.replace("\n", " ") if scale else what) + f"; here {lo:.3g} to {hi:.3g}",
        )

    def export_result(self):
        from fishspine.analysis.figures.attribution import activations_export

        return activations_export(
            self.image_name(), self.shown_image(), self.results(), self.state.settings.gallery_rows, self.families()
        )


class CamView(ImageGridView):
    """CAM overlays per model for the chosen block, method and class; the block follows the selection.

    The input attributions (INPUT_METHODS) take many passes: they run only when Compute is pressed, as
    a job of the engine (`run_job`, with progress and Cancel), which keeps them; the grid shows the
    ones the engine holds for the current image and settings.
    """

    title = "Grad-CAM"

    def __init__(self, state: AppState, run_job: Callable | None = None, engine: Any = None) -> None:
        super().__init__(state)
        self.run_job, self.engine = run_job, engine
        self.scroll.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # one row that fits: nothing to scroll
        self._computing = None  # the worker of the attribution job running, if any
        self.method = QComboBox()
        self.method.addItems(CAM_METHODS + INPUT_METHODS)
        # closed, the combos show a short prefix (the list shows every name): the bar fits a 1400 px window
        self.method.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.method.setMinimumContentsLength(10)
        bind_setting(state, self.method, "cam_method")
        self.compute_button = QPushButton("Compute")
        self.compute_button.setToolTip("compute this input attribution for every model (many passes each)")
        self.compute_button.clicked.connect(self.compute)
        self.compute_button.hide()
        # One block picker per model column, in a row above the grid (placed over its column).
        self.block_boxes: dict[str, QComboBox] = {}
        self.block_row = QWidget()
        self.block_row.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        self._lead = QLabel("CAM block", self.block_row)
        self._lead.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
        self.above.addWidget(self.block_row)
        self.grid.on_fit = self._place_block_row
        self.klass = ClassBox()
        self.klass.setRange(-1, 100_000)
        self.klass.setSpecialValueText("top class")
        self.klass.setKeyboardTracking(False)
        self.klass.setMinimumWidth(150)
        bind_setting(
            state,
            self.klass,
            "class_index",
            to_setting=lambda v: None if v < 0 else v,
            from_setting=lambda c: -1 if c is None else c,
        )
        self.alpha = QSlider(Qt.Horizontal)
        self.alpha.setRange(0, 100)
        self.alpha.setMinimumWidth(60)
        self.alpha.setMaximumWidth(90)
        self.alpha.setToolTip("the overlay's opacity (saved with the session; the export uses it)")
        bind_setting(
            state,
            self.alpha,
            "cam_alpha",
            self._set_opacity,
            to_setting=lambda v: v / 100,
            from_setting=lambda a: round(a * 100),
        )
        self.cmap_box = QComboBox()
        self.cmap_box.addItems(CAM_CMAPS)
        self.cmap_box.setToolTip("the CAM's colour map (inferno and viridis are perceptually uniform)")
        bind_setting(state, self.cmap_box, "cam_cmap", self.refresh)
        self.scaling_box = QComboBox()
        self.scaling_box.addItems(SCALINGS)
        self.scaling_box.setToolTip(
            "each CAM from 0 to its 99th percentile (a hot pixel does not black out the rest) or to its maximum"
        )
        bind_setting(state, self.scaling_box, "scaling", self.refresh)
        for text, w in (
            ("method", self.method),
            ("class", self.klass),
            ("overlay", self.alpha),
            ("", self.cmap_box),  # the colour map and scaling name themselves ("inferno", "percentile")
            ("", self.scaling_box),
        ):
            if text:
                self.controls.addWidget(QLabel(text))
            self.controls.addWidget(w)
            if w is self.method:
                self.controls.addWidget(self.compute_button)
        # With whole detectors loaded, clicking an object in the image shows each one's detection CAM.
        from fishspine.app.qt.views.detection_cams import DetectionCamPanel

        self.detection_cams = DetectionCamPanel(state, run_job, engine, follows_selection=True)
        self.column.addWidget(self.detection_cams, 1)

    def _clicked(self, event) -> None:
        if event.button() == Qt.LeftButton and self.engine is not None:
            hit = self.grid.cell_at(event.scenePos())
            if hit is not None and hit[0] is self.grid.cells.get((0, 0)):  # the image itself
                self.detect_at(hit[1], hit[2])
                return
        super()._clicked(event)

    def detect_at(self, x: float, y: float) -> None:
        """The detection under (x, y) (pixels of the image as shown) with the best score of any loaded
        detector: outline it and show every detector's CAM of its detection of that object."""
        from fishspine.app.qt.views.detection_cams import detection_at_job, detectors_of, object_of_entry

        entries, entry = detectors_of(self.state), self.state.image
        if not entries or entry is None:
            return
        scale = entry.pixels.shape[0] / self.shown_image().shape[0]
        point = (x * scale, y * scale)

        def found(hit) -> None:
            if self.state.image is not entry:
                return  # another image by now
            if hit is None:
                self.state.notify("info", "no detection there (of any loaded detector)")
                return
            label, d = hit
            index = self.state.images.index(entry)
            self.state.focus_on(index, d.box, d.category)
            self.state.notify("info", f"{label}'s detection: {d.describe()}; each detector's CAM of it below")
            self.detection_cams.show_object(object_of_entry(entry, d.box, d.category))

        self.run_job("detections", lambda: detection_at_job(self.engine, entries, entry, point), found)

    def _attribution_keys(self) -> dict:
        """label -> the engine's pass key of each model for the image and settings shown."""
        s, image = self.state.settings, self.state.image
        return {
            m.label: self.engine.key(m.model, image.key, s.image_size, s.precision, s.class_index)
            for m in self.state.models
        }

    def attributions(self) -> dict:
        """label -> the engine's input attribution of the chosen method for each model (None: not computed)."""
        method, scaling = self.state.settings.cam_method, self.state.settings.scaling
        held = {label: self.engine.cached_attribution(key, method) for label, key in self._attribution_keys().items()}
        return {label: None if a is None else a.rescaled(scaling) for label, a in held.items()}

    def compute(self) -> None:
        """Start the chosen input attribution for every model that lacks it (one job, progress, Cancel)."""
        s, image = self.state.settings, self.state.image
        if s.cam_method not in INPUT_METHODS or image is None or not self.state.models or self._computing is not None:
            return
        models = {m.label: m.model for m in self.state.models}
        args = (models, image.pixels, image.key, s.cam_method, s.image_size, s.precision, s.class_index)

        def ended() -> None:
            self._computing = None
            self.refresh()

        self.compute_button.setEnabled(False)
        self._computing = self.run_job(
            s.cam_method.replace("_", " "), lambda: self.engine.iter_attributions(*args), lambda _cams: None, ended
        )

    def _block_chosen(self, model: str, box: QComboBox) -> None:
        """A block picked for one model's column: that model's CAM moves there, the others stay."""
        blocks = dict(self.state.settings.cam_blocks)
        name = box.currentData()
        if name:
            blocks[model] = name
        else:
            blocks.pop(model, None)
        self.state.update_settings(cam_blocks=blocks)

    def _set_opacity(self) -> None:
        for cell in self.grid.cells.values():
            if cell.overlay is not None:
                cell.overlay.setOpacity(self.state.settings.cam_alpha)

    def _fill_blocks(self) -> None:
        """A picker per model column: its blocks in depth order, the one its CAM is taken at chosen."""
        from fishspine.analysis.attribution.engine import default_cam_block

        labels = [m.label for m in self.state.models]
        if list(self.block_boxes) != labels:
            for box in self.block_boxes.values():
                box.deleteLater()
            self.block_boxes = {}
            for label in labels:
                box = QComboBox(self.block_row)
                box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
                box.setMinimumContentsLength(4)
                box.setToolTip(f"the block whose output {label}'s CAM weighs")
                box.activated.connect(lambda _i, m=label, b=box: self._block_chosen(m, b))
                box.show()
                self.block_boxes[label] = box
        chosen = self.state.settings.cam_blocks
        for m in self.state.models:
            box = self.block_boxes[m.label]
            default = default_cam_block(m.model.blocks)
            box.blockSignals(True)
            box.clear()
            box.addItem(f"default: {default}", "")
            for b in m.model.blocks:
                box.addItem(f"{b.name} ({b.role}, 1/{2**b.level})", b.name)
            box.setCurrentIndex(max(0, box.findData(chosen.get(m.label, ""))))
            box.blockSignals(False)
        self._place_block_row()

    def _place_block_row(self) -> None:
        """Each picker over its model's column (placed by hand: a layout would make the pickers' widths the
        view's minimum, and the grid could no longer shrink)."""
        box_w = self.grid.pane[0]
        height = self._lead.sizeHint().height() + 6
        self.block_row.setFixedHeight(height)
        x = self.scroll.frameWidth() + self.grid.side_px + self.grid.label_px + box_w + SPACING_PX  # past the image
        self._lead.setGeometry(0, 0, max(x - 4, 0), height)
        for box in self.block_boxes.values():
            box.setGeometry(x, 0, max(box_w, 20), height)
            x += box_w + SPACING_PX

    def _target_title(self, model: str, cam) -> str:
        """The target as a column's title says it (short: the class box and the hover say the rest)."""
        text = self._target_text(model, cam)
        return "feature energy (no classifier)" if text.startswith(NO_CLASSIFIER_TEXT) else text

    def _target_text(self, model: str, cam) -> str:
        """What the CAM of `model` targets, named: an ImageNet class, a detector's classes, or why none."""
        from fishspine.analysis.attribution.class_names import NO_CLASSIFIER, class_label

        entry = next((m for m in self.state.models if m.label == model), None)
        names, has_classifier, categories = self._class_info(entry)
        if not has_classifier:
            if categories:  # a detector's backbone: the detector scores these, the backbone nothing
                shown = ", ".join(categories[:3]) + (" …" if len(categories) > 3 else "")
                return f"{NO_CLASSIFIER} (detector of {len(categories)}: {shown})"
            return NO_CLASSIFIER
        return class_label(cam.class_index, names)

    def _class_info(self, entry) -> tuple[tuple[str, ...], bool, list[str]]:
        """(class names, has a classifier, detector categories) of a model entry."""
        from fishspine.analysis.attribution.class_names import class_names, classifier_classes

        if entry is None:
            return (), False, []
        n = classifier_classes(entry.model)
        return class_names(n, entry.categories), n is not None, list(entry.categories)

    def _update_class_box(self) -> None:
        """The class box names the class for the models shown, or says why there is none."""
        from fishspine.analysis.attribution.class_names import NO_CLASSIFIER

        infos = [self._class_info(m) for m in self.state.models]
        classifiers = [names for names, has, _ in infos if has]
        if not classifiers:
            self.klass.names = ()
            self.klass.setSpecialValueText(NO_CLASSIFIER)
            self.klass.setEnabled(False)
            self.klass.setMinimumWidth(self.klass.fontMetrics().horizontalAdvance(NO_CLASSIFIER) + 34)
            self.klass.setToolTip("none of these backbones has a classifier: each CAM weighs its feature energy")
        else:
            # names only when every classifier shown names its classes alike (all ImageNet, say)
            same = all(n == classifiers[0] for n in classifiers)
            self.klass.names = classifiers[0] if same else ()
            self.klass.setSpecialValueText("top class")
            self.klass.setEnabled(True)
            self.klass.setMinimumWidth(150)
            mixed = len(classifiers) < len(infos)
            self.klass.setToolTip(
                "target class (top class = each model's top prediction"
                + ("; backbones without a classifier use their feature energy)" if mixed else ")")
            )
        if self.klass.value() >= 0:  # the text shows the name of the class now named
            self.klass.lineEdit().setText(self.klass.textFromValue(self.klass.value()))

    def show_state(self) -> bool:
        from fishspine.analysis.attribution.cam import cam_colour_scale
        from fishspine.analysis.figures.attribution import cam_title

        if not self.state.insights or self.state.image is None:
            return False
        self._fill_blocks()
        on_request = self.state.settings.cam_method in INPUT_METHODS
        cams = self.attributions() if on_request else {k: v.cam for k, v in self.state.insights.items()}
        self.compute_button.setVisible(on_request)
        self.compute_button.setEnabled(self._computing is None and any(c is None for c in cams.values()))
        for box in self.block_boxes.values():
            box.setEnabled(not on_request)
        self._update_class_box()
        self.grid.header_px, self.grid.caption_px = 58, 0  # up to four lines of title, no caption
        if not self.grid.ensure(1, len(cams) + 1, overlay=True, row_labels=[""], fill=True, on_ready=self.refresh):
            return False
        self.scroll.refit()
        self._place_block_row()
        image = self.shown_image()
        first = self.grid.cells[(0, 0)]
        first.image.setImage(image, autoLevels=False, levels=(0, 255))
        first.overlay.clear()
        self.grid.headers[0].setText("<b>image</b>", size="9pt")
        first.model, first.block, first.values = "", None, None
        colors = self.model_colors()
        for c, (m, cam) in enumerate(cams.items(), start=1):
            cell = self.grid.cells[(0, c)]
            cell.image.setImage(image, autoLevels=False, levels=(0, 255))
            if cam is None:  # an input attribution not computed for these settings
                cell.overlay.clear()
                self.grid.headers[c].setText(
                    f"<b>{m}</b><br>{self.state.settings.cam_method}<br>not computed: press Compute",
                    color=colors.get(m, "k"),
                    size="8pt",
                )
                cell.model, cell.block, cell.values = "", None, None
                continue
            values = cam.cam.astype(np.float32)
            _set_map(cell.overlay, values, self.state.settings.cam_cmap)
            title = cam_title(f"<b>{m}</b>", cam).replace(cam.target_label, self._target_title(m, cam))
            title = title.replace("\n", "<br>")
            self.grid.headers[c].setText(title, color=colors.get(m, "k"), size="8pt")
            cell.model, cell.block, cell.values = m, cam, values
        shown = {m: cam for m, cam in cams.items() if cam is not None}
        self.legend.set_scales([cam_colour_scale(shown, self.state.settings.cam_cmap)] if shown else [])
        self._set_opacity()
        self.frame_once(image)
        self.draw_focus()
        if self.panel.isVisible():  # the enlarged CAM follows new results (block, method, class, image)
            cell = next((c for c in self.grid.cells.values() if c.model == self.panel.model and c.block), None)
            if cell is not None:
                self.on_cell_clicked(cell)
            else:
                self.panel.hide()
        return True

    def describe(self, cell: Cell, x: int, y: int) -> str:
        c = cell.block
        target = self._target_text(cell.model, c)
        text = f"{cell.model} · {c.method} @ {c.block} · {target} · peak before scaling {c.raw_max:.3g}"
        if x >= 0:
            text += f" · CAM at ({x}, {y}): {cell.values[y, x]:.2f}"
        return text

    def on_cell_clicked(self, cell: Cell) -> None:
        """The clicked CAM large in the side panel, in its raw values (0 to the value shown as 1)."""
        from fishspine.analysis.attribution.cam import cam_colour_scale

        c = cell.block
        hi = c.hi if np.isfinite(c.hi) and c.hi > 0 else max(c.raw_max, 1e-12)
        scale = cam_colour_scale({cell.model: c}, self.state.settings.cam_cmap)
        self.panel.show_map(
            cell.model,
            c.block,
            f"<b>{cell.model}</b> · {c.method} @ {c.block} · {self._target_text(cell.model, c)}",
            c.cam.astype(np.float32) * hi,
            (0.0, hi),
            self.state.settings.cam_cmap,
            f"{c.method} (raw)",
            f"{scale.label}; here 0 to {hi:.3g}",
        )

    def export_result(self):
        from fishspine.analysis.figures.attribution import cam_export

        if self.state.settings.cam_method in INPUT_METHODS:
            cams = {k: v for k, v in self.attributions().items() if v is not None}
            if not cams:
                raise ValueError(f"{self.state.settings.cam_method} is not computed yet: press Compute")
        else:
            cams = {k: v.cam for k, v in self.state.insights.items()}
        s = self.state.settings
        return cam_export(
            self.image_name(), self.shown_image(), cams, s.cam_alpha, s.cam_cmap, self.focus_box(), self.families()
        )
