"""What every analysis view shares: a control bar, a hover line, export and copy, and pyqtgraph settings.

A view shows its results interactively (pyqtgraph items, drawn in milliseconds, zoom and pan) and
exports through the command line's matplotlib code path: `export_figure()` builds the very figure
`fishspine <view>` writes, only when the user exports or copies, so the UI thread never waits on
matplotlib while results stream in.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from fishspine.app.components.state import AppState
from fishspine.app.qt.file_dialogs import save_file

# Arrays are (rows, columns) like numpy and matplotlib; white paper like the exported figures.
pg.setConfigOptions(imageAxisOrder="row-major", antialias=True, background="w", foreground="k")

FIGURE_FILTER = "Figures (*.pdf *.svg *.png);;Data (*.csv *.json)"
SELECTED_PEN = pg.mkPen("#00b4ff", width=3)


@cache
def lookup_table(cmap: str) -> np.ndarray:
    """A matplotlib colormap as a 256x4 uint8 table for pyqtgraph's ImageItem (same colours as the figures)."""
    from matplotlib import colormaps

    return (colormaps[cmap](np.linspace(0.0, 1.0, 256)) * 255).round().astype(np.uint8)


def model_qcolors(names, families: dict[str, str] | None = None) -> dict[str, str]:
    """Each model's colour (analysis.figures.base.model_colors: by family, then a shade within it), the one it
    has in every figure whatever the order the models were loaded in, as Qt colour strings."""
    from fishspine.analysis.figures.base import model_colors

    return model_colors(names, families)


_open_windows: list[QWidget] = []  # enlarged maps stay open until the user closes them


def bind_setting(
    state: AppState,
    box: QWidget,
    name: str,
    on_change: Callable[[], None] | None = None,
    to_setting: Callable[[Any], Any] = lambda v: v,
    from_setting: Callable[[Any], Any] = lambda v: v,
) -> None:
    """Tie a control to setting `name`: the control writes the setting, and follows it wherever it changes
    (a restored session, the GPU fallback, another view), calling `on_change` after either.

    `box` is a QComboBox (its text) or a spin box (its value); `to_setting`/`from_setting` convert.
    """
    from PySide6.QtWidgets import QComboBox

    is_combo = isinstance(box, QComboBox)

    def show() -> None:
        value = from_setting(getattr(state.settings, name))
        box.blockSignals(True)
        if is_combo:
            if box.findText(str(value)) < 0:
                box.addItem(str(value))  # e.g. cuda:1 from a session
            box.setCurrentText(str(value))
        else:
            box.setValue(value)
        box.blockSignals(False)

    def followed(changed: set[str]) -> None:
        if name in changed:
            show()
            if on_change is not None:
                on_change()

    show()
    signal = box.currentTextChanged if is_combo else box.valueChanged
    signal.connect(lambda v: state.update_settings(**{name: to_setting(v)}))
    state.settings_changed.connect(followed)


def show_block_map(model: str, block: Any, cmap: str | None = None) -> QWidget:
    """Open one block's activation map (an analysis.activations.BlockMap) large, in its own window.

    The map is shown in the input image's pixel grid with a histogram to adjust the levels; its colours
    are the gallery's (diverging for a signed map) unless `cmap` is given.
    """
    from fishspine.analysis.options import ACTIVATION_CMAP, SIGNED_CMAP

    cmap = cmap or (SIGNED_CMAP if getattr(block, "signed", False) else ACTIVATION_CMAP)
    view = pg.ImageView()
    view.setWindowTitle(f"{model} · {block.name} ({block.role}, stride {2**block.level}) · output {list(block.shape)}")
    view.setImage(block.map.astype(np.float32), levels=(0.0, 1.0), autoRange=True)
    view.getImageItem().setLookupTable(lookup_table(cmap))
    view.ui.roiBtn.hide()
    view.ui.menuBtn.hide()
    view.resize(620, 560)
    view.setAttribute(Qt.WA_DeleteOnClose)
    view.destroyed.connect(lambda *_: _open_windows.remove(view) if view in _open_windows else None)
    _open_windows.append(view)
    view.show()
    return view


def export_with_dialog(
    parent: QWidget, state: AppState, title: str, name: str, export: Callable[[str], list[Path]]
) -> None:
    """Ask where (starting as `name` in the last folder), `export` there, and say what was written or why not."""
    path = save_file(parent, title, name, FIGURE_FILTER)
    if path:
        try:
            for p in export(path):
                state.notify("info", f"exported {p}")
        except (ValueError, OSError) as exc:
            state.notify("error", f"export failed: {exc}")


