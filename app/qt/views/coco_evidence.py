"""The COCO view's two pages behind its numbers: where each backbone's AP goes (TIDE's error types), and
the objects behind one cell of the table (what a backbone finds and the baseline misses, and the reverse).

The errors page shows what the COCO evaluation job computed (nothing is computed on the UI thread). The
evidence panel computes `analysis.coco.evidence` in a worker, with the crops cut from the ground truth's
images there too, and draws each crop with the ground truth and both detectors' boxes as the exported
gallery (analysis/figures/coco_evidence.py) draws them. Exports are the command line's: `errors_export`
and `evidence_export`, so the files equal `fishspine coco --errors` and `--evidence`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QIcon, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTabBar,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from fishspine.analysis.images import file_in_folder
from fishspine.analysis.jobs import Job, Progress
from fishspine.app.components.state import AppState
from fishspine.app.qt.views.base import model_qcolors
from fishspine.app.qt.views.detection_cams import DetectionCamPanel, detectors_of, object_of

TILE = 132  # pixels of a crop's longer side in the gallery
NOT_FOUND = "image not found"
GAIN, LOSS = QColor("#1a7f37"), QColor("#c62828")
HINT = "Click a backbone's AP, AP_S, AP_M or AP_L in the table (not the baseline's) to see the objects behind it"


# -- errors
class ErrorsPanel(QWidget):
    """TIDE's error breakdown per size range: bars of the AP50 points each error type costs each backbone,
    and a table of one size range with each cost's difference against the baseline."""

    def __init__(self) -> None:
        super().__init__()
        self.plots = pg.GraphicsLayoutWidget()
        self.area = QComboBox()
        self.area.setToolTip("the size range of the table")
        self.area.currentTextChanged.connect(lambda _t: self._fill_table())
        self.table = QTableWidget()
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().hide()
        below = QWidget()
        lay = QVBoxLayout(below)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.caption = QLabel("")
        self.caption.setWordWrap(True)
        row.addWidget(self.caption, 1)
        row.addWidget(QLabel("size range"))
        row.addWidget(self.area)
        lay.addLayout(row)
        lay.addWidget(self.table)
        split = QSplitter(Qt.Vertical)
        split.addWidget(self.plots)
        split.addWidget(below)
        split.setSizes([430, 200])
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(split)
        self.breakdowns: dict[str, Any] = {}
        self.baseline: str | None = None

    def show_breakdowns(self, breakdowns: Mapping[str, Mapping[str, Any]], baseline: str | None) -> None:
        """Draw `breakdowns` (backbone -> size range -> ErrorBreakdown) against `baseline`."""
        from fishspine.analysis.figures.coco_errors import COLUMNS, LABELS, _cost

        self.breakdowns, self.baseline = dict(breakdowns), baseline
        self.plots.clear()
        if not breakdowns:
            return
        names = list(breakdowns)
        areas = list(next(iter(breakdowns.values())))
        sizes = [a for a in areas if a != "all"] + [a for a in areas if a == "all"]  # "all" last, as the bars
        cols = min(len(sizes), 2)
        height = 0.8 / len(names)
        ys = np.arange(len(COLUMNS))[::-1].astype(float)
        ys[-2:] -= 0.5  # a gap before the two summaries, as in the figure
        self.plots.addLabel(
            "Where box AP50 goes: TIDE error types of the boxes (AP50 points gained by fixing each)",
            row=0,
            col=0,
            colspan=cols,
        )
        first, lowest, widest = None, 0.0, 0.0
        colors = model_qcolors(names)
        for i, area in enumerate(sizes):
            r, c = divmod(i, cols)
            aps = ", ".join(f"{100 * breakdowns[n][area].ap:.1f}" for n in names)
            p = self.plots.addPlot(row=r + 1, col=c, title=f"{area}: AP50 {aps}")
            p.setMenuEnabled(False)
            p.hideButtons()
            p.setMouseEnabled(x=False, y=False)
            if i == 0:
                p.addLegend(offset=(-4, 4), labelTextSize="8pt", brush=(255, 255, 255, 210))
            for j, name in enumerate(names):
                costs = [_cost(breakdowns[name][area], k) for k in COLUMNS]
                shown = [v for v in costs if not math.isnan(v)]
                lowest, widest = min([lowest, *shown]), max([widest, *shown])
                offset = ((len(names) - 1) / 2 - j) * height
                p.addItem(
                    pg.BarGraphItem(
                        x0=0,
                        y=ys + offset,
                        height=height * 0.9,
                        width=[0.0 if math.isnan(v) else v for v in costs],
                        brush=colors[name],
                        pen=None,
                        name=f"{name} (baseline)" if name == baseline else name,
                    )
                )
            p.getAxis("left").setTicks([[(y, LABELS[k]) for y, k in zip(ys, COLUMNS)]])
            p.setYRange(ys[-1] - 0.6, ys[0] + 0.6, padding=0)
            if first is not None:
                p.setXLink(first)
            first = first or p
        if first is not None:  # linked panels take the first's range: make it hold every panel's bars
            first.setXRange(lowest * 1.04 - 0.01 * widest, widest * 1.04, padding=0)
        self.area.blockSignals(True)
        kept = self.area.currentText()
        self.area.clear()
        self.area.addItems(areas)
        self.area.setCurrentText(kept if kept in areas else areas[0])
        self.area.blockSignals(False)
        self._fill_table()

    def _fill_table(self) -> None:
        from fishspine.analysis.figures.coco_errors import COLUMNS, LABELS, error_rows

        area = self.area.currentText()
        rows = [r for r in error_rows(self.breakdowns, self.baseline) if r["area"] == area]
        self.caption.setText(
            "AP50 points each error type costs"
            + (f"; (Δ against {self.baseline}: green, it loses less to it)" if self.baseline else "")
        )
        self.table.clearContents()
        self.table.setColumnCount(2 + len(COLUMNS))
        self.table.setRowCount(len(rows))
        self.table.setHorizontalHeaderLabels(["backbone", "AP50"] + [LABELS[c] for c in COLUMNS])
        colors = model_qcolors(self.breakdowns)
        for i, r in enumerate(rows):
            name = QTableWidgetItem(r["backbone"] + ("  (baseline)" if r["backbone"] == self.baseline else ""))
            name.setForeground(QBrush(QColor(colors[r["backbone"]])))
            self.table.setItem(i, 0, name)
            cells = [f"{r['AP50']:.1f}"]
            for c in COLUMNS:
                d = r.get(f"vs_baseline_{c}")
                cells.append(f"{r[f'dAP_{c}']:.2f}" + (f"  ({d:+.2f})" if d is not None else ""))
            for j, text in enumerate(cells, start=1):
                cell = QTableWidgetItem(text)
                cell.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                d = r.get(f"vs_baseline_{COLUMNS[j - 2]}") if j > 1 else None
                if d is not None and abs(d) >= 0.005:
                    cell.setForeground(QBrush(GAIN if d < 0 else LOSS))
                self.table.setItem(i, j, cell)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)

    def table_texts(self) -> list[list[str]]:
        """The table's cells, row by row (for tests and copying)."""
        t = self.table
        return [[t.item(i, j).text() for j in range(t.columnCount())] for i in range(t.rowCount())]


