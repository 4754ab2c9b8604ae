"""Open checkpoints of every supported format, recognised from the file alone; save fishspine's own.

Formats recognised:
- fishspine's own: safetensors weights with a JSON header (metadata key "fishspine") naming the
  family, variant, width, num_classes and training data;
- the authors' FishNet `.tar` (a dict with `state_dict`, keys prefixed `module.`);
- the authors' SCNet `.pth` and torchvision ResNet files (plain state_dicts);
- mmdetection SpineNet detectors (`state_dict` with `backbone.` keys).
Pickle-based files are read with `torch.load(weights_only=True)`: nothing in a file is executed.
"""

from __future__ import annotations

import functools
import json
import math
import pickle
import stat
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .backbone import Backbone
from .detector import MAX_FPN_CHANNELS, MAX_IMAGE_SIZE, DetectorSpec, detector_for
from .registry import create_model, list_models, model_family, model_spec

FISHSPINE_FORMAT = "fishspine"
FORMAT_VERSION = 1
_HEADER_KEY = "fishspine"
_MAX_LISTED_KEYS = 8
# Bounds on what a fishspine header may ask for, checked before anything is built.
MAX_WIDTH = 8.0
MAX_NUM_CLASSES = 100_000


class CheckpointError(ValueError):
    """A file that cannot be opened as a checkpoint of a known architecture; the message says why."""


@dataclass
class KeyDiff:
    """How a state_dict differs from a variant's expected layout."""

    variant: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatch: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatch)

    @property
    def distance(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.shape_mismatch)

    def describe(self) -> str:
        """Human-readable summary of the differences (first few keys of each kind)."""
        parts = []
        for label, items in (("missing", self.missing), ("unexpected", self.unexpected)):
            if items:
                shown = ", ".join(items[:_MAX_LISTED_KEYS])
                more = f" (+{len(items) - _MAX_LISTED_KEYS} more)" if len(items) > _MAX_LISTED_KEYS else ""
                parts.append(f"{len(items)} {label} keys: {shown}{more}")
        if self.shape_mismatch:
            shown = ", ".join(
                f"{k} {list(got)} (expected {list(exp)})" for k, got, exp in self.shape_mismatch[:_MAX_LISTED_KEYS]
            )
            parts.append(f"{len(self.shape_mismatch)} keys of the wrong shape: {shown}")
        return "; ".join(parts) or "no differences"


@dataclass
class Checkpoint:
    """A recognised checkpoint: the model with its weights loaded, and where they came from."""

    model: Backbone
    variant: str
    family: str
    format: str
    path: Path | None
    meta: dict[str, Any] = field(default_factory=dict)
    # A whole detector's file also gives the detector (its backbone is `model`) and what it detects.
    detector: torch.nn.Module | None = None
    detector_spec: DetectorSpec | None = None

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


# --------------------------------------------------------------------------------------------
# Reading raw files


def _is_safetensors(head: bytes) -> bool:
    if len(head) < 10:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 0 < n < 100_000_000 and head[8:9] == b"{"