def export_to(path: str | Path, make_result: Callable[[], Any]) -> list[Path]:
    """Write `make_result()`'s figure (.png/.svg/.pdf) or data (.csv/.json) to `path`, chosen by its suffix."""
    from fishspine.analysis.figures.base import save_figure, write_csv, write_json

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".svg", ".pdf", ".csv", ".json"):
        raise ValueError(f"{path.name}: export as .png, .svg, .pdf (figure) or .csv, .json (data)")
    result = make_result()
    if suffix in (".csv", ".json"):
        return [write_csv(path, result.rows) if suffix == ".csv" else write_json(path, result.payload)]
    return save_figure(result.figure(), path)


class View(QWidget):
    """One tab: controls on the left of a bar, hover text, Export… and Copy; the display below.

    Subclasses implement `show_state()` (update the display from the state; False when there is
    nothing to show), `export_figure()` (the CLI's matplotlib figure) and `export_data()`
    ((CSV rows, JSON payload)).
    """

    title = ""

    def __init__(self, state: AppState) -> None:
        super().__init__()
        self.state = state
        self.has_content = False
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(4, 4, 4, 4)
        bar = QHBoxLayout()
        self.controls = QHBoxLayout()
        bar.addLayout(self.controls)
        self.info = QLabel("")
        self.info.setObjectName("viewInfo")
        self.info.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.info.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # long text never widens the window
        self.info.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
        bar.addWidget(self.info, 1)
        for text, slot in (("Export…", self.export_dialog), ("Copy", self.copy_to_clipboard)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            bar.addWidget(b)
        self._layout.addLayout(bar)
        self.stack = QStackedWidget()
        self.placeholder = QLabel("Waiting for results… (drop checkpoints and images on the window)")
        self.placeholder.setAlignment(Qt.AlignCenter)
        self.placeholder.setStyleSheet("color: #777;")
        self.stack.addWidget(self.placeholder)
        self._layout.addWidget(self.stack, 1)
        # A block picked in any view is marked in every view (each draws the mark in highlight()).
        state.block_selected.connect(lambda model, block: self.highlight(model, block))

    def set_display(self, widget: QWidget) -> None:
        """The widget shown once there are results."""
        self.stack.addWidget(widget)
        self.display = widget

    # -- to implement
    def show_state(self) -> bool:  # pragma: no cover - per view
        raise NotImplementedError

    def export_figure(self):  # pragma: no cover - per view
        raise NotImplementedError

    def export_data(self) -> tuple[list[dict], Any]:  # pragma: no cover - per view
        raise NotImplementedError

    def export_result(self):
        """What Export writes (analysis/figures/base.py ViewExport), from the result the screen shows.

        Views whose command has an export builder override this to call it, so the export equals the
        command's output."""
        from fishspine.analysis.figures.base import ViewExport

        rows, payload = self.export_data()
        return ViewExport(self.export_figure, rows, payload)

    def highlight(self, model: str, block: str) -> None:
        """Mark the selected block (of `model`, or of every model that has it when model is "")."""

    # -- shared behaviour
    def refresh(self) -> None:
        """Redraw from the state; a broken view reports and leaves the app running."""
        try:
            shown = self.show_state()
        except Exception as exc:  # noqa: BLE001 - a broken view must not take the app down
            self.state.notify("error", f"{self.title}: {type(exc).__name__}: {exc}")
            return
        self.has_content = bool(shown)
        self.stack.setCurrentIndex(1 if shown and self.stack.count() > 1 else 0)
        if shown:
            self.highlight(self.state.selected_model, self.state.selected_block)

    def export(self, path: str | Path) -> list[Path]:
        """Write the figure (.png/.svg/.pdf, the CLI's figure) or its data (.csv/.json) to `path`."""
        if not self.has_content:
            raise ValueError(f"nothing to export yet: the {self.title} view is empty")
        return export_to(path, self.export_result)

    def export_name(self) -> str:
        """The file name the Export dialog proposes."""
        return f"{self.title.lower().replace(' ', '_').replace('-', '')}.pdf"

    def export_dialog(self) -> None:
        export_with_dialog(self, self.state, f"Export {self.title}", self.export_name(), self.export)

    def copy_to_clipboard(self) -> None:
        from fishspine.analysis.figures.base import figure_bytes

        if not self.has_content:
            self.state.notify("warning", f"nothing to copy: the {self.title} view is empty")
            return
        QGuiApplication.clipboard().setImage(QImage.fromData(figure_bytes(self.export_result().figure(), "png")))
        self.state.notify("info", f"{self.title} figure copied to the clipboard")