# -- evidence
@dataclass
class EvidenceRequest:
    """What one evidence panel compares: a backbone against the baseline in a size range."""

    gt: dict
    backbone: str
    baseline: str
    dets: dict[str, list]  # backbone and baseline -> checked detections
    area: str
    area_ranges: dict[str, tuple[float, float]]
    colors: tuple[str, str]  # backbone's, baseline's
    categories: dict[int, str] = field(default_factory=dict)
    files: dict[int, Any] = field(default_factory=dict)  # image id -> file_name

    def __post_init__(self) -> None:
        self.categories = self.categories or {c["id"]: c["name"] for c in self.gt["categories"]}
        self.files = self.files or {e["id"]: e.get("file_name") for e in self.gt["images"]}


@dataclass
class EvidenceOutcome:
    """What an evidence job produced: the evidence and, per item, its crop (None: image not found)."""

    generation: int
    evidence: Any  # analysis.coco.evidence.Evidence
    crops: list[tuple[np.ndarray, tuple[int, int]] | None]  # (pixels, (top, left)) per item
    folder: str


def evidence_job(
    req: EvidenceRequest, thresholds: Mapping[str, float] | None, folder: str, generation: int = 0
) -> Job[EvidenceOutcome]:
    """The evidence of req.backbone against req.baseline (default thresholds: each one's F1 optimum), and each
    item's crop from `folder`."""
    from fishspine.analysis.coco.evidence import evidence, image_loader
    from fishspine.analysis.figures.coco_evidence import crop_window

    yield Progress(0, 2, "matching")
    ev = evidence(
        req.gt,
        (req.backbone, req.dets[req.backbone]),
        (req.baseline, req.dets[req.baseline]),
        req.area,
        req.area_ranges,
        thresholds,
    )
    yield Progress(1, 2, "crops")
    image = image_loader(folder, req.files, cache=16)
    crops: list = []
    for it in sorted(range(len(ev.items)), key=lambda i: ev.items[i].image_id):  # one image after another
        pixels = image(ev.items[it].image_id)
        if pixels is None:
            crops.append((it, None))
            continue
        top, bottom, left, right = crop_window(ev.items[it].box, pixels.shape[:2])
        crops.append((it, (np.ascontiguousarray(pixels[top:bottom, left:right]), (top, left))))
    crops.sort(key=lambda c: c[0])
    yield Progress(2, 2, "crops")
    return EvidenceOutcome(generation, ev, [c for _, c in crops], folder)


