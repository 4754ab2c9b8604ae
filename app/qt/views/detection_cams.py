"""Each loaded detector's CAM of its detection of one object, side by side: the SCNet paper's Figure 1
done on detections (analysis/attribution/detection_cam.py).

The panel shows the figure `fishspine cam --detection` writes (the same builder, so Export writes what
is on screen): the image with the object's box dashed, then per detector the CAM of the score of its
detection of that object (same class, IoU >= 0.5, best score) with that detection's box. Models loaded
from a backbone-only file have no detector and are left out, and the panel says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from fishspine.analysis.jobs import Progress
from fishspine.app.components.state import AppState

DEFAULT_LAYER = "its pyramid level"  # where each detector's detection came from (DetectorPass.source_level)
BLOCK_LAYER = "last block at stride 32"
PYRAMID = ("FPN P3", "FPN P4", "FPN P5", "FPN P6", "FPN P7")  # models/detector.py pyramid_names()


@dataclass
class DetectionObject:
    """The object asked about: an image, its box (x0, y0, x1, y1 in its pixels) and category name."""

    image: str  # the engine's key of the image
    name: str  # what the figure calls it (the file's stem)
    pixels: Any = field(repr=False)  # RGB uint8 (H, W, 3)
    box: tuple[float, float, float, float]
    category: str


@dataclass
class DetectionCams:
    """What the panel shows: the CAMs, and who made no detection of the object (or cannot detect it)."""

    target: DetectionObject
    cams: dict[str, Any]  # label -> CamResult
    missing: dict[str, str]  # label -> why there is no CAM
    layer: str
    method: str


def detectors_of(state: AppState) -> dict[str, Any]:
    """{label: ModelEntry} of the loaded models that are whole detectors."""
    return {m.label: m for m in state.models if m.detector is not None}


def png_job(export):
    """A job: the PNG bytes of a ViewExport's figure (what Export writes as .png)."""
    from fishspine.analysis.figures.base import figure_bytes

    yield Progress(0, 1, "drawing")
    return figure_bytes(export.figure(), "png")


def detection_cams_job(engine, entries: dict, target: DetectionObject, layer: str, method: str, scaling: str):
    """A job: every detector's pass for the object (held by the engine) and the CAM at `layer`."""
    from fishspine.analysis.attribution.engine import default_cam_block

    cams, missing = {}, {}
    for i, (label, entry) in enumerate(entries.items()):
        yield Progress(i, len(entries), label)
        spec = entry.detector_spec
        if target.category not in spec.category_names:
            missing[label] = f"detects no {target.category!r}"
            continue
        p = engine.detection_pass(
            entry.detector, spec, target.pixels, target.image, target.box, spec.category_names.index(target.category)
        )
        if p.target is None:
            missing[label] = f"no detection of this {target.category} (IoU ≥ 0.5)"
            continue
        if layer == DEFAULT_LAYER:
            block = p.default_layer(entry.model.blocks)
        elif layer == BLOCK_LAYER:
            block = default_cam_block(entry.model.blocks)
        else:
            block = layer
        cams[label] = p.cam(block, method, label, scaling)
    yield Progress(len(entries), len(entries), "done")
    return DetectionCams(target, cams, missing, layer, method)


