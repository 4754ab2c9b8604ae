"""The Study tab: open a `fishspine study` folder, or run a small study over the loaded models and images,
and show one of its figures with a line of headline numbers per model.

The figures are the command line's (analysis/figures/study.py `study_exports`), rendered to a pixmap
that fits the tab; so what the screen shows, Export writes, byte for byte what `fishspine study`
writes. A study runs in a worker through the window's job runner (progress bar, Cancel); a cancelled
study leaves its finished chunks in FOLDER/state/, and running it again into that folder resumes it.
"""

from __future__ import annotations

import html
import io
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from fishspine.analysis.figures.base import family_of
from fishspine.app.components.state import AppState
from fishspine.app.qt.views.base import View, model_qcolors

#: The plot picker's text of each figure `study_exports` can give, in the picker's order.
PLOTS = {
    "traces_output": "gradient traces of block outputs",
    "traces_weight": "gradient traces of block weights",
    "erf": "effective receptive fields",
    "cka": "CKA between blocks",
    "faithfulness": "faithfulness (deletion / insertion)",
    "activations": "activation statistics",
}
MAX_SCREEN_DPI = 300  # the exported PNG's resolution: the screen never needs more
BATCH_RANGE = (4, 64)  # CKA's minibatch estimator needs at least 4 images a chunk


def _fmt(value: Any) -> str:
    """A summary number (None is NaN in summary.json) in 3 significant digits, or 'n/a' as the figures say."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "n/a"
    return f"{value:.3g}"


def headline(summary: dict) -> str:
    """The study in one rich-text line (source, images, size, world size) and one line per model with
    its headline numbers: the gradient ratio shallowest/deepest, the deletion and insertion AUC."""
    c = summary.get("config", {})
    source = str(c.get("source") or "?")
    parts = [
        f"<b>{html.escape(Path(source).name or source)}</b>",
        f"{c.get('images', '?')} images",
        f"{c.get('size', '?')} px",
        f"world size {c.get('world_size', '?')}",
    ]
    if isinstance(c.get("seconds"), (int, float)):
        parts.append(f"{c['seconds']:.1f} s")
    skipped = summary.get("skipped") or []
    if skipped:
        parts.append(f"<span style='color:#c62828'>{len(skipped)} unreadable images skipped</span>")
    lines = [" · ".join(parts)]
    models = summary.get("models", {})
    colors = model_qcolors(models, {m: family_of(str(e.get("variant", ""))) for m, e in models.items()})
    for label, entry in models.items():
        numbers = []
        ratio = entry.get("traces", {}).get("ratio", {})
        for which in ("output", "weight"):
            if which in ratio:
                numbers.append(f"ratio ({which}) {_fmt(ratio[which].get('mean'))}")
        faith = entry.get("faithfulness", {})
        for key, name in (("deletion_auc", "deletion AUC"), ("insertion_auc", "insertion AUC")):
            if key in faith:
                numbers.append(f"{name} {_fmt(faith[key].get('mean'))}")
        # labels and variants come from the study's file: text, never markup
        name = f"<b style='color:{colors[label]}'>{html.escape(str(label))}</b>"
        variant = html.escape(str(entry.get("variant", "?")))
        lines.append(f"{name} ({variant}): " + (" · ".join(numbers) or "no headline numbers"))
    return "<br>".join(lines)


class FigurePane(QLabel):
    """A matplotlib figure as a pixmap that fits the pane, its proportions those of the exported figure.

    Rendered at the resolution the pane needs (up to the PNG's 300 dpi); on a resize the pixmap is
    scaled at once and re-rendered sharp shortly after when the pane grew past it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.setAlignment(Qt.AlignCenter)
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Ignored)  # the pixmap never sizes the window
        self.setMinimumSize(QSize(200, 150))
        self.setStyleSheet("background: white;")
        self.figure = None
        self.rendered: QPixmap | None = None
        self.rendered_dpi = 0.0
        self.renders = 0  # how many times a figure was rendered (tests wait on it)
        self._sharpen = QTimer(self, singleShot=True, interval=150)
        self._sharpen.timeout.connect(self.render)

    def set_figure(self, figure) -> None:
        """Show `figure` (a matplotlib Figure), rendered now."""
        self.figure = figure
        self.rendered, self.rendered_dpi = None, 0.0
        self.render()

    def clear_figure(self) -> None:
        """Show nothing."""
        self.figure, self.rendered, self.rendered_dpi = None, None, 0.0
        self.clear()

    def fit_dpi(self) -> float:
        """The dpi at which the figure fills the pane (in device pixels)."""
        w_in, h_in = self.figure.get_size_inches()
        scale = self.devicePixelRatioF()
        return max(20.0, min(self.width() / w_in, self.height() / h_in) * scale)

    def render(self) -> None:
        """Render the figure at the pane's size and show it."""
        from fishspine.analysis.figures.base import style_context

        if self.figure is None:
            return
        dpi = min(self.fit_dpi(), MAX_SCREEN_DPI)
        buf = io.BytesIO()
        with style_context():
            self.figure.savefig(buf, format="png", dpi=dpi)
        pixmap = QPixmap()
        pixmap.loadFromData(buf.getvalue(), "PNG")
        self.rendered, self.rendered_dpi = pixmap, dpi
        self.renders += 1
        self._show_scaled()

    def _show_scaled(self) -> None:
        if self.rendered is None:
            return
        ratio = self.devicePixelRatioF()
        target = QSize(max(1, int(self.width() * ratio)), max(1, int(self.height() * ratio)))
        pixmap = self.rendered.scaled(target, Qt.KeepAspectRatio, Qt.SmoothTransformation)
        pixmap.setDevicePixelRatio(ratio)
        self.setPixmap(pixmap)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.figure is None:
            return
        self._show_scaled()
        if min(self.fit_dpi(), MAX_SCREEN_DPI) > self.rendered_dpi * 1.1:  # grew: the scaled copy is blurred
            self._sharpen.start()