def read_raw(path: str | Path) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """Read `path` into (state_dict-or-container, container kind, fishspine header or {}).

    Raises CheckpointError for a missing, empty, truncated, non-checkpoint or code-carrying file.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read below; a device never ends
        raise CheckpointError(f"{path}: not a regular file (a pipe, device or socket); give a checkpoint file")
    size = st.st_size
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    with open(path, "rb") as fh:
        head = fh.read(16)
    if _is_safetensors(head):
        return _read_safetensors(path)
    return _read_torch(path, head), "torch", {}


def _read_safetensors(path: Path) -> tuple[dict[str, Any], str, dict[str, Any]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            header = _parse_header(path, meta)
            if header is not None:
                # A fishspine header is checked, and the file's shapes against it, before any tensor is read.
                variant, kwargs = build_arguments(header, str(path))
                spec = detector_spec(header, str(path))
                shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
                if spec is None:
                    _check_fishspine_layout(path, shapes, variant, kwargs)
                else:
                    _check_detector_layout(path, shapes, variant, kwargs, spec)
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path}: a safetensors file that cannot be read (truncated or corrupt?): {exc}") from exc
    return tensors, "safetensors", header or {}


def _parse_header(path: Path, meta: Mapping[str, str]) -> dict[str, Any] | None:
    """The fishspine header in safetensors metadata as a dict; None when there is none."""
    if _HEADER_KEY not in meta:
        return None
    try:
        header = json.loads(meta[_HEADER_KEY])
    except ValueError as exc:  # JSONDecodeError, or an integer past Python's digit limit
        raise CheckpointError(f"{path}: its fishspine header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise CheckpointError(
            f"{path}: its fishspine header is a JSON {_json_kind(header)}, not an object; "
            "the file was not written by fishspine (re-save the model with save_checkpoint)"
        )
    return header


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if value is None:
        return "null"
    return "object" if isinstance(value, dict) else type(value).__name__


def _read_torch(path: Path, head: bytes) -> Any:
    is_zip = head.startswith(b"PK\x03\x04")
    is_pickle = head[:1] == b"\x80"
    if not (is_zip or is_pickle):
        raise CheckpointError(
            f"{path}: not a checkpoint (neither a PyTorch file nor safetensors). "
            "Open a .pth/.pt/.tar saved by torch.save, or a .safetensors file."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "weights_only" in text.lower() or "weights only" in text.lower():
            what = (
                _first_line_with(text, "GLOBAL")
                or _first_line_with(text, "nsupported")
                or "objects outside plain tensors and containers"
            )
            raise CheckpointError(
                f"{path}: refused: the file carries a pickle that would import or run code ({what}). "
                "fishspine never executes code from a file; re-save the weights as a plain state_dict "
                "or as safetensors."
            ) from exc
        raise CheckpointError(f"{path}: a PyTorch file that cannot be read (truncated or corrupt?): {text}") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, struct.error) as exc:
        raise CheckpointError(f"{path}: a PyTorch file that cannot be read (truncated or corrupt?): {exc}") from exc


def _first_line_with(text: str, needle: str) -> str:
    for line in text.splitlines():
        if needle in line:
            return line.strip().rstrip(".")
    return ""


# --------------------------------------------------------------------------------------------
# Unwrapping containers


def unwrap_state_dict(obj: Any, source: str = "file") -> tuple[dict[str, torch.Tensor], str, dict[str, Any]]:
    """The backbone state_dict inside a loaded object, its format name, and extra metadata."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: holds a {type(obj).__name__}, not a state_dict or a checkpoint dict")
    meta: dict[str, Any] = {}
    fmt = "state_dict"
    sd: Mapping[str, Any] = obj
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        sd = obj["state_dict"]
        fmt = "checkpoint-dict"
        for k in ("epoch", "arch", "best_prec1"):
            if k in obj and isinstance(obj[k], (int, float, str)):
                meta[k] = obj[k]
        if isinstance(obj.get("meta"), Mapping):
            meta["mmdet_meta"] = {k: v for k, v in obj["meta"].items() if isinstance(v, (int, float, str))}
    elif "model" in obj and isinstance(obj["model"], Mapping) and not _looks_like_state_dict(obj):
        sd = obj["model"]
        fmt = "checkpoint-dict"
    if not _looks_like_state_dict(sd):
        raise CheckpointError(f"{source}: holds a dict that is not a state_dict (keys: {_preview(list(obj))})")
    keys = list(sd)
    if keys and all(k.startswith("module.") for k in keys):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
        fmt += "+module-prefix"
    if any(k.startswith("backbone.") for k in sd):
        dropped = sorted({k.split(".", 1)[0] for k in sd if not k.startswith("backbone.")})
        sd = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
        fmt = "mmdet-detector"
        meta["detector_parts_ignored"] = dropped
    return dict(sd), fmt, meta


def _looks_like_state_dict(d: Mapping[str, Any]) -> bool:
    return bool(d) and all(isinstance(k, str) for k in d) and any(isinstance(v, torch.Tensor) for v in d.values())


