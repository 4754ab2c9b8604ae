"""The session file's schema: every key, its type and allowed values, checked before the app uses any.

A session comes from a file a user may have edited or been sent, so nothing in it is trusted: a key
is set on the settings only when it names a `Settings` field and its value is allowed there
(`device: "meta"` once replaced the loaded models' weights with empty tensors; `__class__` was set
onto the settings object). No Qt here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from fishspine.analysis.options import (
    CACHE_MB_RANGE,
    CAM_CMAPS,
    CAM_METHODS,
    COCO_IOU_TYPES,
    COCO_METRICS,
    GALLERY_ROWS_RANGE,
    GRADIENT_WHICH,
    GRAPH_COLOR_BY,
    IMAGE_SIZE_RANGE,
    INPUT_METHODS,
    NORMALISATIONS,
    PRECISIONS,
    REDUCTIONS,
    SCALINGS,
)
from fishspine.app.components.state import SESSION_VERSION, Settings

MAX_MODELS = 256
MAX_IMAGES = 100_000
MAX_LABEL = 200
MAX_PATH = 4096
MAX_COCO_RESULTS = 256
MAX_CLASS_INDEX = 100_000  # the app's class box goes no further
ZOO_WIDTH_MAX = 8.0
_CUDA = re.compile(r"cuda(:\d{1,3})?")


@dataclass
class SessionModel:
    """One column to restore: its label and where the model comes from (a checkpoint or zoo:NAME:WIDTH)."""

    label: str
    source: str


@dataclass
class ValidSession:
    """A session that passed `validate_session`: every value has the type and range the app expects."""

    models: list[SessionModel] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    selected_image: int = 0
    settings: dict[str, Any] = field(default_factory=dict)  # only the Settings fields the file gives

    def to_json(self) -> dict[str, Any]:
        """The session as the file stores it."""
        return {
            "fishspine_session": SESSION_VERSION,
            "models": [{"label": m.label, "source": m.source} for m in self.models],
            "images": list(self.images),
            "selected_image": self.selected_image,
            "settings": dict(self.settings),
        }


def _show(value: Any) -> str:
    """A short, safe description of a value for a message (no huge ints, no deep recursion)."""
    if isinstance(value, str):
        return repr(value[:60]) + ("…" if len(value) > 60 else "")
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if abs(value) < 10**20 else "a very large integer"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return f"an object with {len(value)} keys"
    return f"a {type(value).__name__}"


def _bad(key: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"session key {key!r} is {_show(value)}; allowed: {allowed}")


def _int(lo: int, hi: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise _bad(key, value, f"an integer from {lo} to {hi}")
        return value

    return check


def _choice(options: tuple[str, ...]) -> Callable[[str, Any], str]:
    def check(key: str, value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            raise _bad(key, value, ", ".join(repr(o) for o in options))
        return value

    return check


def _path(key: str, value: Any, empty: bool = True) -> str:
    if not isinstance(value, str) or len(value) > MAX_PATH or "\x00" in value or (not empty and not value.strip()):
        raise _bad(key, value, f"a file path (a string of {'0' if empty else '1'} to {MAX_PATH} characters, no NUL)")
    return value


def _label(key: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_LABEL or "\x00" in value:
        raise _bad(key, value, f"a string of at most {MAX_LABEL} characters")
    return value


def _device(key: str, value: Any) -> str:
    if not isinstance(value, str) or not (value in ("auto", "cpu") or _CUDA.fullmatch(value)):
        raise _bad(key, value, "'auto', 'cpu', 'cuda' or 'cuda:N'")
    return value


def _class_index(key: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CLASS_INDEX:
        raise _bad(key, value, f"null (the top prediction) or an integer from 0 to {MAX_CLASS_INDEX}")
    return value


def _fraction(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise _bad(key, value, "a number from 0 to 1")
    return float(value)


def _cam_blocks(key: str, value: Any) -> dict[str, str]:
    allowed = f"an object of at most {MAX_MODELS} model label: block name pairs"
    if not isinstance(value, dict) or len(value) > MAX_MODELS:
        raise _bad(key, value, allowed)
    for name, block in value.items():
        _label(f"{key}.{name[:40]}" if isinstance(name, str) else key, name)
        _label(f"{key}.{name[:40]}", block)
    return dict(value)


def _coco_results(key: str, value: Any) -> dict[str, str]:
    allowed = f"an object of at most {MAX_COCO_RESULTS} name: result-file path pairs"
    if not isinstance(value, dict) or len(value) > MAX_COCO_RESULTS:
        raise _bad(key, value, allowed)
    for name, path in value.items():
        _label(f"{key}.{name[:40]}" if isinstance(name, str) else key, name)
        _path(f"{key}.{name[:40]}", path, empty=False)
    return dict(value)


SETTINGS_SCHEMA: dict[str, Callable[[str, Any], Any]] = {
    "device": _device,
    "precision": _choice(PRECISIONS),
    "image_size": _int(*IMAGE_SIZE_RANGE),
    "reduction": _choice(REDUCTIONS),
    "normalisation": _choice(NORMALISATIONS),
    "cam_method": _choice(CAM_METHODS + INPUT_METHODS),
    "scaling": _choice(SCALINGS),
    "cam_cmap": _choice(CAM_CMAPS),
    "cam_alpha": _fraction,
    "cam_blocks": _cam_blocks,
    "class_index": _class_index,
    "gradient_which": _choice(GRADIENT_WHICH),
    "gallery_rows": _int(*GALLERY_ROWS_RANGE),
    "graph_color_by": _choice(("", *GRAPH_COLOR_BY)),  # "" = the view's default (role)
    "coco_gt": _path,
    "coco_results": _coco_results,
    "coco_baseline": _label,
    "coco_iou_type": _choice(COCO_IOU_TYPES),
    "coco_metrics": _choice(COCO_METRICS),
    "coco_images": _path,
    "study_folder": _path,
    "cache_mb": _int(*CACHE_MB_RANGE),
}


def zoo_source(source: str) -> tuple[str, float]:
    """(name, width) of a "zoo:NAME:WIDTH" source; ValueError unless NAME is registered and 0 < WIDTH <= 8."""
    from fishspine.models import list_models

    parts = source.split(":")
    if len(parts) != 3:
        raise ValueError(f"model source {source[:80]!r} is not of the form zoo:NAME:WIDTH")
    _, name, width_text = parts
    if name not in list_models():
        raise ValueError(f"model source {source[:80]!r}: no zoo model {name[:40]!r}; `fishspine models` lists them")
    try:
        width = float(width_text) if len(width_text) <= 32 else math.nan
    except ValueError:
        width = math.nan
    if not (math.isfinite(width) and 0 < width <= ZOO_WIDTH_MAX):
        raise ValueError(
            f"model source {source[:80]!r}: width {width_text[:32]!r} is not a number in (0, {ZOO_WIDTH_MAX:g}]"
        )
    return name, width


def _models(value: Any) -> list[SessionModel]:
    if not isinstance(value, list) or len(value) > MAX_MODELS:
        raise _bad("models", value, f"a list of at most {MAX_MODELS} {{'label': ..., 'source': ...}} objects")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "source" not in m or "label" not in m:
            raise _bad(
                f"models[{i}]",
                m,
                "an object with 'label' (a string) and 'source' (a checkpoint path or zoo:NAME:WIDTH)",
            )
        label = _label(f"models[{i}].label", m["label"])
        source = _path(f"models[{i}].source", m["source"], empty=False)
        if source.startswith("zoo:"):
            try:
                zoo_source(source)
            except ValueError as exc:
                raise ValueError(f"session key 'models[{i}].source': {exc}") from None
        out.append(SessionModel(label, source))
    return out


def _images(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_IMAGES:
        raise _bad("images", value, f"a list of at most {MAX_IMAGES:,} image paths")
    return [_path(f"images[{i}]", p, empty=False) for i, p in enumerate(value)]


TOP_LEVEL = ("fishspine_session", "models", "images", "selected_image", "settings")


def validate_session(data: Any) -> tuple[ValidSession, list[str]]:
    """The checked session and warnings for keys it ignores; ValueError naming the key, its value and
    what is allowed on anything else. Missing keys keep the app's current values."""
    if not isinstance(data, dict):
        raise ValueError(f"a session is a JSON object with 'fishspine_session': {SESSION_VERSION}; got {_show(data)}")
    version = data.get("fishspine_session")
    if isinstance(version, bool) or version != SESSION_VERSION:
        raise _bad("fishspine_session", version, f"{SESSION_VERSION} (this app's session format)")
    warnings = [
        f"session key {k[:60]!r} is not one this app knows; ignored"
        if isinstance(k, str)
        else "a session key that is not a string was ignored"
        for k in data
        if k not in TOP_LEVEL
    ]
    session = ValidSession()
    if "models" in data:
        session.models = _models(data["models"])
    if "images" in data:
        session.images = _images(data["images"])
    if "selected_image" in data:
        session.selected_image = _int(-1, MAX_IMAGES)("selected_image", data["selected_image"])
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise _bad("settings", settings, "an object of setting: value pairs")
    known = {f.name for f in fields(Settings)}
    for key, value in settings.items():
        if key not in SETTINGS_SCHEMA or key not in known:
            warnings.append(f"session setting {str(key)[:60]!r} is not one this app knows; ignored")
            continue
        session.settings[key] = SETTINGS_SCHEMA[key](f"settings.{key}", value)
    return session, warnings