class DetectionCamPanel(QWidget):
    """The detection CAMs of the object chosen in the evidence gallery, with a layer chooser and Export."""

    def __init__(self, state: AppState, run_job: Callable, engine: Any, follows_selection: bool = False) -> None:
        super().__init__()
        self.state, self.run_job, self.engine = state, run_job, engine
        self.result: DetectionCams | None = None
        self.target: DetectionObject | None = None
        self._generation = 0
        self._drawing = 0  # the figure drawn last (renders arrive from workers, maybe out of order)
        self._pixmap: QPixmap | None = None
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.title = QLabel("")
        self.title.setWordWrap(True)
        row.addWidget(self.title, 1)
        row.addWidget(QLabel("layer"))
        self.layer = QComboBox()
        self.layer.addItems([DEFAULT_LAYER, BLOCK_LAYER, *PYRAMID])
        self.layer.setToolTip(
            "where the CAM is taken: the pyramid level each detector's detection came from, each backbone's "
            "last stride-32 block, or one pyramid level for all"
        )
        self.layer.currentTextChanged.connect(lambda _t: self.compute())
        row.addWidget(self.layer)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("write this figure (PNG, SVG, PDF) or its data (CSV, JSON)")
        self.export_button.clicked.connect(self.export_dialog)
        row.addWidget(self.export_button)
        outer.addLayout(row)
        self.figure = QLabel("")
        self.figure.setAlignment(Qt.AlignCenter)
        self.figure.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Ignored)
        self.figure.setMinimumHeight(120)
        outer.addWidget(self.figure, 1)
        state.settings_changed.connect(self._settings_changed)
        if follows_selection:  # an object of the selected image: it goes when another image is chosen
            state.selection_changed.connect(self._selection_changed)
            state.image_removed.connect(lambda entry: self._selection_changed())
        self.hide()

    def _selection_changed(self) -> None:
        if self.target is not None and (self.state.image is None or self.state.image.key != self.target.image):
            self.clear()

    def show_object(self, target: DetectionObject) -> bool:
        """Compute and show every detector's CAM of `target`; False (and a message) when no loaded
        model is a whole detector."""
        if not detectors_of(self.state):
            self.state.notify(
                "info",
                "detection CAMs need whole detectors (checkpoints saved by `fishspine train`); the loaded "
                "models are backbones alone",
            )
            return False
        self.target = target
        self.show()
        self.compute()
        return True

    def clear(self) -> None:
        """Forget the object shown (its results or models are gone)."""
        self._generation += 1
        self._drawing += 1
        self.target, self.result, self._pixmap = None, None, None
        self.figure.clear()
        self.hide()

    def _settings_changed(self, changed: set[str]) -> None:
        if self.target is None:
            return
        if changed & {"cam_method", "scaling"}:
            self.compute()
        elif changed & {"cam_cmap", "cam_alpha"} and self.result is not None:
            self._render()  # the same CAMs, drawn otherwise

    def compute(self) -> None:
        """Run the detectors on the object in a worker (the engine keeps their passes)."""
        entries = detectors_of(self.state)
        if self.target is None or not entries:
            return
        self._generation += 1
        generation, s = self._generation, self.state.settings
        x, y, x1, y1 = self.target.box
        self.title.setText(
            f"Detection CAMs: {self.target.category} [{x:.0f}, {y:.0f}, {x1 - x:.0f}, {y1 - y:.0f}] in "
            f"{self.target.name} … ({s.cam_method})"
        )
        job = lambda: detection_cams_job(  # noqa: E731
            self.engine, entries, self.target, self.layer.currentText(), s.cam_method, s.scaling
        )
        self.run_job("detection CAMs", job, lambda r, g=generation: self._computed(r, g))

    def _computed(self, result: DetectionCams, generation: int) -> None:
        if generation != self._generation:
            return  # superseded by a newer object, layer or setting
        self.result = result
        x, y, x1, y1 = result.target.box
        head = f"Detection CAMs ({result.method} @ {result.layer}): {result.target.category} [{x:.0f}, {y:.0f}, "
        head += f"{x1 - x:.0f}, {y1 - y:.0f}] in {result.target.name}"
        if result.missing:
            head += " · " + "; ".join(f"{k}: {v}" for k, v in result.missing.items())
        self.title.setText(head)
        for label, why in result.missing.items():
            self.state.notify("info", f"detection CAMs: {label} {why}")
        self._render()

    def export_result(self):
        """cam_export's ViewExport of what is shown (what `fishspine cam --detection` writes)."""
        from fishspine.analysis.figures.attribution import cam_export

        if self.result is None or not self.result.cams:
            raise ValueError("no detection CAM yet: click an object in the evidence gallery")
        r, s = self.result, self.state.settings
        families = {m.label: m.family for m in self.state.models}
        return cam_export(r.target.name, r.target.pixels, r.cams, s.cam_alpha, s.cam_cmap, r.target.box, families)

    def _render(self) -> None:
        """Draw the figure in a worker (matplotlib takes a few hundred ms: not on the UI thread)."""
        self._drawing += 1
        if self.result is None or not self.result.cams:
            self.figure.setText("no detector made a detection of this object")
            self._pixmap = None
            return
        export, drawing = self.export_result(), self._drawing
        self.run_job("drawing detection CAMs", partial(png_job, export), lambda png: self._drawn(png, drawing))

    def _drawn(self, png: bytes, drawing: int) -> None:
        if drawing != self._drawing or self.result is None:
            return  # another object, layer or setting was drawn since
        self._pixmap = QPixmap()
        self._pixmap.loadFromData(png)
        self._fit()

    def _fit(self) -> None:
        if self._pixmap is not None and not self._pixmap.isNull():
            self.figure.setPixmap(self._pixmap.scaled(self.figure.size(), Qt.KeepAspectRatio, Qt.SmoothTransformation))

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._fit()

    def export_dialog(self) -> None:
        from fishspine.app.qt.views.base import export_with_dialog

        if self.result is None:
            self.state.notify("warning", "nothing to export: no detection CAM yet")
            return
        name = f"{self.result.target.name}_detection_cams.pdf"
        export_with_dialog(self, self.state, "Export detection CAMs", name, self.export)

    def export(self, path: str | Path) -> list[Path]:
        """Write the figure (.png/.svg/.pdf) or its data (.csv/.json) to `path`."""
        from fishspine.app.qt.views.base import export_to

        return export_to(path, self.export_result)


def detection_at_job(engine, entries: dict, image, point: tuple[float, float]):
    """A job: (label, Detection) of the best-scoring detection of any detector in `entries` whose box
    holds `point` (the image's pixels), or None."""
    best = None
    for i, (label, entry) in enumerate(entries.items()):
        yield Progress(i, len(entries), label)
        p = engine.detection_pass(entry.detector, entry.detector_spec, image.pixels, image.key, cam=False)
        for d in p.detections:
            x0, y0, x1, y1 = d.box
            if x0 <= point[0] <= x1 and y0 <= point[1] <= y1 and (best is None or d.score > best[1].score):
                best = (label, d)
    return best


def object_of_entry(entry, box: tuple[float, float, float, float], category: str) -> DetectionObject:
    """A DetectionObject on a loaded image (ImageEntry): the engine keys its passes by the entry."""
    return DetectionObject(entry.key, Path(entry.label).stem, entry.pixels, tuple(box), category)


def object_of(image_key: str, path: str, pixels: np.ndarray, coco_box, category: str) -> DetectionObject:
    """A DetectionObject from a COCO [x, y, w, h] box."""
    x, y, w, h = (float(v) for v in coco_box)
    return DetectionObject(image_key, Path(path).stem, pixels, (x, y, x + w, y + h), category)