def _preview(items: list[Any]) -> str:
    shown = ", ".join(map(str, items[:_MAX_LISTED_KEYS]))
    return shown + (f" (+{len(items) - _MAX_LISTED_KEYS} more)" if len(items) > _MAX_LISTED_KEYS else "")


# --------------------------------------------------------------------------------------------
# Recognising the architecture


def expected_layout(variant: str, num_classes: int | None = None) -> dict[str, tuple[int, ...]]:
    """Key -> shape of variant's state_dict at width 1, built on the meta device (no memory, fast)."""
    kwargs = () if num_classes is None else (("num_classes", num_classes),)
    return _layout(variant, kwargs)


def diff_layout(state_dict: Mapping[str, torch.Tensor], variant: str, num_classes: int | None = None) -> KeyDiff:
    """Compare `state_dict` with the layout of `variant`."""
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    return _diff_shapes(shapes, expected_layout(variant, num_classes), variant)


def _accepts_num_classes(variant: str) -> bool:
    return "num_classes" in model_spec(variant).arguments


def identify(state_dict: Mapping[str, torch.Tensor]) -> tuple[KeyDiff, int | None]:
    """The closest registered variant (its KeyDiff) and the num_classes its classifier implies."""
    best: tuple[KeyDiff, int | None] | None = None
    for variant in list_models():
        diff = diff_layout(state_dict, variant)
        num_classes = None
        if diff.shape_mismatch and not (diff.missing or diff.unexpected) and _accepts_num_classes(variant):
            # A classifier trained for another number of classes: its leading dim tells how many.
            outs = {got[0] for _k, got, _exp in diff.shape_mismatch if got}
            if len(outs) == 1:
                n = outs.pop()
                candidate = diff_layout(state_dict, variant, n)
                if candidate.exact:
                    diff, num_classes = candidate, n
        if best is None or diff.distance < best[0].distance:
            best = (diff, num_classes)
        if diff.exact:
            return diff, num_classes
    assert best is not None
    return best


# --------------------------------------------------------------------------------------------
# Checking a fishspine header before anything is built


def _is_finite_number(value: Any) -> bool:
    # isfinite() of a 400-digit JSON integer overflows: whole numbers are finite anyway.
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _check_width(value: Any) -> str | None:
    if _is_finite_number(value) and 0 < value <= MAX_WIDTH:
        return None
    return f"must be a number in (0, {MAX_WIDTH:g}]"


def _check_num_classes(value: Any) -> str | None:
    # 0 and null both mean "no classifier" (create_model(..., num_classes=0) builds a headless model).
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_NUM_CLASSES):
        return None
    return f"must be a whole number from 1 to {MAX_NUM_CLASSES}, or 0 or null for a backbone without a classifier"


def _check_bn_eps(value: Any) -> str | None:
    if _is_finite_number(value) and 0 < value < 1:
        return None
    return "must be a number in (0, 1)"


def _check_plain_value(value: Any) -> str | None:
    if value is None or isinstance(value, (bool, str)) or _is_finite_number(value):
        return None
    return "must be a plain JSON value (number, string, true/false or null)"


_FIELD_CHECKS = {"width": _check_width, "num_classes": _check_num_classes, "bn_eps": _check_bn_eps}


def _builder_parameters(variant: str) -> list[str]:
    return list(model_spec(variant).arguments)


