"""The fishspine main window: model columns, an image strip, and one tab per analysis view.

Every view draws the same matplotlib figure that the `fishspine` command writes (analysis/*_figures),
in a Qt canvas with pan/zoom, so an export from the app is the command line's file. The window
computes nothing itself: jobs run analysis generators in worker threads (app/workers.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg, NavigationToolbar2QT
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QGuiApplication, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (QApplication, QComboBox, QFileDialog, QHBoxLayout, QInputDialog, QLabel, QListWidget,
                               QListWidgetItem, QMainWindow, QMenu, QPlainTextEdit, QProgressBar, QPushButton,
                               QSplitter, QTabWidget, QVBoxLayout, QWidget)

from .sources import classify, demo_sources, images_in, load_image_path, load_model_source
from .state import AppState, ImageEntry, read_session
from .workers import GeneratorWorker, start

VIEWS = ("activations", "cam", "gradients", "architecture", "coco")


class FigureView(QWidget):
    """A matplotlib figure in a Qt canvas with a toolbar, export and copy; subclasses build the figure."""

    title = ""

    def __init__(self, state: AppState) -> None:
        super().__init__()
        self.state = state
        self.figure = None
        self.data_rows: list[dict] = []
        self.payload: Any = None
        self.canvas: FigureCanvasQTAgg | None = None
        self.toolbar: NavigationToolbar2QT | None = None
        self._layout = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.controls = QHBoxLayout()
        bar.addLayout(self.controls)
        bar.addStretch(1)
        self.info = QLabel("")
        self.info.setObjectName("viewInfo")
        bar.addWidget(self.info)
        for text, slot in (("Export…", self.export_dialog), ("Copy", self.copy_to_clipboard)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            bar.addWidget(b)
        self._layout.addLayout(bar)
        self.placeholder = QLabel("Waiting for results…")
        self.placeholder.setAlignment(Qt.AlignCenter)
        self._layout.addWidget(self.placeholder, 1)

    def build(self) -> tuple[Any, list[dict], Any] | None:  # pragma: no cover - per view
        """(figure, data rows, JSON payload) for the current state, or None when there is nothing to show."""
        raise NotImplementedError

    def refresh(self) -> None:
        try:
            built = self.build()
        except Exception as exc:  # noqa: BLE001 - a broken view must not take the app down
            self.state.notify("error", f"{self.title}: {exc}")
            return
        if built is None:
            return
        self.figure, self.data_rows, self.payload = built
        if self.canvas is not None:
            self._layout.removeWidget(self.canvas)
            self._layout.removeWidget(self.toolbar)
            self.canvas.deleteLater()
            self.toolbar.deleteLater()
        self.placeholder.hide()
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.toolbar = NavigationToolbar2QT(self.canvas, self)
        self._layout.addWidget(self.toolbar)
        self._layout.addWidget(self.canvas, 1)
        self.canvas.mpl_connect("motion_notify_event", self.on_hover)
        self.canvas.mpl_connect("button_press_event", self.on_click)
        self.canvas.draw_idle()

    def on_hover(self, event) -> None:
        pass

    def on_click(self, event) -> None:
        pass

    def export(self, path: str | Path) -> list[Path]:
        """Write the figure (.png/.svg/.pdf) or its data (.csv/.json) to `path`."""
        from fishspine.analysis.figures import save_figure, write_csv, write_json

        if self.figure is None:
            raise ValueError("nothing to export yet")
        # A fresh figure at its own size: the one on screen has been resized to the widget.
        figure = self.build()[0]
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return [write_csv(path, self.data_rows)]
        if suffix == ".json":
            return [write_json(path, self.payload)]
        return save_figure(figure, path)

    def export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, f"Export {self.title}", f"{self.title.lower()}.pdf",
                                              "Figures (*.pdf *.svg *.png);;Data (*.csv *.json)")
        if path:
            try:
                for p in self.export(path):
                    self.state.notify("info", f"exported {p}")
            except (ValueError, OSError) as exc:
                self.state.notify("error", f"export failed: {exc}")

    def copy_to_clipboard(self) -> None:
        from fishspine.analysis.figures import figure_bytes

        if self.figure is not None:
            QGuiApplication.clipboard().setImage(QImage.fromData(figure_bytes(self.build()[0], "png")))
            self.state.notify("info", f"{self.title} copied to the clipboard")


class ActivationsView(FigureView):
    """Rows = blocks at matching depth, columns = models; hover shows the block, click enlarges."""

    title = "Activations"

    def __init__(self, state: AppState) -> None:
        super().__init__(state)
        self._cells: dict[Any, tuple[str, Any]] = {}

    def build(self):
        from fishspine.analysis.analysis_figures import activation_gallery_figure, sample_rows

        if not self.state.insights or self.state.image is None:
            return None
        results = {k: v.activations for k, v in self.state.insights.items()}
        fig = activation_gallery_figure(self._shown_image(), results, rows=self.state.settings.gallery_rows)
        # Axes are created column by column: the image, then the sampled blocks.
        axes = iter(fig.axes)
        self._cells = {}
        for label, res in results.items():
            next(axes)
            for idx in sample_rows(len(res.blocks), self.state.settings.gallery_rows):
                self._cells[next(axes)] = (label, res.blocks[idx])
        rows = [row for r in results.values() for row in r.rows()]
        return fig, rows, {"image": self.state.image.label, "blocks": rows}

    def _shown_image(self):
        from fishspine.analysis.images import resize_longer_side

        return resize_longer_side(self.state.image.pixels, self.state.settings.image_size)

    def on_hover(self, event) -> None:
        cell = self._cells.get(event.inaxes)
        if cell:
            label, b = cell
            self.info.setText(f"{label} · {b.name} ({b.role}, stride {2 ** b.level}) · output {list(b.shape)} · "
                              f"range [{b.out_min:.3g}, {b.out_max:.3g}]")

    def on_click(self, event) -> None:
        cell = self._cells.get(event.inaxes)
        if cell:
            self.state.select_block(cell[1].name)
            self.enlarge(*cell)

    def enlarge(self, label: str, block) -> None:
        import numpy as np

        from fishspine.analysis.figures import new_figure

        fig = new_figure(4.5, 4.5)
        ax = fig.add_subplot()
        ax.imshow(block.map.astype(np.float32), cmap="inferno", vmin=0, vmax=1)
        ax.set_title(f"{label}: {block.name} ({block.role}, 1/{2 ** block.level})")
        ax.axis("off")
        canvas = FigureCanvasQTAgg(fig)
        canvas.setWindowTitle(f"{label} · {block.name}")
        canvas.resize(520, 520)
        canvas.show()
        self._enlarged = canvas  # keep a reference while the window is open


class CamView(FigureView):
    """CAM overlays per model for the chosen block, method and class."""

    title = "Grad-CAM"

    def __init__(self, state: AppState) -> None:
        super().__init__(state)
        self.method = QComboBox()
        self.method.addItems(["gradcam", "gradcampp", "layercam"])
        self.method.currentTextChanged.connect(lambda m: state.update_settings(cam_method=m))
        self.controls.addWidget(QLabel("method"))
        self.controls.addWidget(self.method)

    def build(self):
        from fishspine.analysis.analysis_figures import cam_figure
        from fishspine.analysis.images import resize_longer_side

        if not self.state.insights or self.state.image is None:
            return None
        cams = {k: v.cam for k, v in self.state.insights.items()}
        image = resize_longer_side(self.state.image.pixels, self.state.settings.image_size)
        rows = [{"model": m, "block": c.block, "method": c.method, "target": c.target_label, "raw_max": c.raw_max}
                for m, c in cams.items()]
        return cam_figure(image, cams), rows, {"image": self.state.image.label, "cams": rows}


class GradientView(FigureView):
    """Gradient traces, models overlaid; clicking a point selects that block everywhere."""

    title = "Gradients"

    def build(self):
        from fishspine.analysis.analysis_figures import gradient_trace_figure

        if not self.state.insights:
            return None
        traces = {k: v.trace for k, v in self.state.insights.items()}
        fig = gradient_trace_figure(traces, self.state.settings.gradient_which)
        self._traces = traces
        rows = [row for t in traces.values() for row in t.rows()]
        return fig, rows, {m: {"ratio": t.ratio, "blocks": t.rows()} for m, t in traces.items()}

    def nearest_block(self, x: float, y: float) -> tuple[str, str] | None:
        """(model, block) of the trace point nearest to (normalised depth x, gradient y)."""
        import math

        best = None
        for m, t in getattr(self, "_traces", {}).items():
            for d, v, name in zip(t.depth, t.output_grad_norm, t.blocks):
                if v <= 0:
                    continue
                dist = abs(d - x) * 10 + abs(math.log10(v) - math.log10(max(y, 1e-30)))
                if best is None or dist < best[0]:
                    best = (dist, m, name)
        return None if best is None else (best[1], best[2])

    def on_hover(self, event) -> None:
        if event.inaxes is not None and event.ydata:
            hit = self.nearest_block(event.xdata, event.ydata)
            if hit:
                self.info.setText(f"{hit[0]} · {hit[1]}")

    def on_click(self, event) -> None:
        if event.inaxes is not None and event.ydata:
            hit = self.nearest_block(event.xdata, event.ydata)
            if hit:
                self.state.select_block(hit[1])
                self.state.notify("info", f"selected block {hit[1]} of {hit[0]}")


class ArchitectureView(FigureView):
    """One model's block graph in its natural layout; nodes coloured by a per-block number."""

    title = "Architecture"
    COLOR_BY = ("role", "params", "macs", "gradient")

    def __init__(self, state: AppState) -> None:
        super().__init__(state)
        self.model_box = QComboBox()
        self.color_box = QComboBox()
        self.color_box.addItems(self.COLOR_BY)
        self.controls.addWidget(QLabel("model"))
        self.controls.addWidget(self.model_box)
        self.controls.addWidget(QLabel("colour by"))
        self.controls.addWidget(self.color_box)
        self.model_box.currentTextChanged.connect(lambda _t: self.refresh())
        self.color_box.currentTextChanged.connect(lambda _t: self.refresh())
        self._graphs: dict[str, Any] = {}
        state.models_changed.connect(self._models_changed)

    def _models_changed(self) -> None:
        current = self.model_box.currentText()
        self.model_box.blockSignals(True)
        self.model_box.clear()
        self.model_box.addItems([m.label for m in self.state.models])
        if current in [m.label for m in self.state.models]:
            self.model_box.setCurrentText(current)
        self.model_box.blockSignals(False)

    def build(self):
        from fishspine.analysis.graph import architecture_graph
        from fishspine.analysis.graph_figures import graph_figure

        label = self.model_box.currentText()
        entry = next((m for m in self.state.models if m.label == label), None)
        if entry is None:
            return None
        key = f"{label}:{id(entry.model)}"
        if key not in self._graphs:
            self._graphs[key] = architecture_graph(entry.model, 224 if entry.family != "spinenet" else 640)
        graph = self._graphs[key]
        how = self.color_box.currentText()
        values = None
        if how in ("params", "macs"):
            values = {n.name: float(getattr(n, how)) for n in graph.nodes}
        elif how == "gradient" and label in self.state.insights:
            t = self.state.insights[label].trace
            values = dict(zip(t.blocks, t.output_grad_norm))
        fig = graph_figure(graph, values, how if values else "", log_values=values is not None)
        self._graph = graph
        return fig, graph.rows(), graph.to_json()

    def on_click(self, event) -> None:
        graph = getattr(self, "_graph", None)
        if graph is None or event.inaxes is None or event.xdata is None:
            return
        name = min(graph.positions, key=lambda n: (graph.positions[n][0] - event.xdata) ** 2
                   + (graph.positions[n][1] - event.ydata) ** 2)
        self.state.select_block(name)
        label = self.model_box.currentText()
        insight = self.state.insights.get(label)
        if insight:
            try:
                ActivationsView.enlarge(self, label, insight.activations.block(name))
            except KeyError:
                pass

    def on_hover(self, event) -> None:
        graph = getattr(self, "_graph", None)
        if graph is None or event.inaxes is None or event.xdata is None:
            return
        name = min(graph.positions, key=lambda n: (graph.positions[n][0] - event.xdata) ** 2
                   + (graph.positions[n][1] - event.ydata) ** 2)
        n = graph.node(name)
        self.info.setText(f"{n.name} · {n.role} · stride {2 ** n.level} · {n.channels} ch · "
                          f"{n.params / 1e6:.2f} M params · {n.macs / 1e9:.2f} GMACs")


