"""The app's state as plain Python objects that emit events (no Qt here, after napari's EventedModel).

Views observe these objects and redraw; workers write results into them. Saving a session writes
only where things came from (checkpoint paths, zoo names, image paths) and the settings.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

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


@dataclass
class ImageEntry:
    """A loaded image (RGB uint8 array) and where it came from."""

    label: str
    path: str
    pixels: Any  # numpy array (H, W, 3)
    thumb: Any = None  # a small copy for the image strip, made where the image is loaded


@dataclass
class Settings:
    """What the views compute and how they show it."""

    device: str = "auto"
    precision: str = "float32"
    image_size: int = 384
    reduction: str = "mean_abs"
    normalisation: str = "block"
    cam_method: str = "gradcam"
    class_index: int | None = None
    gradient_which: str = "output"
    gallery_rows: int = 8
    graph_color_by: str = ""
    coco_gt: str = ""
    coco_results: dict[str, str] = field(default_factory=dict)
    coco_baseline: str = ""


class AppState:
    """Models, images, the selection, settings and results; each change fires an event."""

    def __init__(self) -> None:
        self.models: list[ModelEntry] = []
        self.images: list[ImageEntry] = []
        self.selected_image: int = -1
        self.selected_block: str = ""
        self.selected_model: str = ""  # the model the block was picked in ("" = every model that has it)
        self.settings = Settings()
        self.insights: dict[str, Any] = {}  # label -> analysis.interactive.ModelInsight, for the selected image
        self.coco: dict[str, Any] = {}  # name -> analysis.coco.CocoEvaluation
        self.messages: list[tuple[str, str]] = []  # (level, text), newest last
        self.models_changed = Event()
        self.images_changed = Event()
        self.selection_changed = Event()  # image or block: what the analysis computes
        self.block_selected = Event()  # model=, block=: views highlight it at once
        self.settings_changed = Event()
        self.results_changed = Event()
        self.coco_changed = Event()
        self.message = Event()

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
        self.models = [m for m in self.models if m.label != label]
        self.insights.pop(label, None)
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

    @property
    def image(self) -> ImageEntry | None:
        return self.images[self.selected_image] if 0 <= self.selected_image < len(self.images) else None

    def select_block(self, name: str, model: str = "") -> None:
        """Select block `name` (of `model`, or of every model that has one so named): every view marks it
        and the CAM follows it."""
        changed = name != self.selected_block
        self.selected_block, self.selected_model = name, model
        self.block_selected.emit(model=model, block=name)
        if changed:
            self.selection_changed.emit()

    # -- settings, results, messages
    def update_settings(self, **changes: Any) -> None:
        for k, v in changes.items():
            if not hasattr(self.settings, k):
                raise AttributeError(f"no setting {k!r}")
            setattr(self.settings, k, v)
        self.settings_changed.emit(changed=set(changes))

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
        return {"fishspine_session": SESSION_VERSION,
                "models": [{"label": m.label, "source": m.source} for m in self.models],
                "images": [im.path for im in self.images if im.path],
                "selected_image": self.selected_image,
                "settings": asdict(self.settings)}

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