def build_arguments(header: Mapping[str, Any], source: str = "file") -> tuple[str, dict[str, Any]]:
    """The variant and builder arguments a fishspine header names, each checked for type and range.

    Nothing is built. Raises CheckpointError saying which field is wrong and what it may be.
    """
    if not isinstance(header, Mapping):
        raise CheckpointError(f"{source}: its fishspine header is a JSON {_json_kind(header)}, not an object")
    version = header.get("format_version", FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(
            f"{source}: its fishspine header has format_version {version!r}; it must be a whole number from 1"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{source}: written by a newer fishspine (format_version {version}; this version "
            f"reads up to {FORMAT_VERSION}); update fishspine to open it"
        )
    variant = header.get("variant")
    if variant is None:
        raise CheckpointError(f"{source}: its fishspine header names no variant (known: {', '.join(list_models())})")
    if not isinstance(variant, str) or variant not in list_models():
        raise CheckpointError(
            f"{source}: its fishspine header names variant {variant!r}, which this version "
            f"does not know (known: {', '.join(list_models())})"
        )
    config = header.get("config")
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{source}: its fishspine header's config is a JSON {_json_kind(config)}, not an object")
    accepted = _builder_parameters(variant)
    unknown = [k for k in config if k not in accepted]
    if unknown:
        raise CheckpointError(
            f"{source}: its fishspine header's config has {', '.join(map(str, unknown))}, "
            f"which {variant} does not take (it takes {', '.join(accepted)})"
        )
    kwargs = dict(config)
    for name, value in kwargs.items():
        problem = _FIELD_CHECKS.get(name, _check_plain_value)(value)
        if problem:
            raise CheckpointError(f"{source}: its fishspine header's config has {name} {value!r}, which {problem}")
    # The header repeats width and num_classes at the top for readers; they must agree with the config.
    for name in ("width", "num_classes"):
        if name not in header:
            continue
        value = header[name]
        problem = _FIELD_CHECKS[name](value)
        if problem:
            raise CheckpointError(f"{source}: its fishspine header has {name} {value!r}, which {problem}")
        if name not in accepted:
            if value is not None:
                raise CheckpointError(
                    f"{source}: its fishspine header has {name} {value!r}, but {variant} takes no {name}"
                )
        elif name not in kwargs:
            kwargs[name] = value
        elif value != kwargs[name]:
            raise CheckpointError(
                f"{source}: its fishspine header has {name} {value!r}, which disagrees with "
                f"its config ({name} {kwargs[name]!r})"
            )
    return variant, kwargs


@functools.lru_cache(maxsize=256)
def _layout(variant: str, build_kwargs: tuple[tuple[str, Any], ...]) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = create_model(variant, **dict(build_kwargs))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _diff_shapes(
    shapes: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]], variant: str
) -> KeyDiff:
    diff = KeyDiff(variant)
    diff.missing = sorted(k for k in expected if k not in shapes)
    diff.unexpected = sorted(k for k in shapes if k not in expected)
    diff.shape_mismatch = sorted(
        (k, tuple(shapes[k]), expected[k]) for k in expected if k in shapes and tuple(shapes[k]) != expected[k]
    )
    return diff


def _check_fishspine_layout(
    path: Path, shapes: Mapping[str, tuple[int, ...]], variant: str, kwargs: Mapping[str, Any]
) -> None:
    """Raise CheckpointError unless `shapes` are exactly those of `variant` built with `kwargs`.

    Compared on the meta device: nothing the size of the model is allocated, whatever the header says.
    """
    settings = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    try:
        expected = _layout(variant, tuple(sorted(kwargs.items())))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path}: its fishspine header has arguments ({settings}) that {variant} rejects: {exc}"
        ) from exc
    diff = _diff_shapes(shapes, expected, variant)
    if diff.exact:
        return
    message = f"{path}: weights do not fit the {variant} ({settings}) its header names: {diff.describe()}."
    closest = _closest_variant(shapes, kwargs)
    if closest is not None and closest.variant != variant and closest.distance < diff.distance:
        if closest.exact:
            message += f" Closest: {closest.variant} ({model_family(closest.variant)}), which they fit exactly."
        else:
            message += (
                f" Closest: {closest.variant} ({model_family(closest.variant)}), which differs by {closest.describe()}."
            )
    raise CheckpointError(message)


@functools.lru_cache(maxsize=32)
def _detector_layout(
    variant: str, build_kwargs: tuple[tuple[str, Any], ...], spec_items: tuple[tuple[str, Any], ...]
) -> dict[str, tuple[int, ...]]:
    spec = DetectorSpec(**{k: list(v) if isinstance(v, tuple) else v for k, v in spec_items})
    with torch.device("meta"):
        detector = detector_for(create_model(variant, **dict(build_kwargs)), spec)
    return {k: tuple(v.shape) for k, v in detector.state_dict().items()}