def tile(item: Any, crop: tuple[np.ndarray, tuple[int, int]] | None, colors: tuple[str, str]) -> QPixmap:
    """A gallery tile: the crop with the ground truth (white, dashed, for objects) and both detectors' boxes in
    their colours, as evidence_figure draws them; a grey tile saying so when the image was not found."""
    if crop is None:
        pix = QPixmap(TILE, TILE)
        pix.fill(QColor("#e4e4e4"))
        p = QPainter(pix)
        p.setPen(QColor("#555"))
        p.drawText(QRectF(0, 0, TILE, TILE), Qt.AlignCenter | Qt.TextWordWrap, NOT_FOUND)
        p.end()
        return pix
    pixels, (top, left) = crop
    h, w = pixels.shape[:2]
    if pixels.ndim == 2:
        pixels = np.ascontiguousarray(np.repeat(pixels[:, :, None], 3, axis=2))
    img = QImage(pixels.data, w, h, pixels.strides[0], QImage.Format_RGB888).copy()
    scale = TILE / max(h, w)
    pix = QPixmap.fromImage(img).scaled(
        max(1, round(w * scale)), max(1, round(h * scale)), Qt.IgnoreAspectRatio, Qt.SmoothTransformation
    )
    boxes = [(item.box, "white", Qt.DashLine)] if item.kind in ("found_only", "missed_only") else []
    boxes += [(d.box, c, Qt.SolidLine) for d, c in zip((item.backbone, item.baseline), colors) if d is not None]
    p = QPainter(pix)
    p.setRenderHint(QPainter.Antialiasing)
    for (x, y, bw, bh), color, style in boxes:
        pen = QPen(QColor(color), 1.5, style)
        p.setPen(pen)
        p.drawRect(QRectF((x - left) * scale, (y - top) * scale, bw * scale, bh * scale))
    p.end()
    return pix


