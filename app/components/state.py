"""The app's state as plain Python objects that emit events (no Qt here, after napari's EventedModel).

Views observe these objects and redraw; workers write results into them. Saving a session writes
only where things came from (checkpoint paths, zoo names, image paths) and the settings.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from fishspine.analysis.options import DEFAULT_INPUT_SIZE

SESSION_VERSION = 1
MAX_SESSION_BYTES = 64 << 20  # 100k image paths fit many times over


class Event:
    """A list of callbacks called with keyword arguments when the event fires."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[..., None]] = []

    def connect(self, callback: Callable[..., None]) -> None:
        self._callbacks.append(callback)

    def disconnect(self, callback: Callable[..., None]) -> None:
        self._callbacks.remove(callback)

    def emit(self, **kwargs: Any) -> None:
        for cb in list(self._callbacks):
            cb(**kwargs)


@dataclass
class ModelEntry:
    """A loaded backbone: one column of every view."""

    label: str
    model: Any  # fishspine.models.Backbone (kept Any so this module imports without torch)
    variant: str
    family: str
    params: int
    source: str  # checkpoint path, or "zoo:<name>:<width>"
    trained: bool
    device: str = "cpu"
    macs: int = 0  # per 224x224 image (640x640 for SpineNet), convolutions and linear layers
    # A whole detector's checkpoint gives the detector over `model` and what it detects (detection CAMs).
    detector: Any = None  # torch.nn.Module
    detector_spec: Any = None  # fishspine.models.detector.DetectorSpec

    @property
    def categories(self) -> list[str]:
        """What the model's detector detects (empty for a backbone alone); the CAM view names them."""
        return [] if self.detector_spec is None else list(self.detector_spec.category_names)


_image_keys = itertools.count(1)


@dataclass
class ImageEntry:
    """A loaded image (RGB uint8 array) and where it came from."""

    label: str
    path: str
    pixels: Any  # numpy array (H, W, 3)
    thumb: Any = None  # a small copy for the image strip, made where the image is loaded
    # The engine caches passes by this key: unique per loaded image, also when one file is loaded twice.
    key: str = field(default_factory=lambda: f"image-{next(_image_keys)}")
    # The object the user came to this image for (the COCO evidence): (x0, y0, x1, y1) in its pixels,
    # outlined over every map and CAM of it, and what it is.
    focus: tuple[float, float, float, float] | None = None
    focus_label: str = ""


@dataclass
class Settings:
    """What the views compute and how they show it.

    Evented (after napari's EventedModel): assigning a field that changes its value tells the
    listener (the AppState, which emits `settings_changed`), so every control and view follows a
    change wherever it was made: a control, another view, a restored session, the GPU fallback.
    """

    device: str = "auto"
    precision: str = "float32"
    image_size: int = DEFAULT_INPUT_SIZE
    reduction: str = "mean_abs"
    normalisation: str = "block"
    cam_method: str = "gradcam"
    scaling: str = "percentile"  # analysis.options.SCALINGS: the range a map's colours span
    cam_cmap: str = "inferno"  # analysis.options.CAM_CMAPS
    cam_alpha: float = 0.5  # the CAM overlay's opacity, on screen and in the export
    # model label -> the block its CAM is taken at (a model not named: its last block at stride 32)
    cam_blocks: dict[str, str] = field(default_factory=dict)
    class_index: int | None = None
    gradient_which: str = "output"
    gallery_rows: int = 8
    graph_color_by: str = ""
    coco_gt: str = ""
    coco_results: dict[str, str] = field(default_factory=dict)
    coco_baseline: str = ""
    coco_iou_type: str = "bbox"  # the COCO table's evaluation: "bbox" or "segm" (masks)
    coco_metrics: str = "AP"  # the COCO table's columns: "AP" or "AR"
    coco_images: str = ""  # the folder of the ground truth's images (crops of the COCO evidence)
    study_folder: str = ""  # the study shown in the Study tab ("" = none)
    cache_mb: int = 1024  # what the analysis engine may keep of finished passes

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _SETTING_NAMES:
            raise AttributeError(f"no setting {name!r}")
        old = self.__dict__.get(name, _UNSET)
        object.__setattr__(self, name, value)
        listener = self.__dict__.get("_listener")
        if listener is not None and old is not _UNSET and old != value:
            listener(name)

    def listen(self, callback: Callable[[str], None] | None) -> None:
        """Call `callback(field name)` after each change of a field's value."""
        object.__setattr__(self, "_listener", callback)