def _check_detector_layout(
    path: Path, shapes: Mapping[str, tuple[int, ...]], variant: str, kwargs: Mapping[str, Any], spec: DetectorSpec
) -> None:
    """Raise CheckpointError unless `shapes` are exactly those of the detector the header describes."""
    spec_items = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(spec.to_header().items()))
    try:
        expected = _detector_layout(variant, tuple(sorted(kwargs.items())), spec_items)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: its fishspine header describes a detector that cannot be built: {exc}") from exc
    diff = _diff_shapes(shapes, expected, variant)
    if not diff.exact:
        raise CheckpointError(
            f"{path}: weights do not fit the {variant} FCOS detector ({spec.num_classes} classes, "
            f"{spec.fpn_channels}-channel pyramid) its header names: {diff.describe()}."
        )


def _whole_number(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def detector_spec(header: Mapping[str, Any], source: str = "file") -> DetectorSpec | None:
    """The detector a fishspine header describes (None for a backbone alone), every field checked."""
    section = header.get("detector")
    if section is None:
        return None
    if not isinstance(section, Mapping):
        raise CheckpointError(
            f"{source}: its fishspine header's detector is a JSON {_json_kind(section)}, not an object"
        )
    known = set(DetectorSpec.__dataclass_fields__)
    unknown = sorted(str(k) for k in section if k not in known)
    if unknown:
        raise CheckpointError(
            f"{source}: its fishspine header's detector has {', '.join(unknown)}; "
            f"it may have {', '.join(sorted(known))}"
        )
    if section.get("head", "fcos") != "fcos":
        raise CheckpointError(
            f"{source}: its fishspine header's detector head is {section.get('head')!r}; this version opens 'fcos' only"
        )
    bounds = {
        "num_classes": (1, MAX_NUM_CLASSES),
        "image_size": (16, MAX_IMAGE_SIZE),
        "fpn_channels": (32, MAX_FPN_CHANNELS),
    }
    for name, (lo, hi) in bounds.items():
        if name not in section and name != "fpn_channels":
            raise CheckpointError(f"{source}: its fishspine header's detector names no {name}")
        if name in section and not _whole_number(section[name], lo, hi):
            raise CheckpointError(
                f"{source}: its fishspine header's detector has {name} {section[name]!r}, "
                f"which must be a whole number from {lo} to {hi}"
            )
    if section.get("fpn_channels", 128) % 32:
        raise CheckpointError(
            f"{source}: its fishspine header's detector has fpn_channels {section['fpn_channels']}, "
            "which must be a multiple of 32 (the head's group norm has 32 groups)"
        )
    n = section["num_classes"]
    categories = section.get("categories") or []
    if not isinstance(categories, list) or not all(_whole_number(c, 0, 2**31 - 1) for c in categories):
        raise CheckpointError(f"{source}: its fishspine header's detector categories must be a list of category ids")
    names = section.get("category_names") or []
    if not isinstance(names, list) or not all(isinstance(c, str) and len(c) <= 200 for c in names):
        raise CheckpointError(f"{source}: its fishspine header's detector category_names must be a list of names")
    for label, items in (("categories", categories), ("category_names", names)):
        if items and len(items) != n:
            raise CheckpointError(f"{source}: its fishspine header's detector has {len(items)} {label} for {n} classes")
    if len(set(categories)) != len(categories):
        raise CheckpointError(f"{source}: its fishspine header's detector categories repeat an id")
    return DetectorSpec(
        num_classes=n,
        image_size=section["image_size"],
        fpn_channels=section.get("fpn_channels", 128),
        categories=list(categories),
        category_names=list(names),
    )


def _closest_variant(shapes: Mapping[str, tuple[int, ...]], kwargs: Mapping[str, Any]) -> KeyDiff | None:
    """The registered variant whose layout, built with the arguments it takes from `kwargs`, is nearest."""
    best: KeyDiff | None = None
    for candidate in list_models():
        taken = {k: v for k, v in kwargs.items() if k in _builder_parameters(candidate)}
        try:
            expected = _layout(candidate, tuple(sorted(taken.items())))
        except (TypeError, ValueError, RuntimeError):
            continue
        diff = _diff_shapes(shapes, expected, candidate)
        if best is None or diff.distance < best.distance:
            best = diff
        if diff.exact:
            break
    return best


# --------------------------------------------------------------------------------------------
# Public entry points


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Open `path`, recognise its architecture from the file alone, and load it strictly.

    Raises CheckpointError naming the closest architecture and the keys that differ when the
    file fits none.
    """
    path = Path(path)
    raw, container, header = read_raw(path)
    if header:
        return _load_fishspine(path, raw, header, device)
    state_dict, fmt, meta = unwrap_state_dict(raw, str(path))
    diff, num_classes = identify(state_dict)
    if not diff.exact:
        raise CheckpointError(
            f"{path}: fits no known architecture. Closest: {diff.variant} "
            f"({model_family(diff.variant)}), which differs by {diff.describe()}."
        )
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    model = create_model(diff.variant, **kwargs)
    model.load_state_dict(state_dict, strict=True)
    model.to(device).eval()
    fmt_name = _official_format_name(model_family(diff.variant), fmt, container)
    meta.update({"width": 1.0, "num_classes": num_classes})
    return Checkpoint(model, diff.variant, model_family(diff.variant), fmt_name, path, meta)


def _official_format_name(family: str, fmt: str, container: str) -> str:
    if container == "safetensors":
        return "safetensors state_dict"
    table = {
        ("fishnet", "checkpoint-dict+module-prefix"): "FishNet authors' .tar",
        ("scnet", "state_dict"): "SCNet authors' .pth",
        ("resnet", "state_dict"): "torchvision state_dict",
        ("spinenet", "mmdet-detector"): "mmdetection SpineNet detector",
    }
    return table.get((family, fmt), f"{family} {fmt}")


def _load_fishspine(
    path: Path, tensors: dict[str, torch.Tensor], header: dict[str, Any], device: str | torch.device
) -> Checkpoint:
    # read_raw has checked the header and the file's shapes against it; this builds the real model.
    variant, kwargs = build_arguments(header, str(path))
    try:
        model = create_model(variant, **kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: its fishspine header has arguments {kwargs} that {variant} rejects: {exc}"
        ) from exc
    spec = detector_spec(header, str(path))
    detector = None if spec is None else detector_for(model, spec)
    try:
        (model if detector is None else detector).load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the {variant} its header names: {exc}") from exc
    model.to(device).eval()
    if detector is not None:
        detector.to(device).eval()
    return Checkpoint(model, variant, model_family(variant), FISHSPINE_FORMAT, path, dict(header), detector, spec)


def save_checkpoint(
    model: Backbone,
    path: str | Path,
    trained_on: str = "",
    *,
    detector: torch.nn.Module | None = None,
    detector_spec: DetectorSpec | None = None,
    **extra: Any,
) -> Path:
    """Save `model` in fishspine's format: safetensors plus a JSON header, written atomically.

    With `detector` (built over `model` by `detector_for(model, detector_spec)`) the whole detector is
    saved: backbone, pyramid and head, and the header's `detector` section says how to rebuild it.
    """
    from safetensors.torch import save_file

    from .atomic_files import atomic_path

    if (detector is None) != (detector_spec is None):
        raise ValueError("save_checkpoint: a detector is saved with its DetectorSpec (give both or neither)")
    if detector is not None and detector.backbone.body is not model:
        raise ValueError("save_checkpoint: the detector is not built over this backbone")
    if detector_spec is not None:
        extra["detector"] = detector_spec.to_header()
        extra["detector_params"] = sum(p.numel() for p in detector.parameters())
    if not model.variant:
        raise ValueError("save_checkpoint needs a model built with create_model (it records the variant)")
    header = {
        "format_version": FORMAT_VERSION,
        "family": model.family,
        "variant": model.variant,
        "config": dict(model.config),
        "width": float(model.config.get("width", 1.0)),
        "num_classes": model.config.get("num_classes"),
        "trained_on": trained_on,
        "params": sum(p.numel() for p in model.parameters()),
        **extra,
    }
    weights = (model if detector is None else detector).state_dict()
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_HEADER_KEY: json.dumps(header, default=str)})
    return path