class EvidencePanel(QWidget):
    """The objects behind one number: per kind, a gallery of crops; thresholds, sorting, the images folder.

    A click on a crop whose image file exists adds (or selects) that image and emits view_requested("cam").
    """

    view_requested = Signal(str)

    def __init__(self, state: AppState, run_job: Callable, engine: Any = None) -> None:
        super().__init__()
        self.state = state
        self.run_job = run_job
        self.engine = engine
        self.request: EvidenceRequest | None = None
        self.outcome: EvidenceOutcome | None = None
        self._generation = 0
        self.running = False
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.title = QLabel(HINT)
        self.title.setWordWrap(True)
        bold = QFont()
        bold.setBold(True)
        self.title.setFont(bold)
        outer.addWidget(self.title)
        row = QHBoxLayout()
        self.threshold_labels = [QLabel(""), QLabel("")]
        self.thresholds = [QDoubleSpinBox(), QDoubleSpinBox()]
        for label, spin in zip(self.threshold_labels, self.thresholds):
            spin.setRange(0.0, 1.0)
            spin.setDecimals(3)
            spin.setSingleStep(0.05)
            spin.setKeyboardTracking(False)
            spin.setToolTip("score threshold: the detector's detections below it are dropped")
            spin.valueChanged.connect(self._threshold_changed)
            row.addWidget(label)
            row.addWidget(spin)
        self.f1_button = QPushButton("F1 thresholds")
        self.f1_button.setToolTip("each detector's threshold that maximises its F1 at IoU 0.5 in this size range")
        self.f1_button.clicked.connect(lambda: self.compute(None))
        row.addWidget(self.f1_button)
        row.addWidget(QLabel("sort by"))
        self.sort = QComboBox()
        self.sort.addItems(["score", "iou", "size"])
        self.sort.setToolTip("the deciding detector's score or IoU, or the object's size; highest first")
        self.sort.currentTextChanged.connect(lambda _t: self._fill_gallery())
        row.addWidget(self.sort)
        row.addStretch(1)
        self.folder_button = QPushButton("Images folder…")
        self.folder_button.setToolTip("the folder of the ground truth's images (its file_name entries)")
        self.folder_button.clicked.connect(self.choose_folder)
        row.addWidget(self.folder_button)
        outer.addLayout(row)
        self.folder_label = QLabel("")
        self.folder_label.setStyleSheet("color: #555;")
        outer.addWidget(self.folder_label)
        self.kinds = QTabBar()
        self.kinds.setExpanding(False)
        self.kinds.currentChanged.connect(lambda _i: self._fill_gallery())
        outer.addWidget(self.kinds)
        self.gallery = QListWidget()
        self.gallery.setViewMode(QListWidget.IconMode)
        self.gallery.setIconSize(QSize(TILE, TILE))
        self.gallery.setGridSize(QSize(TILE + 40, TILE + 40))
        small = QFont()
        small.setPointSizeF(8.5)
        self.gallery.setFont(small)
        self.gallery.setResizeMode(QListWidget.Adjust)
        self.gallery.setMovement(QListWidget.Static)
        self.gallery.setWrapping(True)
        self.gallery.setWordWrap(True)
        self.gallery.setUniformItemSizes(True)
        self.gallery.itemClicked.connect(self._crop_clicked)
        self.gallery.itemDoubleClicked.connect(lambda entry: self.choose(entry.data(Qt.UserRole)))
        self.cams = DetectionCamPanel(state, run_job, engine)
        split = QSplitter(Qt.Vertical)
        split.addWidget(self.gallery)
        split.addWidget(self.cams)
        split.setSizes([300, 300])
        outer.addWidget(split, 1)
        self._show_folder()
        state.settings_changed.connect(self._settings_changed)

    # -- inputs
    def open(self, request: EvidenceRequest) -> None:
        """Show the evidence of request.backbone against request.baseline (at their F1 thresholds)."""
        self.request = request
        self.outcome = None
        for label, name, color in zip(self.threshold_labels, (request.backbone, request.baseline), request.colors):
            label.setText(f"<span style='color:{color}'><b>{name}</b></span> score ≥")
        self.title.setText(f"{request.backbone} against {request.baseline}, {request.area} objects, IoU 0.5 …")
        self.compute(None)

    def clear(self) -> None:
        """Forget the evidence shown (its backbone, baseline or results are gone)."""
        self.request, self.outcome = None, None
        self.cams.clear()
        self._generation += 1  # a job still running is not applied
        self.gallery.clear()
        while self.kinds.count():
            self.kinds.removeTab(0)
        self.title.setText(HINT)

    def folder(self) -> str:
        """The images folder (remembered in the settings)."""
        return self.state.settings.coco_images

    def choose_folder(self) -> None:
        """Ask for the folder of the ground truth's images and cut the crops from it."""
        path = QFileDialog.getExistingDirectory(self, "Images of the ground truth", self.folder())
        if path:
            self.set_folder(path)

    def set_folder(self, path: str) -> None:
        """Take the crops from `path` from now on."""
        self.state.update_settings(coco_images=str(path))

    def _settings_changed(self, changed: set[str]) -> None:
        if "coco_images" in changed:  # chosen here, or restored from a session
            self._show_folder()
            if self.request is not None:
                self.compute(self.outcome.evidence.thresholds if self.outcome else None)

    def _show_folder(self) -> None:
        f = self.folder()
        self.folder_label.setText(
            f"images: {f}" if f else "no images folder: crops show “image not found” (Images folder… to point at them)"
        )

    def _threshold_changed(self, _value: float) -> None:
        if self.outcome is None or self.request is None:
            return
        t = dict(self.outcome.evidence.thresholds)
        for name, spin in zip((self.request.backbone, self.request.baseline), self.thresholds):
            if not math.isclose(spin.value(), round(t[name], 3)):  # the box shows 3 decimals of the exact value
                t[name] = spin.value()
        self.compute(t)

    def compute(self, thresholds: Mapping[str, float] | None) -> None:
        """Compute the evidence in a worker (None: each detector's F1 threshold)."""
        if self.request is None:
            return
        self._generation += 1
        self.running = True
        self.run_job(
            "COCO evidence",
            partial(
                evidence_job, self.request, dict(thresholds) if thresholds else None, self.folder(), self._generation
            ),  # fmt: skip
            self._computed,
        )

    def _computed(self, out: EvidenceOutcome) -> None:
        if not isinstance(out, EvidenceOutcome) or out.generation != self._generation:
            return
        self.running = False
        self.outcome = out
        ev, req = out.evidence, self.request
        for spin, name in zip(self.thresholds, (req.backbone, req.baseline)):
            spin.blockSignals(True)
            spin.setValue(ev.thresholds[name])
            spin.blockSignals(False)
        self.title.setText(f"{ev.backbone} against {ev.baseline}, {ev.area} objects, IoU 0.5")
        self._fill_kinds()
        self._fill_gallery()

    # -- display
    def counts(self) -> dict[str, int]:
        """The counts of each kind shown (empty before the first evidence)."""
        return self.outcome.evidence.counts() if self.outcome else {}

    def _fill_kinds(self) -> None:
        from fishspine.analysis.coco.evidence import EVIDENCE_KINDS, EVIDENCE_TITLES

        ev = self.outcome.evidence
        counts = ev.counts()
        current = max(self.kinds.currentIndex(), 0)
        self.kinds.blockSignals(True)
        while self.kinds.count():
            self.kinds.removeTab(0)
        for kind in EVIDENCE_KINDS:
            text = EVIDENCE_TITLES[kind].format(backbone=ev.backbone, baseline=ev.baseline)
            i = self.kinds.addTab(f"{text}: {counts[kind]}")
            self.kinds.setTabData(i, kind)
        self.kinds.setCurrentIndex(current)
        self.kinds.blockSignals(False)

    def kind(self) -> str:
        """The kind whose crops the gallery shows."""
        return self.kinds.tabData(self.kinds.currentIndex()) or "found_only"

    def _fill_gallery(self) -> None:
        self.gallery.clear()
        if self.outcome is None:
            return
        ev, crops, req = self.outcome.evidence, self.outcome.crops, self.request
        index = {id(item): i for i, item in enumerate(ev.items)}
        for item in ev.of_kind(self.kind(), self.sort.currentText()):
            i = index[id(item)]
            own = item.backbone if item.kind in ("found_only", "false_positive_only") else item.baseline
            category = req.categories.get(item.category_id, "?")
            size = math.sqrt(item.area)
            text = f"img {item.image_id} · {category}\nscore {own.score:.2f} · {size:.0f} px"  # as the figure's titles
            entry = QListWidgetItem(QIcon(tile(item, crops[i], req.colors)), text)
            entry.setData(Qt.UserRole, i)
            x, y, w, h = item.box
            entry.setToolTip(
                f"image {item.image_id} ({req.files.get(item.image_id)}), {category}, box [{x:.0f}, {y:.0f}, {w:.0f}, "
                f"{h:.0f}]; score {own.score:.3f}, IoU {own.iou:.2f}"
                + ("" if crops[i] is not None else f"; {NOT_FOUND}")
                + "\nclick: open it in Grad-CAM"
            )
            self.gallery.addItem(entry)

    def _crop_clicked(self, entry: QListWidgetItem) -> None:
        i = entry.data(Qt.UserRole)
        if self.engine is None or not detectors_of(self.state):
            self.choose(i)  # no detector to take CAMs of: the image goes to the Grad-CAM view
            return
        self.show_detection_cams(i)

    def _item_image(self, i: int):
        """(item, its image's path or None, a description of it)."""
        item, req = self.outcome.evidence.items[i], self.request
        name = req.files.get(item.image_id)
        path = file_in_folder(self.folder(), name) if self.folder() else None
        x, y, w, h = item.box
        what = f"image {item.image_id} ({name}), box [{x:.0f}, {y:.0f}, {w:.0f}, {h:.0f}]"
        if path is None or not path.is_file():
            self.state.notify("warning", f"COCO evidence: {what}: {NOT_FOUND} in {self.folder() or 'no images folder'}")
            return item, None, what
        return item, path, what

    def show_detection_cams(self, i: int) -> None:
        """Every loaded detector's CAM of its detection of item `i`'s object, below the gallery."""
        item, path, _what = self._item_image(i)
        if path is None:
            return
        category = self.request.categories.get(item.category_id, "?")

        def loaded(entry) -> None:
            key = f"coco:{path.resolve()}"  # the engine holds the detectors' passes of this file by it
            self.cams.show_object(object_of(key, str(path), entry.pixels, item.box, category))

        self._load_image(str(path), loaded)

    def _load_image(self, path: str, then: Callable[[Any], None]) -> None:
        """Read the image at `path` in a worker, then `then(its ImageEntry)`; a bad file is reported."""

        def job():
            from fishspine.analysis.images import ImageError
            from fishspine.app.components.sources import load_image_path

            yield Progress(0, 1, Path(path).name)
            try:
                return load_image_path(path)
            except ImageError as exc:
                return str(exc)

        def done(entry) -> None:
            if isinstance(entry, str):
                self.state.notify("error", entry)
            else:
                then(entry)

        self.run_job(f"loading {Path(path).name}", job, done)

    def choose(self, i: int) -> None:
        """Open item `i`'s image in Grad-CAM when its file is in the images folder."""
        item, path, what = self._item_image(i)
        if path is None:
            return
        category = self.request.categories.get(item.category_id, "?")
        x, y, w, h = item.box
        self.open_image(
            str(path),
            f"COCO evidence: {what}, {category} ({item.kind.replace('_', ' ')})",
            (x, y, x + w, y + h),
            category,
        )

    def open_image(
        self, path: str, description: str, box: tuple[float, float, float, float] | None = None, label: str = ""
    ) -> None:
        """Add (or select, when it is loaded) the image at `path` and show it in the Grad-CAM view, with
        the object in `box` (x0, y0, x1, y1 in its pixels) outlined over its maps and CAMs."""
        resolved = str(Path(path).resolve())
        for i, im in enumerate(self.state.images):
            if im.path and str(Path(im.path).resolve()) == resolved:
                self.state.focus_on(i, box, label)
                self.state.notify("info", description)
                self.view_requested.emit("cam")
                return

        def loaded(entry) -> None:
            self.state.add_images([entry])
            self.state.focus_on(len(self.state.images) - 1, box, label)
            self.state.notify("info", description)
            self.view_requested.emit("cam")

        self._load_image(path, loaded)

    # -- export
    def export_result(self):
        """evidence_export's ViewExport of what is shown (the crops of `coco --evidence`)."""
        from fishspine.analysis.coco.evidence import image_loader
        from fishspine.analysis.figures.coco_evidence import evidence_export

        if self.outcome is None:
            raise ValueError("no evidence yet: click a backbone's AP, AP_S, AP_M or AP_L cell in the table")
        req = self.request
        return evidence_export(
            self.outcome.evidence,
            image_loader(self.outcome.folder, req.files, cache=16),
            req.categories,
            req.colors,
            sort=self.sort.currentText(),
        )
