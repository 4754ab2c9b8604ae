"""The fishspine main window: model columns, an image strip, and one tab per analysis view.

Views show results with pyqtgraph (zoom, pan, hover, click to select a block everywhere) and export
the same matplotlib figure that the `fishspine` command writes (analysis/*_figures). The window
computes nothing itself: jobs run analysis generators in worker threads (app/workers.py) and their
results reach the widgets on the UI thread.
"""

from __future__ import annotations

import argparse
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QThreadPool, QTimer
from PySide6.QtGui import QAction, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from fishspine.analysis.architecture.macs import format_count
from fishspine.analysis.jobs import Progress
from fishspine.analysis.options import CAM_METHODS, IMAGE_SIZE_RANGE, NORMALISATIONS, PRECISIONS, REDUCTIONS
from fishspine.app.components.sources import classify, demo_sources, images_in, load_image_path, load_model_source
from fishspine.app.components.state import AppState, ImageEntry, read_session
from fishspine.app.qt.collector import MainThreadCollector
from fishspine.app.qt.file_dialogs import open_file, open_files, save_file
from fishspine.app.qt.views.architecture import ArchitectureView
from fishspine.app.qt.views.base import View, bind_setting
from fishspine.app.qt.views.coco import CocoView
from fishspine.app.qt.views.gradients import GradientView
from fishspine.app.qt.views.images import ActivationsView, CamView
from fishspine.app.qt.views.study import StudyView
from fishspine.app.qt.workers import GeneratorWorker, start

THUMB_PX = 96  # longer side of an image in the strip


def thumbnail(pixels):
    """The image strip's copy of an RGB array (contiguous, for QImage)."""
    from fishspine.analysis.images import resize_longer_side

    return resize_longer_side(pixels, THUMB_PX).copy()


VIEWS = ("activations", "cam", "gradients", "architecture", "coco")  # the views the analysis and the demo fill
TABS = (*VIEWS, "study")  # every tab (the study tab shows a study folder, opened or run)
# Settings whose change the views must see re-derived (a pass runs only when the engine lacks one).
ANALYSIS_SETTINGS = {
    "reduction",
    "normalisation",
    "scaling",
    "cam_method",
    "cam_blocks",
    "image_size",
    "class_index",
    "precision",
}