class StudyView(View):
    """A study's figures, one at a time, with each model's headline numbers above."""

    title = "Study"

    def __init__(self, state: AppState, run_job: Callable) -> None:
        super().__init__(state)
        self.run_job = run_job
        self.study = None  # analysis.figures.study.Study shown
        self.exports: dict[str, Any] = {}  # plot name -> ViewExport of the shown study
        self._figures: dict[str, Any] = {}  # plot name -> the Figure built for the screen
        self.running = False
        self.last_run_folder = ""
        self.open_button = QPushButton("Open study…")
        self.open_button.setToolTip("a folder written by `fishspine study` (summary.json, erf.npz, cka.npz)")
        self.open_button.clicked.connect(self.open_dialog)
        self.run_button = QPushButton("Run study…")
        self.run_button.clicked.connect(self.run_dialog)
        self.batch = QSpinBox()
        self.batch.setRange(*BATCH_RANGE)
        self.batch.setValue(8)
        self.batch.setToolTip(
            "images per chunk: the CKA estimator takes one minibatch per chunk (at least 4 images); "
            "a cancelled study resumes from its last finished chunk"
        )
        self.plot = QComboBox()
        self.plot.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.plot.setToolTip("the figure shown, and the one Export and Copy write")
        self.plot.currentIndexChanged.connect(lambda _i: self.refresh())
        for w in (self.open_button, self.run_button, QLabel("batch"), self.batch, QLabel("plot"), self.plot):
            self.controls.addWidget(w)
        self.placeholder.setText(
            "Open a study folder (Open study…), or run a study over the loaded models and images (Run study…)"
        )
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(0, 0, 0, 0)
        self.headline = QLabel("")
        self.headline.setTextFormat(Qt.RichText)
        self.headline.setWordWrap(True)
        self.headline.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.headline.setContentsMargins(4, 2, 4, 4)
        layout.addWidget(self.headline)
        self.pane = FigurePane()
        layout.addWidget(self.pane, 1)
        self.set_display(body)
        state.models_changed.connect(self.update_run_button)
        state.images_changed.connect(self.update_run_button)
        state.settings_changed.connect(self._settings_changed)
        self.update_run_button()

    # -- opening
    def open_dialog(self) -> None:
        """Ask for a study folder and show it."""
        start = self.state.settings.study_folder or self.last_run_folder
        folder = QFileDialog.getExistingDirectory(self, "Open study", str(Path(start).parent) if start else "")
        if folder:
            self.open_study(folder)

    def open_study(self, folder: str | Path) -> bool:
        """Load the study in `folder` and show it; a folder that is not one is a message, and what was
        shown stays. True when it opened."""
        from fishspine.analysis.figures.study import StudyError, load_study, study_exports

        try:
            study = load_study(folder)
            exports = study_exports(study)
        except (StudyError, OSError, ValueError) as exc:
            self.state.notify("error", f"Study: {exc}")
            return False
        if not exports:
            self.state.notify("error", f"Study: {Path(folder) / 'summary.json'}: the study has no figures to show")
            return False
        self.study, self.exports, self._figures = study, exports, {}
        chosen = self.plot.currentData()
        self.plot.blockSignals(True)
        self.plot.clear()
        for name in (n for n in PLOTS if n in exports):
            self.plot.addItem(PLOTS[name], name)
        self.plot.setCurrentIndex(max(self.plot.findData(chosen), 0))
        self.plot.blockSignals(False)
        self.headline.setText(headline(study.summary))
        self.headline.setToolTip(str(Path(folder).resolve()))
        self.pane.clear_figure()
        self.state.update_settings(study_folder=str(Path(folder)))
        self.refresh()
        return True

    def _settings_changed(self, changed: set[str]) -> None:
        # A restored session names a study folder: open it (the one shown is kept when that fails).
        if "study_folder" in changed:
            folder = self.state.settings.study_folder
            shown = str(self.study.folder) if self.study is not None else ""
            if folder and folder != shown and not self.open_study(folder):
                self.state.update_settings(study_folder=shown)

    # -- running
    def runnable(self) -> tuple[dict, list[Path], str]:
        """(models, image paths, why not): what Run would study, or why it cannot."""
        models = {m.label: m.model for m in self.state.models}
        paths = [Path(im.path) for im in self.state.images if im.path]
        why = ""
        if self.running:
            why = "a study is running"
        elif not models:
            why = "load a model first (drop a checkpoint or use File ▸ Add zoo model…)"
        elif not paths:
            why = "add images first: the study runs every model over the loaded image files"
        return models, paths, why

    def update_run_button(self) -> None:
        """Enable Run when there are models and image files, and say why not otherwise."""
        models, paths, why = self.runnable()
        self.run_button.setEnabled(not why)
        self.run_button.setToolTip(
            f"Run study: {why}"
            if why
            else f"study {len(models)} models over the {len(paths)} loaded image files at "
            f"{self.state.settings.image_size} px, into a folder you choose"
        )

    def run_dialog(self) -> None:
        """Ask for the output folder (and whether to resume a stopped study there), then run."""
        start = self.last_run_folder or self.state.settings.study_folder
        folder = QFileDialog.getExistingDirectory(self, "Run study into folder", start)
        if not folder:
            return
        resume = False
        if (Path(folder) / "state").is_dir():
            answer = QMessageBox.question(
                self,
                "Resume study?",
                f"{folder} holds a stopped study. Resume it (the same models, images and settings), or start again?",
                QMessageBox.Yes | QMessageBox.No | QMessageBox.Cancel,
                QMessageBox.Yes,
            )
            if answer == QMessageBox.Cancel:
                return
            resume = answer == QMessageBox.Yes
        self.run_study(folder, resume)

    def run_study(self, folder: str | Path, resume: bool = False) -> None:
        """Study the loaded models over the loaded image files at the app's input size, into `folder`,
        in a worker; show the study when it finishes."""
        from fishspine.analysis.options import STUDY_METRICS
        from fishspine.analysis.study.runner import CKA_MIN_BATCH, StudyConfig, StudyError, study_job

        models, paths, why = self.runnable()
        if why:
            self.state.notify("warning", f"Study: cannot run: {why}")
            return
        metrics = STUDY_METRICS
        if len(paths) < CKA_MIN_BATCH:  # no chunk would feed the CKA estimator
            metrics = tuple(m for m in metrics if m != "cka")
            self.state.notify("warning", f"Study: CKA needs at least {CKA_MIN_BATCH} images; studied without it")
        try:
            config = StudyConfig(size=self.state.settings.image_size, batch=self.batch.value(), metrics=metrics)
        except StudyError as exc:
            self.state.notify("error", f"Study: {exc}")
            return
        folder = Path(folder)
        source = os.path.commonpath([str(p.resolve().parent) for p in paths])
        self.last_run_folder = str(folder)
        self.running = True
        self.update_run_button()
        finished: list[bool] = []

        def done(summary) -> None:
            finished.append(True)
            self.state.notify(
                "info",
                f"study of {len(summary['models'])} models over {summary['config']['images']} images "
                f"written to {folder}",
            )
            self.open_study(folder)

        def ended() -> None:
            self.running = False
            self.update_run_button()
            if not finished and (folder / "state").is_dir():
                self.state.notify(
                    "info",
                    f"Study: the finished chunks are kept in {folder / 'state'}; Run study… into {folder} resumes it",
                )

        self.run_job(
            "study",
            lambda: study_job(models, paths, folder, config, resume=resume, source=source),
            done,
            ended,
        )

    # -- display
    def show_state(self) -> bool:
        if self.study is None:
            return False
        name = self.plot.currentData()
        if name not in self.exports:
            return False
        # Rendered once per plot and only when seen: the window refreshes the shown tab on every analysis.
        if self.isVisible() and (name not in self._figures or self.pane.figure is not self._figures[name]):
            if name not in self._figures:
                self._figures[name] = self.exports[name].figure()
            self.pane.set_figure(self._figures[name])
        self.info.setText(str(self.study.folder))
        return True

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self.study is not None and self.pane.figure is None:
            QTimer.singleShot(0, self.refresh)  # opened while hidden: draw now it is seen

    def export_name(self) -> str:
        name = self.plot.currentData()
        return f"{name}.pdf" if name else super().export_name()

    def export_result(self):
        """The chosen plot's ViewExport: what `fishspine study` writes for that figure."""
        name = self.plot.currentData()
        if self.study is None or name not in self.exports:
            raise ValueError("nothing to export yet: open or run a study")
        return self.exports[name]