_UNSET = object()
_SETTING_NAMES = frozenset(f.name for f in fields(Settings))


class AppState:
    """Models, images, the selection, settings and results; each change fires an event."""

    def __init__(self) -> None:
        self.models: list[ModelEntry] = []
        self.images: list[ImageEntry] = []
        self.selected_image: int = -1
        self.selected_block: str = ""
        self.selected_model: str = ""  # the model the block was picked in ("" = every model that has it)
        self.settings = Settings()
        self.settings.listen(self._setting_changed)
        self._batch: set[str] | None = None  # fields changed inside update_settings, announced once
        self.insights: dict[str, Any] = {}  # label -> analysis.interactive.ModelInsight, for the selected image
        self.coco: dict[str, Any] = {}  # name -> analysis.coco.CocoEvaluation
        self.messages: list[tuple[str, str]] = []  # (level, text), newest last
        self.models_changed = Event()
        self.images_changed = Event()
        self.selection_changed = Event()  # image or block: what the analysis computes
        self.block_selected = Event()  # model=, block=: views highlight it at once
        self.settings_changed = Event()  # changed={field names}
        self.model_removed = Event()  # entry=: what it held (the engine's cache) can go
        self.image_removed = Event()  # entry=: likewise
        self.results_changed = Event()
        self.coco_changed = Event()
        self.message = Event()
        self.focus_changed = Event()  # the selected image's focus object changed: views outline it

    # -- models
    def unique_label(self, label: str) -> str:
        """`label`, or `label (2)` ... if a model already has it."""
        taken = {m.label for m in self.models}
        out, n = label, 2
        while out in taken:
            out, n = f"{label} ({n})", n + 1
        return out

    def add_model(self, entry: ModelEntry, index: int | None = None) -> None:
        """Add a model as the last column, or at `index`."""
        entry.label = self.unique_label(entry.label)
        self.models.insert(len(self.models) if index is None else index, entry)
        self.models_changed.emit()

    def remove_model(self, label: str) -> None:
        gone = [m for m in self.models if m.label == label]
        self.models = [m for m in self.models if m.label != label]
        self.insights.pop(label, None)
        for entry in gone:
            self.model_removed.emit(entry=entry)
        self.models_changed.emit()

    def rename_model(self, old: str, new: str) -> None:
        new = new.strip()
        if not new or new == old:
            return
        if any(m.label == new for m in self.models):
            self.notify("warning", f"a model is already called {new!r}")
            return
        for m in self.models:
            if m.label == old:
                m.label = new
        if old in self.insights:
            self.insights[new] = self.insights.pop(old)
        if old in self.settings.cam_blocks:  # the column keeps its CAM block under its new name
            blocks = dict(self.settings.cam_blocks)
            blocks[new] = blocks.pop(old)
            self.settings.cam_blocks = blocks
        self.models_changed.emit()

    def move_model(self, label: str, offset: int) -> None:
        i = next(i for i, m in enumerate(self.models) if m.label == label)
        j = max(0, min(len(self.models) - 1, i + offset))
        self.models.insert(j, self.models.pop(i))
        self.models_changed.emit()

    # -- images
    def add_image(self, entry: ImageEntry) -> None:
        self.add_images([entry])

    def add_images(self, entries: list[ImageEntry]) -> None:
        """Append images (one event for all); the first image ever added becomes the selected one."""
        if not entries:
            return
        first = len(self.images)
        self.images.extend(entries)
        self.images_changed.emit()
        if self.selected_image < 0:
            self.select_image(first)

    def select_image(self, index: int) -> None:
        if 0 <= index < len(self.images) and index != self.selected_image:
            self.selected_image = index
            self.insights = {}
            self.selection_changed.emit()

    def focus_on(self, index: int, box: tuple[float, float, float, float] | None, label: str = "") -> None:
        """Select image `index` with the object in `box` (x0, y0, x1, y1, its pixels; None: no object)
        outlined in every view."""
        entry = self.images[index]
        entry.focus, entry.focus_label = (None if box is None else tuple(float(v) for v in box)), label
        if index == self.selected_image:
            self.focus_changed.emit()
        else:
            self.select_image(index)

    def remove_image(self, index: int) -> None:
        """Remove image `index`; the selection moves to its neighbour (or nothing, when it was the last)."""
        if not 0 <= index < len(self.images):
            return
        entry = self.images.pop(index)
        was_selected = index == self.selected_image
        if index < self.selected_image or (was_selected and index == len(self.images)):
            self.selected_image -= 1
        self.image_removed.emit(entry=entry)
        self.images_changed.emit()
        if was_selected:
            self.insights = {}
            self.selection_changed.emit()

    @property
    def image(self) -> ImageEntry | None:
        return self.images[self.selected_image] if 0 <= self.selected_image < len(self.images) else None

    def select_block(self, name: str, model: str = "") -> None:
        """Select block `name` (of `model`, or of every model that has one so named): every view marks it
        and the CAM of those models follows it (the other models keep their CAM block)."""
        changed = name != self.selected_block
        self.selected_block, self.selected_model = name, model
        if name:
            blocks = dict(self.settings.cam_blocks)
            for m in self.models:
                if model in ("", m.label) and any(b.name == name for b in m.model.blocks):
                    blocks[m.label] = name
            self.settings.cam_blocks = blocks
        self.block_selected.emit(model=model, block=name)
        if changed:
            self.selection_changed.emit()

    # -- settings, results, messages
    def update_settings(self, **changes: Any) -> None:
        """Change several settings; one `settings_changed` event names the fields whose values changed."""
        unknown = [k for k in changes if k not in _SETTING_NAMES]
        if unknown:
            raise AttributeError(f"no setting {unknown[0]!r}")
        self._batch = set()
        try:
            for k, v in changes.items():
                setattr(self.settings, k, v)
            changed = self._batch
        finally:
            self._batch = None
        if changed:
            self.settings_changed.emit(changed=changed)

    def _setting_changed(self, name: str) -> None:
        if self._batch is not None:
            self._batch.add(name)
        else:
            self.settings_changed.emit(changed={name})

    def set_insights(self, insights: dict[str, Any]) -> None:
        self.insights = insights
        self.results_changed.emit()

    def set_coco(self, evals: dict[str, Any]) -> None:
        self.coco = evals
        self.coco_changed.emit()

    def notify(self, level: str, text: str) -> None:
        self.messages.append((level, text))
        self.message.emit(level=level, text=text)

    # -- sessions
    def session(self) -> dict[str, Any]:
        """The session as plain data: sources, images, settings."""
        return {
            "fishspine_session": SESSION_VERSION,
            "models": [{"label": m.label, "source": m.source} for m in self.models],
            "images": [im.path for im in self.images if im.path],
            "selected_image": self.selected_image,
            "settings": asdict(self.settings),
        }

    def save_session(self, path: str | Path) -> Path:
        from fishspine.models.atomic_files import atomic_write_bytes

        return atomic_write_bytes(path, json.dumps(self.session(), indent=2).encode())


def read_session(path: str | Path) -> tuple[Any, list[str]]:
    """A saved session, checked key by key (`session.ValidSession`), and warnings for keys it ignores;
    ValueError with a one-line message naming what is wrong when the file is not a usable session."""
    from fishspine.analysis.coco.validation import CocoError, read_json_file
    from fishspine.app.components.session import validate_session

    try:
        data = read_json_file(path, "session file", MAX_SESSION_BYTES)
    except CocoError as exc:  # the same guarded reader as COCO files: regular file, bounded, strict JSON
        raise ValueError(f"not a fishspine session: {exc}") from None
    try:
        return validate_session(data)
    except ValueError as exc:
        raise ValueError(f"{path}: not a usable fishspine session: {exc}") from None