class MainWindow(QMainWindow):
    """fishspine's window. Jobs run in workers; views redraw from AppState events."""

    def __init__(self, state: AppState | None = None) -> None:
        super().__init__()
        self.state = state or AppState()
        self.setWindowTitle("fishspine — inside multi-scale backbones")
        self.resize(1400, 900)
        self.setAcceptDrops(True)
        from fishspine.analysis.attribution.engine import AnalysisEngine

        # One engine for every view: a pass per (model, image, size, precision, class); the rest derived.
        self.engine = AnalysisEngine(self.state.settings.cache_mb << 20)
        pool = QThreadPool.globalInstance()  # one thread per core, but two at least: on a one-core machine
        pool.setMaxThreadCount(max(pool.maxThreadCount(), 2))  # a model's load must not hold up every other job
        self._workers: set[GeneratorWorker] = set()
        self._retired: list[GeneratorWorker] = []  # finished jobs whose run() may not have returned yet
        self._closed = False
        self._gpu_fallback: list[str] = []  # an analysis that ran out of GPU memory says so here
        self._analysis_worker: GeneratorWorker | None = None  # the one analysis pass running, if any
        self._analysis_again = False  # the settings changed while it ran: run again when it ends
        self._model_jobs = 0  # jobs (a study) using the models: no analysis pass may run beside them
        # model -> when it was asked for (loads finish in any order); weak, so a removed model leaves
        self._model_order: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._model_order_next = 0
        self._build_ui()
        self._connect()
        # Coalesces a burst of changes (a spin box held down) into one analysis; short, since most
        # changes only re-derive from the engine's cache.
        self._pending_analysis = QTimer(self, singleShot=True, interval=20)
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
        self.image_list.setContextMenuPolicy(Qt.CustomContextMenu)
        self.image_list.customContextMenuRequested.connect(self._image_menu)
        lv.addWidget(self.image_list, 2)
        row = QHBoxLayout()
        self.device_box = QComboBox()
        self.device_box.addItems(["auto", "cpu", "cuda"])
        self.precision_box = QComboBox()
        self.precision_box.addItems(PRECISIONS)
        self.reduction_box = QComboBox()
        self.reduction_box.addItems(REDUCTIONS)
        self.norm_box = QComboBox()
        self.norm_box.addItems(NORMALISATIONS)
        self.size_box = QSpinBox()
        self.size_box.setRange(*IMAGE_SIZE_RANGE)
        self.size_box.setSingleStep(32)
        self.size_box.setSuffix(" px")
        self.size_box.setKeyboardTracking(False)  # typing 512 must not analyse at 5 and 51 on the way
        self.size_box.setToolTip(
            "input size: the longer side of the image as the models see it (the command line's --size)"
        )
        for label, box in (("device", self.device_box), ("precision", self.precision_box)):
            row.addWidget(QLabel(label))
            row.addWidget(box)
        lv.addLayout(row)
        row = QHBoxLayout()
        for label, box in (("reduce", self.reduction_box), ("normalise", self.norm_box)):
            row.addWidget(QLabel(label))
            row.addWidget(box)
        lv.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("input size"))
        row.addWidget(self.size_box)
        row.addStretch(1)
        lv.addLayout(row)
        self.messages = QPlainTextEdit()
        self.messages.setReadOnly(True)
        self.messages.setMaximumHeight(120)
        self.messages.setPlaceholderText("Messages")
        lv.addWidget(self.messages, 1)
        # A message is one sentence; what came with it (a traceback, a long list) waits behind Details.
        self.details_button = QPushButton("Details")
        self.details_button.setCheckable(True)
        self.details_button.setEnabled(False)
        self.details_button.setToolTip("the full text of the messages that had more to say (tracebacks)")
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.hide()
        self.details_button.toggled.connect(self.details.setVisible)
        lv.addWidget(self.details_button)
        lv.addWidget(self.details, 1)

        self.tabs = QTabWidget()
        self.views = {
            "activations": ActivationsView(self.state),
            "cam": CamView(self.state, self.run_job, self.engine),
            "gradients": GradientView(self.state),
            "architecture": ArchitectureView(self.state, self.run_job),
            "coco": CocoView(self.state, self.run_job, self.engine),
            "study": StudyView(self.state, self.run_model_job),
        }
        for view in self.views.values():
            self.tabs.addTab(view, view.title)
        self.views["coco"].view_requested.connect(self.show_view)  # a COCO evidence crop opens in Grad-CAM
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
        for text, slot, key in (
            ("Open checkpoint…", self.open_checkpoint_dialog, "Ctrl+O"),
            ("Add zoo model…", self.add_zoo_dialog, None),
            ("Add images…", self.open_images_dialog, "Ctrl+I"),
            ("Save session…", self.save_session_dialog, "Ctrl+S"),
            ("Open session…", self.open_session_dialog, None),
            ("Quit", self.close, "Ctrl+Q"),
        ):
            act = QAction(text, self)
            if key:
                act.setShortcut(key)
            act.triggered.connect(slot)
            menu.addAction(act)

    def _connect(self) -> None:
        s = self.state
        s.models_changed.connect(self._models_changed)
        s.images_changed.connect(self._images_changed)
        s.selection_changed.connect(self._selection_changed)
        s.results_changed.connect(self._results_changed)
        s.message.connect(self._message)
        s.settings_changed.connect(self._settings_changed)
        s.model_removed.connect(lambda entry: self.engine.forget(model=entry.model))
        s.image_removed.connect(lambda entry: self.engine.forget(image=entry.key))
        self.tabs.currentChanged.connect(lambda _i: self.current_view().refresh())
        # Each control writes its setting and follows it (a session, the GPU fallback, another view).
        for name, box in (
            ("device", self.device_box),
            ("precision", self.precision_box),
            ("reduction", self.reduction_box),
            ("normalisation", self.norm_box),
            ("image_size", self.size_box),
        ):
            bind_setting(s, box, name)

    def current_view(self) -> View:
        return self.tabs.currentWidget()

    def show_view(self, name: str) -> None:
        self.tabs.setCurrentWidget(self.views[name])

    # ------------------------------------------------------------------ state -> widgets
    def _models_changed(self) -> None:
        self._show_models()
        self.schedule_analysis()

    def _show_models(self) -> None:
        self.model_list.clear()
        for m in self.state.models:
            badge = "" if m.trained else "  [untrained]"
            item = QListWidgetItem(
                f"{m.label}{badge}\n  {m.variant} · {m.params / 1e6:.2f} M params · "
                f"{format_count(m.macs, 'MACs')}@{m.model.spec.input_size} · {m.device}"
            )
            item.setData(Qt.UserRole, m.label)
            if not m.trained:
                item.setForeground(Qt.darkRed)
            self.model_list.addItem(item)

    def _images_changed(self) -> None:
        self.image_list.blockSignals(True)
        self.image_list.clear()
        for im in self.state.images:
            if im.thumb is None:  # an image added straight to the state (the generated sample)
                im.thumb = thumbnail(im.pixels)
            thumb = im.thumb
            h, w = thumb.shape[:2]
            qimg = QImage(thumb.data, w, h, 3 * w, QImage.Format_RGB888).copy()
            self.image_list.addItem(QListWidgetItem(QIcon(QPixmap.fromImage(qimg)), im.label))
        self.image_list.setCurrentRow(self.state.selected_image)
        self.image_list.blockSignals(False)

    def _selection_changed(self) -> None:
        if self.image_list.currentRow() != self.state.selected_image:
            self.image_list.blockSignals(True)
            self.image_list.setCurrentRow(self.state.selected_image)
            self.image_list.blockSignals(False)
        self.schedule_analysis()

    def _results_changed(self) -> None:
        view = self.current_view()
        view.refresh()

    def _settings_changed(self, changed: set[str]) -> None:
        if changed & ANALYSIS_SETTINGS:
            self.schedule_analysis()
        if "device" in changed:
            self.move_models(self.state.settings.device)
        if "cache_mb" in changed:
            self.engine.max_bytes = self.state.settings.cache_mb << 20
            self.engine.trim()

    def _message(self, level: str, text: str) -> None:
        first, _, rest = text.strip().partition("\n")
        self.messages.appendPlainText(f"{level.upper()}: {first}" if level != "info" else first)
        if rest.strip():
            self.details.appendPlainText(f"{level.upper()}: {text.strip()}\n")
            self.details_button.setEnabled(True)
        self.statusBar().showMessage(first)  # kept until the next message replaces it

    # ------------------------------------------------------------------ jobs
    def run_job(
        self, title: str, job: Callable, on_result: Callable[[Any], None], on_end: Callable[[], None] | None = None
    ) -> GeneratorWorker:
        """Run `job` in a worker; `on_result` gets its result, `on_end` runs however it ended."""
        worker = GeneratorWorker(job)
        self._workers.add(worker)
        self.progress.setFormat(f"{title}: %p%")
        self.progress.setValue(0)
        self.progress.show()
        self.cancel_button.show()

        def done(result=None, w=worker):
            self._workers.discard(w)
            # Its signals arrive before its run() has returned: the pool thread is still inside it, so it must
            # outlive this call (collected there, the C++ QRunnable was freed under the running thread: an abort
            # seen in CI-like runs). Kept until a later job ends, by when run() has long returned.
            self._retired = [r for r in self._retired if not r.done]
            self._retired.append(w)
            if not self._workers:
                self.progress.hide()
                self.cancel_button.hide()

        def cancelled() -> None:
            done()
            if title != "analysis":  # a superseded analysis is not news
                self.state.notify("info", f"{title} cancelled")

        live = self._while_open
        worker.signals.progress.connect(
            live(
                lambda d, t, text: (
                    self.progress.setMaximum(t),
                    self.progress.setValue(d),
                    self.progress.setFormat(f"{title}: {text} (%p%)"),
                )
            )
        )
        worker.signals.finished.connect(live(lambda r: (done(), on_result(r))))
        worker.signals.failed.connect(live(lambda msg: (done(), self.state.notify("error", f"{title}: {msg}"))))
        worker.signals.cancelled.connect(live(cancelled))
        if on_end is not None:
            # Connected before the worker starts: a quick job may end before this method returns.
            for sig in (worker.signals.finished, worker.signals.cancelled, worker.signals.failed):
                sig.connect(live(lambda *_args: on_end()))
        start(worker)
        return worker

    def run_model_job(
        self, title: str, job: Callable, on_result: Callable[[Any], None], on_end: Callable[[], None] | None = None
    ) -> None:
        """`run_job` for a job that runs the loaded models (a study): it shares them with the analysis
        (hooks, parameters' .grad), so it starts once a running analysis has stopped, and no analysis
        starts until it has ended."""
        self._model_jobs += 1
        self._pending_analysis.stop()

        def ended() -> None:
            self._model_jobs -= 1
            if on_end is not None:
                on_end()
            self.schedule_analysis()  # what the user changed meanwhile

        def begin() -> None:
            if self._closed:
                return
            if self._analysis_worker is not None:
                self._analysis_worker.cancel()
                self._analysis_again = False
                QTimer.singleShot(50, begin)  # it stops at its next model
                return
            self.run_job(title, job, on_result, ended)

        begin()

    def warm_up(self) -> None:
        """Import torch and the figure code and build the colour tables in a worker, while the user looks
        at the window: the first results then draw without paying for them on the UI thread."""

        def job():
            import fishspine.analysis.attribution.engine  # noqa: F401 - torch
            import fishspine.analysis.figures.attribution  # noqa: F401 - matplotlib, the figures
            from fishspine.app.qt.views.base import lookup_table

            yield Progress(0, 1, "warming up")
            for cmap in ("inferno", "jet", "viridis"):
                lookup_table(cmap)

        worker = GeneratorWorker(job)
        self._warm = worker  # kept until it ran
        start(worker)

    def cancel_jobs(self) -> None:
        for w in list(self._workers):
            w.cancel()

    def _while_open(self, slot: Callable) -> Callable:
        """`slot`, made a no-op once the window closed: a worker's signal queued before the close may still
        be delivered, and its widgets are gone."""

        def call(*args):
            if not self._closed:
                slot(*args)

        return call

    def closeEvent(self, event) -> None:
        # Jobs report to this window's widgets: stop them before the widgets go.
        self._closed = True
        self.cancel_jobs()
        self._pending_analysis.stop()
        for w in list(self._workers):
            for sig in (w.signals.progress, w.signals.finished, w.signals.failed, w.signals.cancelled):
                try:
                    sig.disconnect()
                except (RuntimeError, TypeError):
                    pass

        QThreadPool.globalInstance().waitForDone(60_000)
        self._workers.clear()
        self._retired.clear()
        super().closeEvent(event)

    def schedule_analysis(self) -> None:
        self._pending_analysis.start()

    def run_analysis(self) -> None:
        if not self.state.models or self.state.image is None or self._model_jobs:
            return  # a job using the models schedules the analysis when it ends
        if self._analysis_worker is not None:
            # Two passes must never run at once: they share the models (hooks, .grad). Stop this one at
            # its next model and start afresh when it has stopped.
            self._analysis_worker.cancel()
            self._analysis_again = True
            return
        s = self.state.settings
        models = {m.label: m.model for m in self.state.models}
        image = self.state.image
        # Each model's CAM block (the CAM view's picker per column; a block selected in any view sets it
        # for the models that have it); a model without one, or whose choice it lacks, keeps its default.
        cam_blocks = {
            m.label: s.cam_blocks[m.label]
            for m in self.state.models
            if any(b.name == s.cam_blocks.get(m.label) for b in m.model.blocks)
        }
        engine = self.engine
        pass_args = (image.pixels, image.key, s.image_size, s.precision, s.class_index)
        # An input attribution is no CAM of the pass: the CAM view asks the engine for it on request.
        cam_method = s.cam_method if s.cam_method in CAM_METHODS else CAM_METHODS[0]
        derive_args = {
            "reduction": s.reduction,
            "normalisation": s.normalisation,
            "scaling": s.scaling,
            "cam_method": cam_method,
            "cam_blocks": cam_blocks,
            "shown_rows": s.gallery_rows,
        }
        fell_back = self._gpu_fallback  # the job notes here that the GPU ran out of memory
        started = time.perf_counter()
        ran_before = engine.passes_run

        def job():
            import torch

            from fishspine.analysis.attribution.engine import insights

            try:
                passes = yield from engine.iter_passes(models, *pass_args)
            except torch.cuda.OutOfMemoryError as exc:
                # One image is already the smallest batch: free what the failed pass held, then the CPU.
                fell_back.append(str(exc).splitlines()[0] if str(exc) else "CUDA out of memory")
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                for m in models.values():
                    m.to("cpu")
                yield Progress(0, len(models), "GPU out of memory: continuing on the CPU")
                passes = yield from engine.iter_passes(models, *pass_args)
            return insights(passes, **derive_args)

        def finished(result):
            if result is not None:
                self.state.set_insights(result)
                devices = sorted({e.device for e in self.state.models})
                passes = engine.passes_run - ran_before
                what = f"{passes} passes on {', '.join(devices)}" if passes else "from the cache"
                self.statusBar().showMessage(
                    f"{len(result)} models analysed ({what}) in "
                    f"{time.perf_counter() - started:.2f} s · cache "
                    f"{engine.nbytes / 2**20:.0f} MB",
                    10_000,
                )

        def ended() -> None:
            self._analysis_worker = None
            if fell_back:  # said however the pass ended: a superseded one moved the models all the same
                for e in self.state.models:
                    e.device = str(next(e.model.parameters()).device)
                self.state.notify(
                    "warning",
                    f"the GPU ran out of memory ({fell_back[0]}): the models moved "
                    "to the CPU and the analysis was redone there; choose a smaller "
                    "image size or fewer models to use the GPU again",
                )
                fell_back.clear()
                self.state.update_settings(device="cpu")  # the device box follows the setting
                self._show_models()
            if self._analysis_again:
                self._analysis_again = False
                self.schedule_analysis()

        self._analysis_worker = self.run_job("analysis", job, finished, ended)

    def move_models(self, device_name: str) -> None:
        try:
            from fishspine.analysis.device import resolve_device

            device = resolve_device(device_name)
        except ValueError as exc:
            self.state.notify("warning", str(exc))
            self.device_box.setCurrentText("cpu")
            return
        for m in self.state.models:
            (m.model if m.detector is None else m.detector).to(device)  # a detector moves with its backbone
            m.device = str(device)
        self._models_changed()

    # ------------------------------------------------------------------ opening things
    def open_paths(self, paths: list[str]) -> None:
        """Open whatever was dropped or given: checkpoints, images, folders, sessions."""
        images: list = []  # loaded together, so the strip keeps the order they were given in
        for p in paths:
            kind = classify(p)
            if kind == "folder":
                found = images_in(p)
                if not found:
                    self.state.notify("warning", f"{p}: no images in this folder")
                images += found
            elif kind == "image":
                images.append(p)
            elif kind == "checkpoint":
                self.add_model_source(str(p))
            elif kind == "session":
                self.open_session(p)
            elif kind == "study":
                if self.views["study"].open_study(p):
                    self.show_view("study")
            else:
                self.state.notify(
                    "error",
                    f"{p}: not an image, checkpoint or session file; "
                    "drop PNG/JPEG images, .pth/.tar/.safetensors checkpoints or folders",
                )
        self.add_images(images)

    def add_images(self, paths, select: int | None = None) -> None:
        """Decode image files in a worker (a big one must not hold the UI), then add them in their order;
        each file that is not a usable image gets its own message and the others still come in.
        `select`: the index among these paths to show (a session's chosen image), if it loaded."""
        paths = [str(p) for p in paths]
        if not paths:
            return

        def job():
            from fishspine.analysis.images import ImageError

            loaded: list[ImageEntry | str] = []
            for i, p in enumerate(paths):
                yield Progress(i, len(paths), Path(p).name)
                try:
                    entry = load_image_path(p)
                except ImageError as exc:
                    loaded.append(str(exc))
                    continue
                entry.thumb = thumbnail(entry.pixels)
                loaded.append(entry)
            return loaded

        def done(loaded: list) -> None:
            for problem in (x for x in loaded if isinstance(x, str)):
                self.state.notify("error", problem)
            first = len(self.state.images)
            self.state.add_images([x for x in loaded if not isinstance(x, str)])
            if select is not None and 0 <= select < len(loaded) and not isinstance(loaded[select], str):
                self.state.select_image(first + sum(not isinstance(x, str) for x in loaded[:select]))

        self.run_job(f"loading {Path(paths[0]).name}" if len(paths) == 1 else f"loading {len(paths)} images", job, done)

    def add_model_source(self, source: str, label: str | None = None) -> None:
        """Load a checkpoint or zoo model in a worker; `label` names its column (a session's rename)."""
        device = self.state.settings.device

        def job():
            from fishspine.analysis.device import resolve_device

            yield Progress(0, 1, Path(source).name)
            return load_model_source(source, str(resolve_device(device if device != "cuda" else "auto")))

        # Loads run side by side and may finish in any order; the columns keep the order asked for.
        self._model_order_next += 1
        order = self._model_order_next

        def loaded(entry) -> None:
            if isinstance(label, str) and label.strip():
                entry.label = label.strip()
            self._model_order[entry.model] = order
            index = sum(self._model_order.get(m.model, 0) < order for m in self.state.models)
            self.state.add_model(entry, index)
            size = format_count(entry.params, " params")
            self.state.notify("info", f"loaded {entry.label} ({entry.variant}, {size})")

        self.run_job(f"loading {Path(source).name}", job, loaded)

    def open_checkpoint_dialog(self) -> None:
        paths = open_files(self, "Open checkpoints", "Checkpoints (*.pth *.pt *.tar *.safetensors *.ckpt *.bin)")
        self.open_paths(paths)

    def open_images_dialog(self) -> None:
        paths = open_files(self, "Add images", "Images (*.png *.jpg *.jpeg *.bmp *.tif *.webp)")
        self.open_paths(paths)

    def add_zoo_dialog(self) -> None:
        from fishspine.models import list_models

        name, ok = QInputDialog.getItem(self, "Add zoo model", "untrained model:", list_models(), 0, False)
        if not ok:
            return
        # the channel multiplier, as `--width` takes it: 0.25 is demo-sized, 1 the paper's model
        width, ok = QInputDialog.getDouble(
            self, "Add zoo model", f"{name}: width (channel multiplier)", 1.0, 0.0625, 8.0, 4
        )
        if ok:
            self.add_model_source(f"zoo:{name}:{width:g}")

    def save_session_dialog(self) -> None:
        path = save_file(self, "Save session", "session.fishspine", "Sessions (*.fishspine)")
        if path:
            self.state.save_session(path)
            self.state.notify("info", f"session saved to {path}")

    def open_session_dialog(self) -> None:
        path = open_file(self, "Open session", "Sessions (*.fishspine *.json)")
        if path:
            self.open_session(path)

    def open_session(self, path) -> None:
        try:
            session, warnings = read_session(path)  # every key checked: nothing unchecked reaches the state
        except ValueError as exc:
            self.state.notify("error", str(exc))
            return
        for warning in warnings:
            self.state.notify("warning", f"{path}: {warning}")
        self.state.update_settings(**session.settings)
        for m in session.models:
            self.add_model_source(m.source, label=m.label)
        self.add_images(session.images, select=session.selected_image)
        if self.state.settings.coco_gt:  # the session's COCO files, evaluated as when they were opened
            self.views["coco"].evaluate()

    def open_demo(self) -> None:
        demo = demo_sources()
        for src in demo["models"]:
            self.add_model_source(src)
        self.add_images(demo["images"])
        if not demo["images"]:
            from fishspine.analysis.images import sample_image

            self.state.add_image(ImageEntry("sample (generated)", "", sample_image(384)))
        if demo["coco_gt"] and demo["coco_results"]:
            self.state.update_settings(
                coco_gt=demo["coco_gt"],
                coco_results=dict(demo["coco_results"]),
                coco_baseline=demo["coco_baseline"],
                coco_images=demo["coco_images"],
            )
            self.views["coco"].evaluate()

    # ------------------------------------------------------------------ drag and drop, menus
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        self.open_paths([u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()])

    def _image_menu(self, pos) -> None:
        item = self.image_list.itemAt(pos)
        if item is None:
            return
        menu = QMenu(self)
        remove = menu.addAction("Remove")
        if menu.exec(self.image_list.mapToGlobal(pos)) is remove:
            self.state.remove_image(self.image_list.row(item))

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
    p.add_argument("--view", choices=TABS, default="activations", help="the view to show first")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for results with --screenshot")
    return p.parse_args(argv)


def run(argv: list[str]) -> int:
    """Start the app (the entry point of fishspine-gui)."""
    args = parse_args(argv)
    t0 = time.perf_counter()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    MainThreadCollector(parent=app).start()  # no garbage collection in the workers: it deletes widgets there
    window = MainWindow()
    window.show_view(args.view)
    window.show()
    window.state.notify("info", f"window up in {time.perf_counter() - t0:.2f} s")
    window.warm_up()
    QTimer.singleShot(0, lambda: window.open_paths(args.paths) if args.paths else window.open_demo())
    if args.screenshot:
        deadline = time.monotonic() + args.timeout

        def shoot():
            # The study tab has its content once a study folder is open; the others once the analysis is in.
            ready = window.views["study"].has_content if args.view == "study" else window.state.insights
            if (ready and not window._workers) or time.monotonic() > deadline:
                window.current_view().refresh()
                QTimer.singleShot(300, lambda: (window.grab().save(str(args.screenshot)), app.quit()))
            else:
                QTimer.singleShot(250, shoot)

        QTimer.singleShot(500, shoot)
    return app.exec()
