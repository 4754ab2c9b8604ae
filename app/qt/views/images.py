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
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from fishspine.analysis.options import CAM_CMAPS, CAM_METHODS, GALLERY_ROWS_RANGE, INPUT_METHODS, SCALINGS
from fishspine.app.components.state import AppState
from fishspine.app.qt.views.base import SELECTED_PEN, View, bind_setting, lookup_table, model_qcolor, show_block_map

CELL_PX = 170  # height of one row of cells on screen
BUILD_SLICE_S = 0.03  # longest the UI thread spends laying out grid cells in one go


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
        self.ci.layout.setSpacing(2)
        self.setMinimumHeight(CELL_PX)

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
        gallery never holds the UI thread; `on_ready` is called when the last row is in. Rows are
        CELL_PX high (the scroll area scrolls them) unless `fill`: then they share the height."""
        spec = (rows, cols, overlay, fill)
        if spec != self._spec:
            self.clear()
            self.cells = {}
            self._spec, self.shape = spec, (rows, cols)
            self._pending = self._build_rows(rows, cols, overlay, row_labels or [""] * rows)
            if fill:
                self.setMinimumHeight(rows * CELL_PX)
                self.setMaximumHeight(rows * 3 * CELL_PX)
            else:
                self.setFixedHeight(rows * (CELL_PX + 18) + 30)
        self._on_ready = on_ready
        if self._pending is not None:
            self._build_some()
        return self._pending is None

    def _build_rows(self, rows: int, cols: int, overlay: bool, row_labels: list[str]) -> Iterator[None]:
        # Row 0: a header per column; then per row a box with its caption underneath, as in the figures.
        self.headers = [self.addLabel("", row=0, col=c + 1, size="9pt") for c in range(cols)]
        for r in range(rows):
            self.addLabel(row_labels[r], row=1 + 2 * r, col=0, rowspan=2, angle=-90, size="8pt", color="#555")
            for c in range(cols):
                box = MapBox(self.wheel_zooms)
                self.addItem(box, row=1 + 2 * r, col=c + 1)
                box.sigRangeChangedManually.connect(lambda _mask, b=box: self.follow(b))
                caption = self.addLabel("", row=2 + 2 * r, col=c + 1, size="7pt")
                image = pg.ImageItem(axisOrder="row-major")
                box.addItem(image)
                over = None
                if overlay:
                    over = pg.ImageItem(axisOrder="row-major")
                    box.addItem(over)
                self.cells[(r, c)] = Cell(box, image, over, caption)
            yield

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
        for cell in self.cells.values():
            cell.box.setRange(xRange=(0, width), yRange=(0, height), padding=0.02)


class ColourBarLegend(QWidget):
    """The colour bars of the maps shown (analysis ColourScale: the figures' own): gradient, ticks, label."""

    BAR_PX, ROW_PX = 10, 44

    def __init__(self) -> None:
        super().__init__()
        self.scales: list = []
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setFixedHeight(0)

    def set_scales(self, scales: list) -> None:
        """Show these analysis.attribution.colour_scale.ColourScale bars, one row each."""
        self.scales = list(scales)
        self.setFixedHeight(self.ROW_PX * len(self.scales) + (4 if self.scales else 0))
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
        for i, scale in enumerate(self.scales):
            top = 2 + i * self.ROW_PX
            label = scale.label.replace("\n", " ")
            painter.setPen(QColor("#222"))
            painter.drawText(QRectF(0, top, self.width(), 14), Qt.AlignHCenter | Qt.AlignVCenter, label)
            table = np.ascontiguousarray(lookup_table(scale.cmap)[None, :, :])
            gradient = QImage(table.data, 256, 1, 256 * 4, QImage.Format_RGBA8888)
            bar = QRectF(margin, top + 15, width, self.BAR_PX)
            painter.drawImage(bar, gradient)
            painter.setPen(QColor("#444"))
            painter.drawRect(bar)
            for pos, text in scale.ticks:
                x = margin + pos * width
                painter.drawLine(QPointF(x, bar.bottom()), QPointF(x, bar.bottom() + 3))
                painter.drawText(QRectF(x - 50, bar.bottom() + 3, 100, 13), Qt.AlignHCenter | Qt.AlignTop, text)
        painter.end()


def _set_map(item: pg.ImageItem, values: np.ndarray, cmap: str, levels=(0.0, 1.0)) -> None:
    item.setImage(values, levels=levels, autoLevels=False)
    item.setLookupTable(lookup_table(cmap))


class ImageGridView(View):
    """A View whose display is an ImageGrid in a scroll area, with hover read-out and click-to-select."""

    def __init__(self, state: AppState, wheel_zooms: bool = True) -> None:
        super().__init__(state)
        self.grid = ImageGrid(wheel_zooms)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.grid)
        self.legend = ColourBarLegend()
        display = QWidget()
        column = QVBoxLayout(display)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        column.addWidget(self.scroll, 1)
        column.addWidget(self.legend)
        self.set_display(display)
        self._framed: tuple[int, int] | None = None
        self.grid.scene().sigMouseMoved.connect(self._hovered)
        self.grid.scene().sigMouseClicked.connect(self._clicked)

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
        for c, (m, res) in enumerate(results.items()):
            self.grid.headers[c].setText(f"<b>{m}</b>", color=model_qcolor(c), size="9pt")
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
        show_block_map(cell.model, cell.block)

    def export_result(self):
        from fishspine.analysis.figures.attribution import activations_export

        return activations_export(
            self.image_name(), self.shown_image(), self.results(), self.state.settings.gallery_rows
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
        self.block_box = QComboBox()
        self.block_box.setMinimumContentsLength(12)
        self.block_box.setToolTip("the block whose output the CAM weighs (models without it keep their last block)")
        self.block_box.activated.connect(lambda _i: self._block_chosen())
        self.klass = QSpinBox()
        self.klass.setRange(-1, 100_000)
        self.klass.setSpecialValueText("top class")
        self.klass.setKeyboardTracking(False)
        self.klass.setToolTip(
            "target class (top class = each model's top prediction; backbones without a classifier use feature energy)"
        )
        bind_setting(
            state,
            self.klass,
            "class_index",
            to_setting=lambda v: None if v < 0 else v,
            from_setting=lambda c: -1 if c is None else c,
        )
        self.alpha = QSlider(Qt.Horizontal)
        self.alpha.setRange(0, 100)
        self.alpha.setValue(50)
        self.alpha.setMinimumWidth(60)
        self.alpha.setMaximumWidth(90)
        self.alpha.valueChanged.connect(lambda _v: self._set_opacity())
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
            ("block", self.block_box),
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

    def _block_chosen(self) -> None:
        name = self.block_box.currentData()
        if name:
            self.state.select_block(name)

    def _set_opacity(self) -> None:
        for cell in self.grid.cells.values():
            if cell.overlay is not None:
                cell.overlay.setOpacity(self.alpha.value() / 100)

    def _fill_blocks(self) -> None:
        """Every block of every model, in depth order, named once."""
        seen: dict[str, str] = {}
        for m in self.state.models:
            for b in m.model.blocks:
                seen.setdefault(b.name, f"{b.name} ({b.role}, 1/{2**b.level})")
        current = self.state.selected_block
        self.block_box.blockSignals(True)
        self.block_box.clear()
        self.block_box.addItem("last block of each model", "")
        for name, text in seen.items():
            self.block_box.addItem(text, name)
        self.block_box.setCurrentIndex(max(0, self.block_box.findData(current)))
        self.block_box.blockSignals(False)

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
        self.block_box.setEnabled(not on_request)
        if not self.grid.ensure(1, len(cams) + 1, overlay=True, row_labels=[""], fill=True, on_ready=self.refresh):
            return False
        image = self.shown_image()
        first = self.grid.cells[(0, 0)]
        first.image.setImage(image, autoLevels=False, levels=(0, 255))
        first.overlay.clear()
        self.grid.headers[0].setText("<b>image</b>", size="9pt")
        first.model, first.block, first.values = "", None, None
        for c, (m, cam) in enumerate(cams.items(), start=1):
            cell = self.grid.cells[(0, c)]
            cell.image.setImage(image, autoLevels=False, levels=(0, 255))
            if cam is None:  # an input attribution not computed for these settings
                cell.overlay.clear()
                self.grid.headers[c].setText(
                    f"<b>{m}</b><br>{self.state.settings.cam_method}<br>not computed: press Compute",
                    color=model_qcolor(c - 1),
                    size="8pt",
                )
                cell.model, cell.block, cell.values = "", None, None
                continue
            values = cam.cam.astype(np.float32)
            _set_map(cell.overlay, values, self.state.settings.cam_cmap)
            title = cam_title(f"<b>{m}</b>", cam).replace("\n", "<br>")
            self.grid.headers[c].setText(title, color=model_qcolor(c - 1), size="8pt")
            cell.model, cell.block, cell.values = m, cam, values
        shown = {m: cam for m, cam in cams.items() if cam is not None}
        self.legend.set_scales([cam_colour_scale(shown, self.state.settings.cam_cmap)] if shown else [])
        self._set_opacity()
        self.frame_once(image)
        return True

    def describe(self, cell: Cell, x: int, y: int) -> str:
        c = cell.block
        text = f"{cell.model} · {c.method} @ {c.block} · {c.target_label} · peak before scaling {c.raw_max:.3g}"
        if x >= 0:
            text += f" · CAM at ({x}, {y}): {cell.values[y, x]:.2f}"
        return text

    def on_cell_clicked(self, cell: Cell) -> None:
        insight = self.state.insights.get(cell.model)
        if insight is not None:
            try:
                show_block_map(cell.model, insight.activations.block(cell.block.block))
            except KeyError:
                pass

    def export_result(self):
        from fishspine.analysis.figures.attribution import cam_export

        if self.state.settings.cam_method in INPUT_METHODS:
            cams = {k: v for k, v in self.attributions().items() if v is not None}
            if not cams:
                raise ValueError(f"{self.state.settings.cam_method} is not computed yet: press Compute")
        else:
            cams = {k: v.cam for k, v in self.state.insights.items()}
        return cam_export(
            self.image_name(), self.shown_image(), cams, self.alpha.value() / 100, self.state.settings.cam_cmap
        )