class CocoView(FigureView):
    """Per-scale AP table with deltas, AP_S/M/L bars and PR curves, from a GT and result files."""

    title = "COCO"

    def __init__(self, state: AppState, run_job: Callable) -> None:
        super().__init__(state)
        self.run_job = run_job
        for text, slot in (("Ground truth…", self.open_gt), ("Add results…", self.add_results)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            self.controls.addWidget(b)
        self.kind = QComboBox()
        self.kind.addItems(["table", "sizes", "pr"])
        self.kind.currentTextChanged.connect(lambda _t: self.refresh())
        self.baseline = QComboBox()
        self.baseline.currentTextChanged.connect(lambda t: self.refresh())
        self.controls.addWidget(QLabel("baseline"))
        self.controls.addWidget(self.baseline)
        self.controls.addWidget(self.kind)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumHeight(110)
        self.text.setStyleSheet("font-family: monospace;")
        self._layout.insertWidget(1, self.text)
        state.coco_changed.connect(self._coco_changed)

    def open_gt(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "COCO ground truth", "", "JSON (*.json)")
        if path:
            self.state.update_settings(coco_gt=path)
            self.evaluate()

    def add_results(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "COCO result files", "", "JSON (*.json)")
        for p in paths:
            self.state.settings.coco_results[Path(p).stem] = p
        if paths:
            self.evaluate()

    def evaluate(self) -> None:
        s = self.state.settings
        if not s.coco_gt or not s.coco_results:
            return
        from functools import partial

        from fishspine.analysis.coco import iter_evaluate

        self.run_job("COCO evaluation", partial(iter_evaluate, s.coco_gt, dict(s.coco_results), "bbox"),
                     self.state.set_coco)

    def _coco_changed(self) -> None:
        self.baseline.blockSignals(True)
        self.baseline.clear()
        self.baseline.addItems(["(none)"] + list(self.state.coco))
        if self.state.settings.coco_baseline in self.state.coco:
            self.baseline.setCurrentText(self.state.settings.coco_baseline)
        self.baseline.blockSignals(False)
        self.refresh()

    def build(self):
        from fishspine.analysis.coco import format_table, per_scale_table
        from fishspine.analysis.coco_figures import pr_curves_figure, size_bars_figure, table_figure

        evals = self.state.coco
        if not evals:
            return None
        base = self.baseline.currentText()
        base = base if base in evals else None
        self.state.settings.coco_baseline = base or ""
        self.text.setPlainText(format_table(evals, base))
        kind = self.kind.currentText()
        fig = {"table": lambda: table_figure(evals, base), "sizes": lambda: size_bars_figure(evals, base),
               "pr": lambda: pr_curves_figure(evals, 0.5)}[kind]()
        rows = per_scale_table(evals, base)
        return fig, rows, {"baseline": base, "table": rows}


class MainWindow(QMainWindow):
    """fishspine's window. Jobs run in workers; views redraw from AppState events."""

    def __init__(self, state: AppState | None = None) -> None:
        super().__init__()
        self.state = state or AppState()
        self.setWindowTitle("fishspine — inside multi-scale backbones")
        self.resize(1400, 900)
        self.setAcceptDrops(True)
        self._workers: set[GeneratorWorker] = set()
        self._analysis_worker: GeneratorWorker | None = None
        self._build_ui()
        self._connect()
        self._pending_analysis = QTimer(self, singleShot=True, interval=150)
        self._pending_analysis.timeout.connect(self.run_analysis)

    # ------------------------------------------------------------------ layout
    def _build_ui(self) -> None:
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.addWidget(QLabel("<b>Models</b> (drop checkpoints; right-click to rename, move, remove)"))
        self.model_list = QListWidget()
        self.model_list.setContextMenuPolicy(Qt.CustomContextMenu)
        self.model_list.customContextMenuRequested.connect(self._model_menu)
        lv.addWidget(self.model_list, 2)
        lv.addWidget(QLabel("<b>Images</b> (drop images or folders)"))
        self.image_list = QListWidget()
        self.image_list.setViewMode(QListWidget.IconMode)
        self.image_list.setIconSize(QPixmap(96, 96).size())
        self.image_list.setFlow(QListWidget.LeftToRight)
        self.image_list.setWrapping(True)
        self.image_list.currentRowChanged.connect(self.state.select_image)
        lv.addWidget(self.image_list, 2)
        row = QHBoxLayout()
        self.device_box = QComboBox()
        self.device_box.addItems(["auto", "cpu", "cuda"])
        self.precision_box = QComboBox()
        self.precision_box.addItems(["float32", "bf16"])
        self.reduction_box = QComboBox()
        self.reduction_box.addItems(["mean_abs", "max", "topk", "pca"])
        self.norm_box = QComboBox()
        self.norm_box.addItems(["block", "model", "global"])
        for label, box in (("device", self.device_box), ("precision", self.precision_box)):
            row.addWidget(QLabel(label))
            row.addWidget(box)
        lv.addLayout(row)
        row = QHBoxLayout()
        for label, box in (("reduce", self.reduction_box), ("normalise", self.norm_box)):
            row.addWidget(QLabel(label))
            row.addWidget(box)
        lv.addLayout(row)
        self.messages = QPlainTextEdit()
        self.messages.setReadOnly(True)
        self.messages.setMaximumHeight(120)
        self.messages.setPlaceholderText("Messages")
        lv.addWidget(self.messages, 1)

        self.tabs = QTabWidget()
        self.views = {"activations": ActivationsView(self.state), "cam": CamView(self.state),
                      "gradients": GradientView(self.state), "architecture": ArchitectureView(self.state),
                      "coco": CocoView(self.state, self.run_job)}
        for name, view in self.views.items():
            self.tabs.addTab(view, view.title)
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(self.tabs)
        splitter.setSizes([330, 1070])
        self.setCentralWidget(splitter)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(260)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.cancel_button.clicked.connect(self.cancel_jobs)
        self.statusBar().addPermanentWidget(self.progress)
        self.statusBar().addPermanentWidget(self.cancel_button)

        menu = self.menuBar().addMenu("&File")
        for text, slot, key in (("Open checkpoint…", self.open_checkpoint_dialog, "Ctrl+O"),
                                ("Add zoo model…", self.add_zoo_dialog, None),
                                ("Add images…", self.open_images_dialog, "Ctrl+I"),
                                ("Save session…", self.save_session_dialog, "Ctrl+S"),
                                ("Open session…", self.open_session_dialog, None),
                                ("Quit", self.close, "Ctrl+Q")):
            act = QAction(text, self)
            if key:
                act.setShortcut(key)
            act.triggered.connect(slot)
            menu.addAction(act)

    def _connect(self) -> None:
        s = self.state
        s.models_changed.connect(self._models_changed)
        s.images_changed.connect(self._images_changed)
        s.selection_changed.connect(lambda: self.schedule_analysis())
        s.results_changed.connect(self._results_changed)
        s.message.connect(self._message)
        s.settings_changed.connect(self._settings_changed)
        self.tabs.currentChanged.connect(lambda _i: self.current_view().refresh())
        self.device_box.currentTextChanged.connect(lambda t: s.update_settings(device=t))
        self.precision_box.currentTextChanged.connect(lambda t: s.update_settings(precision=t))
        self.reduction_box.currentTextChanged.connect(lambda t: s.update_settings(reduction=t))
        self.norm_box.currentTextChanged.connect(lambda t: s.update_settings(normalisation=t))

    def current_view(self) -> FigureView:
        return self.tabs.currentWidget()

    def show_view(self, name: str) -> None:
        self.tabs.setCurrentWidget(self.views[name])

    # ------------------------------------------------------------------ state -> widgets
    def _models_changed(self) -> None:
        self.model_list.clear()
        for m in self.state.models:
            badge = "" if m.trained else "  [untrained]"
            size = 640 if m.family == "spinenet" else 224
            item = QListWidgetItem(f"{m.label}{badge}\n  {m.variant} · {m.params / 1e6:.2f} M params · "
                                   f"{m.macs / 1e9:.2f} GMACs@{size} · {m.device}")
            item.setData(Qt.UserRole, m.label)
            if not m.trained:
                item.setForeground(Qt.darkRed)
            self.model_list.addItem(item)
        self.schedule_analysis()

    def _images_changed(self) -> None:
        from fishspine.analysis.images import resize_longer_side

        self.image_list.blockSignals(True)
        self.image_list.clear()
        for im in self.state.images:
            thumb = resize_longer_side(im.pixels, 96).copy()
            h, w = thumb.shape[:2]
            qimg = QImage(thumb.data, w, h, 3 * w, QImage.Format_RGB888).copy()
            self.image_list.addItem(QListWidgetItem(QIcon(QPixmap.fromImage(qimg)), im.label))
        self.image_list.setCurrentRow(self.state.selected_image)
        self.image_list.blockSignals(False)

    def _results_changed(self) -> None:
        view = self.current_view()
        view.refresh()

    def _settings_changed(self, changed: set[str]) -> None:
        if changed & {"reduction", "normalisation", "cam_method", "image_size", "class_index", "precision"}:
            self.schedule_analysis()
        if "device" in changed:
            self.move_models(self.state.settings.device)

    def _message(self, level: str, text: str) -> None:
        self.messages.appendPlainText(f"{level.upper()}: {text}" if level != "info" else text)
        self.statusBar().showMessage(text.splitlines()[0], 8000)

    # ------------------------------------------------------------------ jobs
    def run_job(self, title: str, job: Callable, on_result: Callable[[Any], None]) -> GeneratorWorker:
        worker = GeneratorWorker(job)
        self._workers.add(worker)
        self.progress.setFormat(f"{title}: %p%")
        self.progress.setValue(0)
        self.progress.show()
        self.cancel_button.show()

        def done(result=None, w=worker):
            self._workers.discard(w)
            if not self._workers:
                self.progress.hide()
                self.cancel_button.hide()

        worker.signals.progress.connect(lambda d, t, text: (self.progress.setMaximum(t), self.progress.setValue(d),
                                                            self.progress.setFormat(f"{title}: {text} (%p%)")))
        worker.signals.finished.connect(lambda r: (done(), on_result(r)))
        worker.signals.failed.connect(lambda msg: (done(), self.state.notify("error", f"{title}: {msg}")))
        def cancelled() -> None:
            done()
            if title != "analysis":  # a superseded analysis is not news
                self.state.notify("info", f"{title} cancelled")

        worker.signals.cancelled.connect(cancelled)
        start(worker)
        return worker

    def cancel_jobs(self) -> None:
        for w in list(self._workers):
            w.cancel()

    def closeEvent(self, event) -> None:
        # Jobs report to this window's widgets: stop them before the widgets go.
        self.cancel_jobs()
        self._pending_analysis.stop()
        for w in list(self._workers):
            for sig in (w.signals.progress, w.signals.finished, w.signals.failed, w.signals.cancelled):
                try:
                    sig.disconnect()
                except (RuntimeError, TypeError):
                    pass
        from PySide6.QtCore import QThreadPool

        QThreadPool.globalInstance().waitForDone(60_000)
        self._workers.clear()
        super().closeEvent(event)

    def schedule_analysis(self) -> None:
        self._pending_analysis.start()

    def run_analysis(self) -> None:
        if not self.state.models or self.state.image is None:
            return
        if self._analysis_worker is not None:
            self._analysis_worker.cancel()
        s = self.state.settings
        models = {m.label: m.model for m in self.state.models}
        pixels = self.state.image.pixels
        # The block selected in any view drives the CAM of every model that has it.
        chosen = self.state.selected_block
        cam_blocks = {m.label: chosen for m in self.state.models if chosen and any(
            b.name == chosen for b in m.model.blocks)}
        options = {"cam_method": s.cam_method, "reduction": s.reduction, "class_index": s.class_index}

        def job():
            import torch

            from fishspine.analysis.images import resize_longer_side, to_input
            from fishspine.analysis.interactive import iter_analysis

            shown = resize_longer_side(pixels, s.image_size)
            device = next(iter(models.values())).parameters().__next__().device
            x = to_input(shown, device)
            use_bf16 = s.precision == "bf16"
            try:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    yield from iter_analysis(models, x, s.normalisation, cam_blocks, **options)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                for m in models.values():
                    m.to("cpu")
                yield 0, len(models), "GPU out of memory: continuing on the CPU"
                yield from iter_analysis(models, x.cpu(), s.normalisation, cam_blocks, **options)

        def finished(result):
            moved = [e for e in self.state.models if str(next(e.model.parameters()).device) != e.device]
            if moved:
                for e in moved:
                    e.device = str(next(e.model.parameters()).device)
                self.state.notify("warning", "the GPU ran out of memory: models moved to the CPU")
                self._models_changed()
            if result is not None:
                self.state.set_insights(result)

        self._analysis_worker = self.run_job("analysis", job, finished)

    def move_models(self, device_name: str) -> None:
        try:
            from fishspine.analysis.device import resolve_device

            device = resolve_device(device_name)
        except ValueError as exc:
            self.state.notify("warning", str(exc))
            self.device_box.setCurrentText("cpu")
            return
        for m in self.state.models:
            m.model.to(device)
            m.device = str(device)
        self._models_changed()

    # ------------------------------------------------------------------ opening things
    def open_paths(self, paths: list[str]) -> None:
        """Open whatever was dropped or given: checkpoints, images, folders, sessions."""
        for p in paths:
            kind = classify(p)
            if kind == "folder":
                found = images_in(p)
                if not found:
                    self.state.notify("warning", f"{p}: no images in this folder")
                for f in found:
                    self.add_image(f)
            elif kind == "image":
                self.add_image(p)
            elif kind == "checkpoint":
                self.add_model_source(str(p))
            elif kind == "session":
                self.open_session(p)
            else:
                self.state.notify("error", f"{p}: not an image, checkpoint or session file; "
                                           "drop PNG/JPEG images, .pth/.tar/.safetensors checkpoints or folders")

    def add_image(self, path) -> None:
        from fishspine.analysis.images import ImageError

        try:
            self.state.add_image(load_image_path(path))
        except ImageError as exc:
            self.state.notify("error", str(exc))

    def add_model_source(self, source: str) -> None:
        device = self.state.settings.device

        def job():
            from fishspine.analysis.device import resolve_device

            yield 0, 1, Path(source).name
            yield load_model_source(source, str(resolve_device(device if device != "cuda" else "auto")))

        self.run_job(f"loading {Path(source).name}", job, self.state.add_model)

    def open_checkpoint_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open checkpoints", "",
                                                "Checkpoints (*.pth *.pt *.tar *.safetensors *.ckpt *.bin)")
        self.open_paths(paths)

    def open_images_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Add images", "", "Images (*.png *.jpg *.jpeg *.bmp *.tif *.webp)")
        self.open_paths(paths)

    def add_zoo_dialog(self) -> None:
        from fishspine.models import list_models

        name, ok = QInputDialog.getItem(self, "Add zoo model", "untrained model:", list_models(), 0, False)
        if ok:
            self.add_model_source(f"zoo:{name}:1.0")

    def save_session_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save session", "session.fishspine", "Sessions (*.fishspine)")
        if path:
            self.state.save_session(path)
            self.state.notify("info", f"session saved to {path}")

    def open_session_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", "", "Sessions (*.fishspine *.json)")
        if path:
            self.open_session(path)

    def open_session(self, path) -> None:
        try:
            data = read_session(path)
        except ValueError as exc:
            self.state.notify("error", str(exc))
            return
        settings = {k: v for k, v in data.get("settings", {}).items() if hasattr(self.state.settings, k)}
        self.state.update_settings(**settings)
        for m in data.get("models", []):
            self.add_model_source(m["source"])
        for p in data.get("images", []):
            self.add_image(p)

    def open_demo(self) -> None:
        demo = demo_sources()
        for src in demo["models"]:
            self.add_model_source(src)
        for p in demo["images"]:
            self.add_image(p)
        if not demo["images"]:
            from fishspine.analysis.images import sample_image

            self.state.add_image(ImageEntry("sample (generated)", "", sample_image(384)))
        if demo["coco_gt"] and demo["coco_results"]:
            baseline = next((n for n in demo["coco_results"] if "ResNet" in n), "")
            self.state.update_settings(coco_gt=demo["coco_gt"], coco_results=dict(demo["coco_results"]),
                                       coco_baseline=baseline)
            self.views["coco"].evaluate()

    # ------------------------------------------------------------------ drag and drop, menus
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        self.open_paths([u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()])

    def _model_menu(self, pos) -> None:
        item = self.model_list.itemAt(pos)
        if item is None:
            return
        label = item.data(Qt.UserRole)
        menu = QMenu(self)
        rename = menu.addAction("Rename…")
        up = menu.addAction("Move left")
        down = menu.addAction("Move right")
        remove = menu.addAction("Remove")
        chosen = menu.exec(self.model_list.mapToGlobal(pos))
        if chosen is rename:
            new, ok = QInputDialog.getText(self, "Rename model", "label:", text=label)
            if ok:
                self.state.rename_model(label, new)
        elif chosen in (up, down):
            self.state.move_model(label, -1 if chosen is up else 1)
        elif chosen is remove:
            self.state.remove_model(label)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fishspine-gui", description="fishspine desktop app")
    p.add_argument("paths", nargs="*", help="checkpoints, images, folders or a session to open")
    p.add_argument("--screenshot", type=Path, help="render the window to this PNG once results are in, then quit")
    p.add_argument("--view", choices=VIEWS, default="activations", help="the view to show first")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for results with --screenshot")
    return p.parse_args(argv)


def run(argv: list[str]) -> int:
    """Start the app (the entry point of fishspine-gui)."""
    args = parse_args(argv)
    t0 = time.perf_counter()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = MainWindow()
    window.show_view(args.view)
    window.show()
    window.state.notify("info", f"window up in {time.perf_counter() - t0:.2f} s; loading models…")
    QTimer.singleShot(0, lambda: window.open_paths(args.paths) if args.paths else window.open_demo())
    if args.screenshot:
        deadline = time.monotonic() + args.timeout

        def shoot():
            if (window.state.insights and not window._workers) or time.monotonic() > deadline:
                window.current_view().refresh()
                QTimer.singleShot(300, lambda: (window.grab().save(str(args.screenshot)), app.quit()))
            else:
                QTimer.singleShot(250, shoot)

        QTimer.singleShot(500, shoot)
    return app.exec()
