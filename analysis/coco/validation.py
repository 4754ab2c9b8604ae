"""Checking COCO ground-truth and result data before any evaluator sees it.

faster-coco-eval and pycocotools trust their input: a string score sorts wrongly, a short box is an
IndexError, an RLE whose counts overrun its mask is written past a C buffer. Everything here
runs first and either returns a fresh, normalised copy (only the fields evaluation reads, so the
evaluator may add its own keys without touching the caller's objects) or raises a `CocoError`
naming the file, the first offending entry (index and id) and what was expected.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

MAX_JSON_BYTES = 2 << 30  # COCO train2017 instances are ~450 MB; a bigger file is refused unread
MAX_INT_DIGITS = 20  # 2**63 has 19 digits; longer integer literals are refused before int() sees them
MAX_ID = 2**63 - 1  # the C++ engine keeps ids in int64
MAX_COORD = 1e7  # pixels; beyond this a box or polygon is garbage (and w*h loses precision)
MAX_MASK_SIDE = 100_000
MAX_RLE_TOKEN = 7  # chars per compressed count: 35 bits, more than any uint32 count needs
_RLE_STRING = re.compile(r"[0-o]*[0-O]")  # tokens of chars '0'..'o'; a count ends on a char < 'P'


class CocoError(ValueError):
    """A ground-truth or result file that cannot be evaluated; the message says why and what to do."""


class _Bad(Exception):
    """One field that is wrong: `text` says what it is and what was expected."""


def short_repr(value: Any, limit: int = 60) -> str:
    """A bounded description of any JSON-ish value (no recursion into deep nesting, no huge ints)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        if abs(value) < 10**30:
            return repr(value)
        return f"an integer of about {value.bit_length() * 0.30103:.0f} digits"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return repr(value[:limit]) + ("…" if len(value) > limit else "")
    if isinstance(value, (list, tuple)):
        inner = ", ".join(short_repr(v, 12) if not isinstance(v, (list, dict)) else type(v).__name__ for v in value[:4])
        return f"[{inner}{', …' if len(value) > 4 else ''}] (a list of {len(value)})"
    if isinstance(value, dict):
        keys = ", ".join(short_repr(k, 20) for k in list(value)[:4])
        return f"{{{keys}{', …' if len(value) > 4 else ''}}} (an object with {len(value)} keys)"
    return f"a {type(value).__name__}"


# ---------------------------------------------------------------------------------------- reading


def _refuse_constant(name: str) -> Any:
    raise _Bad(f"contains {name}, which is not a JSON number")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Bad(f"contains an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS} are accepted)")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Bad(f"contains the number {text[:40]}, which overflows a float")
    return value


def read_json_file(source: str | Path, what: str, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse a JSON file that must be a regular file of at most `max_bytes`; NaN, Infinity, overflowing
    floats, integers longer than MAX_INT_DIGITS and nesting too deep to parse all raise CocoError."""
    path = Path(source)
    try:
        info = os.stat(path)  # follows links: a link to /dev/zero is judged as the device
    except FileNotFoundError:
        raise CocoError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise CocoError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise CocoError(f"{what} {path}: is a folder; expected a COCO .json file")
    if not stat.S_ISREG(info.st_mode):
        raise CocoError(f"{what} {path}: is not a regular file (a pipe, socket or device); expected a COCO .json file")
    if info.st_size > max_bytes:
        raise CocoError(f"{what} {path}: {info.st_size:,} bytes, more than the {max_bytes:,} accepted")
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as exc:
        raise CocoError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from None
    if len(raw) > max_bytes:  # grew while we looked
        raise CocoError(f"{what} {path}: more than the {max_bytes:,} bytes accepted")
    if not raw.strip():
        raise CocoError(f"{what} {path}: is empty; expected a COCO .json file")
    # orjson refuses NaN, Infinity, overflowing floats and deep nesting as the checked parser below does,
    # and reads an integer past 64 bits as a float (never a slow or huge int), which the checks of ids,
    # counts and coordinates refuse. What orjson refuses goes to the checked parser for a message that
    # says what is wrong.
    import orjson

    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_constant=_refuse_constant, parse_int=_bounded_int, parse_float=_finite_float)
    except _Bad as exc:
        raise CocoError(f"{what} {path}: {exc}") from None
    except UnicodeDecodeError:
        raise CocoError(f"{what} {path}: not UTF-8 text; expected a COCO .json file") from None
    except json.JSONDecodeError as exc:
        raise CocoError(f"{what} {path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise CocoError(f"{what} {path}: nested too deeply to be a COCO file") from None
    except ValueError as exc:  # e.g. Python's own limit on integer string conversion
        raise CocoError(f"{what} {path}: not valid JSON ({exc})") from None


# ------------------------------------------------------------------------------------ field checks


def _is_number(v: Any) -> bool:
    t = type(v)
    if t is float or t is int:  # the JSON case, first: this runs for every coordinate of every detection
        return True
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _is_int(v: Any) -> bool:
    if type(v) is int:
        return True
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _id(v: Any) -> int:
    if not _is_int(v) or not 0 <= v <= MAX_ID:
        raise _Bad(f"is {short_repr(v)}; expected an integer id in [0, 2^63)")
    return int(v)


def _number(v: Any, lo: float = -MAX_COORD, hi: float = MAX_COORD, what: str = "a number") -> float:
    if not _is_number(v):
        raise _Bad(f"is {short_repr(v)}; expected {what}")
    try:
        f = float(v)
    except OverflowError:  # an int too large for a float
        f = math.inf
    if not lo <= f <= hi:  # also false for NaN
        raise _Bad(f"is {short_repr(v)}; expected {what} between {lo:g} and {hi:g}")
    return f


def _bbox(v: Any) -> list[float]:
    expected = "a list of 4 numbers [x, y, width, height] with width, height >= 0"
    if not isinstance(v, list) or len(v) != 4 or not all(_is_number(x) for x in v):
        raise _Bad(f"is {short_repr(v)}; expected {expected}")
    try:
        x, y, w, h = (float(c) for c in v)
    except OverflowError:  # an int too large for a float
        x = y = w = h = math.inf
    if not (
        -MAX_COORD <= x <= MAX_COORD and -MAX_COORD <= y <= MAX_COORD and 0 <= w <= MAX_COORD and 0 <= h <= MAX_COORD
    ):  # also false for NaN
        raise _Bad(f"is {short_repr(v)}; expected {expected}, each within ±{MAX_COORD:g}")
    return [x, y, w, h]


def _mask_size(v: Any) -> tuple[int, int]:
    if not isinstance(v, list) or len(v) != 2 or not all(_is_int(s) and 0 <= s <= MAX_MASK_SIDE for s in v):
        raise _Bad(f"RLE 'size' is {short_repr(v)}; expected [height, width], integers in [0, {MAX_MASK_SIDE}]")
    return int(v[0]), int(v[1])


def _segmentation(v: Any, image_hw: tuple[int, int] | None) -> Any:
    """A polygon list or an RLE, checked; `image_hw` is the image's (height, width) when known."""
    if isinstance(v, list):
        polygon = "a list of polygons, each a flat list of at least 6 numbers (x, y pairs)"
        if not v or len(v) > 10_000:
            raise _Bad(f"is {short_repr(v)}; expected {polygon}")
        out = []
        for poly in v:
            if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2 or not all(_is_number(c) for c in poly):
                raise _Bad(f"has a polygon {short_repr(poly)}; expected {polygon}")
            try:
                coords = [float(c) for c in poly]
            except OverflowError:
                coords = [math.inf]
            if not all(-MAX_COORD <= c <= MAX_COORD for c in coords):  # also false for NaN
                raise _Bad(f"has a polygon {short_repr(poly)}; expected finite coordinates within ±{MAX_COORD:g}")
            out.append(coords)
        if image_hw is None:
            raise _Bad("is a polygon, but its image has no 'height' and 'width' to draw it in")
        return out
    if isinstance(v, dict):
        if "size" not in v or "counts" not in v:
            raise _Bad(f"is {short_repr(v)}; expected polygons or an RLE {{'size': [h, w], 'counts': ...}}")
        h, w = _mask_size(v["size"])
        if image_hw is not None and (h, w) != tuple(image_hw):
            raise _Bad(f"RLE 'size' is [{h}, {w}] but its image is {image_hw[0]}x{image_hw[1]} (height x width)")
        counts = v["counts"]
        if isinstance(counts, bytes):  # pycocotools' encode() gives bytes; JSON files give str
            try:
                counts = counts.decode("ascii")
            except UnicodeDecodeError:
                raise _Bad("RLE 'counts' is bytes that are not a compressed COCO RLE string") from None
        if isinstance(counts, list):
            if not all(_is_int(c) and 0 <= c < 2**32 for c in counts):
                raise _Bad(f"RLE 'counts' is {short_repr(counts)}; expected run lengths, integers >= 0")
            if sum(counts) != h * w:
                raise _Bad(f"RLE 'counts' cover {sum(counts)} pixels but its size [{h}, {w}] has {h * w}")
            return {"size": [h, w], "counts": [int(c) for c in counts]}
        if isinstance(counts, str):
            if counts and _RLE_STRING.fullmatch(counts) is None:
                raise _Bad(f"RLE 'counts' {short_repr(counts)} is not a compressed COCO RLE string")
            return {"size": [h, w], "counts": counts}  # totals are checked for all strings at once
        raise _Bad(f"RLE 'counts' is {short_repr(counts)}; expected a list of run lengths or a compressed string")
    raise _Bad(f"is {short_repr(v)}; expected polygons or an RLE {{'size': [h, w], 'counts': ...}}")


def rle_string_totals(strings: list[str], chunk_chars: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """(pixels covered, all runs valid) per compressed RLE string, decoded with numpy in chunks of
    about `chunk_chars` characters.

    Mirrors pycocotools' rleFrString: each count is 5-bit groups, low first, continuation bit 0x20,
    sign bit 0x10 on the last group; from the third count on, each is a delta on the count two before.
    A run is valid when it is a uint32 and its token is at most MAX_RLE_TOKEN characters long.
    Strings must already match the RLE alphabet (see `_RLE_STRING`)."""
    n = len(strings)
    totals = np.zeros(n, np.int64)
    valid = np.ones(n, bool)
    lengths = np.fromiter((len(s) for s in strings), np.int64, n)
    ends = np.cumsum(lengths)
    begin = 0
    while begin < n:
        done = int(ends[begin - 1]) if begin else 0
        end = max(begin + 1, int(np.searchsorted(ends, done + chunk_chars, side="right")))
        if ends[end - 1] > done:
            totals[begin:end], valid[begin:end] = _rle_chunk(strings[begin:end], lengths[begin:end])
        begin = end
    return totals, valid


def _segmented_cumsum(values: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Running sums of `values` that restart wherever the (sorted) `segment` id changes."""
    if not len(values):
        return values
    sums = np.cumsum(values)
    new = np.concatenate(([True], segment[1:] != segment[:-1]))
    first = np.flatnonzero(new)
    return sums - (sums[first] - values[first])[np.cumsum(new) - 1]


def _rle_chunk(strings: list[str], lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(strings)
    valid = np.ones(n, bool)
    c = np.frombuffer("".join(strings).encode("ascii"), np.uint8) - np.uint8(48)
    ends = (c & 0x20) == 0
    starts = np.flatnonzero(np.concatenate(([True], ends[:-1])))
    token_lengths = np.diff(np.append(starts, len(c)))
    string_of_char = np.repeat(np.arange(n), lengths)
    tok_string = string_of_char[starts]
    valid[np.unique(tok_string[token_lengths > MAX_RLE_TOKEN])] = False
    pos = np.arange(len(c)) - np.repeat(starts, token_lengths)
    values = (c & 0x1F).astype(np.int64) << (5 * np.minimum(pos, MAX_RLE_TOKEN))
    x = np.add.reduceat(values, starts)
    negative = (c[starts + token_lengths - 1] & 0x10) != 0
    x -= np.where(negative, np.left_shift(1, 5 * np.minimum(token_lengths, MAX_RLE_TOKEN + 1)), 0)
    first_token = np.searchsorted(tok_string, np.arange(n))
    m = np.arange(len(x)) - first_token[tok_string]
    # from m = 3 on a count is a delta on the one two before: running sums along the odd counts and
    # along the even counts from m = 2, per string; m = 0 stands alone
    counts = x.copy()
    for chain in (np.flatnonzero(m % 2 == 1), np.flatnonzero((m % 2 == 0) & (m >= 2))):
        counts[chain] = _segmented_cumsum(x[chain], tok_string[chain])
    bad = (counts < 0) | (counts >= 2**32)
    valid[np.unique(tok_string[bad])] = False
    totals = np.bincount(tok_string, weights=np.clip(counts, 0, 2**32).astype(float), minlength=n)
    return totals.astype(np.int64), valid


# ------------------------------------------------------------------------------------ whole files


def _entries(data: dict, key: str, label: str) -> list:
    if key not in data:
        raise CocoError(
            f"{label}: not a COCO ground-truth file: no '{key}' list (needs 'images', 'annotations' and 'categories')"
        )
    value = data[key]
    if not isinstance(value, list):
        raise CocoError(f"{label}: '{key}' is {short_repr(value)}; expected a list of objects")
    return value


def _check_each(entries: list, label: str, kind: str, check: Callable[[dict], dict]) -> list[dict]:
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise CocoError(f"{label}: {kind}[{i}] is {short_repr(entry)}; expected an object")
        try:
            out.append(check(entry))
        except _Bad as exc:
            raise CocoError(f"{label}: {kind}[{i}]{_id_note(entry)} {exc}") from None
    return out


def _id_note(entry: dict) -> str:
    v = entry.get("id")
    return f" (id {int(v)})" if _is_int(v) and abs(v) < 10**30 else ""


_EXPECTED = {
    "id": "an integer id",
    "image_id": "the integer id of a ground-truth image",
    "category_id": "the integer id of a ground-truth category",
    "name": "a string",
    "bbox": "a list of 4 numbers [x, y, width, height]",
    "area": "a number >= 0 (the object's size in px²)",
    "score": "a number (the detection's confidence)",
    "segmentation": "polygons or an RLE {'size': [h, w], 'counts': ...} (segm evaluation needs one on each)",
}


def _field(entry: dict, key: str, check: Callable[..., Any], *args: Any) -> Any:
    if key not in entry:
        raise _Bad(f"lacks '{key}'; expected {_EXPECTED.get(key, 'it')}")
    try:
        return check(entry[key], *args)
    except _Bad as exc:
        raise _Bad(f"'{key}' {exc}") from None


def _check_rle_strings(out: list[dict], label: str, kind: str) -> None:
    where = [
        (i, d["segmentation"])
        for i, d in enumerate(out)
        if isinstance(d.get("segmentation"), dict) and isinstance(d["segmentation"]["counts"], str)
    ]
    if not where:
        return
    totals, valid = rle_string_totals([s["counts"] for _, s in where])
    for (i, seg), total, ok in zip(where, totals, valid):
        h, w = seg["size"]
        if not ok or total != h * w:
            what = "has a run that is negative or too long" if not ok else f"covers {total} pixels"
            raise CocoError(
                f"{label}: {kind}[{i}]{_id_note(out[i])} 'segmentation' RLE 'counts' {what}; "
                f"expected runs covering its size [{h}, {w}] = {h * w} pixels exactly"
            )


def validate_ground_truth(data: Any, label: str) -> dict:
    """A normalised copy of a COCO ground-truth dict (images, annotations, categories with the fields
    evaluation reads), or CocoError naming the first entry that is wrong."""
    if not isinstance(data, dict):
        raise CocoError(
            f"{label}: is {short_repr(data)}; a COCO ground-truth file is an object with "
            "'images', 'annotations' and 'categories'"
        )
    images_in, anns_in, cats_in = (_entries(data, k, label) for k in ("images", "annotations", "categories"))

    def image(e: dict) -> dict:
        out = {"id": _field(e, "id", _id)}
        for key in ("height", "width"):
            if key in e:
                out[key] = int(_field(e, key, _number, 0, MAX_MASK_SIDE, "a whole number of pixels"))
                if out[key] != e[key]:
                    raise _Bad(f"'{key}' is {short_repr(e[key])}; expected a whole number of pixels")
        if isinstance(e.get("file_name"), str):
            out["file_name"] = e["file_name"]
        return out

    def category(e: dict) -> dict:
        out = {"id": _field(e, "id", _id), "name": _field(e, "name", _string)}
        if isinstance(e.get("supercategory"), str):
            out["supercategory"] = e["supercategory"]
        return out

    images = _check_each(images_in, label, "images", image)
    categories = _check_each(cats_in, label, "categories", category)
    _unique(images, label, "images")
    _unique(categories, label, "categories")
    sizes = {im["id"]: (im["height"], im["width"]) if "height" in im and "width" in im else None for im in images}
    cat_ids = {c["id"] for c in categories}

    def annotation(e: dict) -> dict:
        out = {
            "id": _field(e, "id", _id),
            "image_id": _field(e, "image_id", _known, sizes, "image"),
            "category_id": _field(e, "category_id", _known, cat_ids, "category"),
            "bbox": _field(e, "bbox", _bbox),
            "area": _field(e, "area", _number, 0.0, MAX_COORD**2, "a number (px²)"),
        }
        out["iscrowd"] = _field(e, "iscrowd", _crowd) if "iscrowd" in e else 0
        if "segmentation" in e:
            out["segmentation"] = _field(e, "segmentation", _segmentation, sizes[out["image_id"]])
        return out

    annotations = _check_each(anns_in, label, "annotations", annotation)
    _unique(annotations, label, "annotations")
    _check_rle_strings(annotations, label, "annotations")
    return {"images": images, "annotations": annotations, "categories": categories}


def _string(v: Any) -> str:
    if not isinstance(v, str) or len(v) > 1000:
        raise _Bad(f"is {short_repr(v)}; expected a string (at most 1000 characters)")
    return v


def _crowd(v: Any) -> int:
    if not isinstance(v, (int, bool, np.integer)) or v not in (0, 1):
        raise _Bad(f"is {short_repr(v)}; expected 0 or 1")
    return int(v)


def _known(v: Any, known: Any, what: str) -> int:
    i = _id(v)
    if i not in known:
        raise _Bad(
            f"is {i}, which is not an image id of the ground truth (was it produced on another split?)"
            if what == "image"
            else f"is {i}, which is not a {what} id of the ground truth"
        )
    return i


def _unique(entries: list[dict], label: str, kind: str) -> None:
    seen: set[int] = set()
    for i, e in enumerate(entries):
        if e["id"] in seen:
            raise CocoError(f"{label}: {kind}[{i}] (id {e['id']}) repeats an id; expected each id once")
        seen.add(e["id"])


def _plain_box_results(data: list, sizes: Mapping[int, Any], cat_ids: set[int]) -> list[dict] | None:
    """`validate_results` for box detections as a JSON parser gives them (ints, floats, lists), checked
    in bulk: 4-5x faster on a val2017-sized file. None when any detection is not plainly valid; the
    per-detection checks then find the first wrong one and say what is wrong."""
    try:
        image_ids = [e["image_id"] for e in data]
        categories = [e["category_id"] for e in data]
        scores = [e["score"] for e in data]
        boxes = [e["bbox"] for e in data]
    except (KeyError, TypeError, IndexError):  # a field missing, or an entry that is no object
        return None
    if not (
        {*map(type, data)} <= {dict}
        and {*map(type, image_ids)} <= {int}  # never bool, which is no id
        and {*map(type, categories)} <= {int}
        and {*map(type, scores)} <= {int, float}
        and {*map(type, boxes)} <= {list}
        and {*map(len, boxes)} <= {4}
        and set(image_ids) <= sizes.keys()
        and set(categories) <= cat_ids
    ):
        return None
    coords = list(itertools.chain.from_iterable(boxes))
    if not {*map(type, coords)} <= {int, float}:
        return None
    try:
        score = np.array(scores, dtype=np.float64)
        xywh = np.array(coords, dtype=np.float64).reshape(-1, 4)
    except OverflowError:  # an integer past a float's range
        return None
    with np.errstate(invalid="ignore"):
        ok = (np.abs(score) <= 1e30).all() and (np.abs(xywh[:, :2]) <= MAX_COORD).all()
        ok = ok and ((xywh[:, 2:] >= 0) & (xywh[:, 2:] <= MAX_COORD)).all()  # NaN fails every comparison
    if not ok:
        return None
    return [
        {"image_id": i, "category_id": c, "score": sc, "bbox": bb}
        for i, c, sc, bb in zip(image_ids, categories, score.tolist(), xywh.tolist())
    ]


def validate_results(data: Any, gt: dict, iou_type: str, label: str) -> list[dict]:
    """A normalised copy of detections for the validated `gt` (image_id, category_id, score, bbox,
    segmentation), or CocoError naming the first detection that is wrong for `iou_type`."""
    if isinstance(data, dict) and "annotations" in data:
        data = data["annotations"]
    if not isinstance(data, list):
        raise CocoError(f"{label}: is {short_repr(data)}; a COCO result file is a JSON list of detections")
    sizes = {im["id"]: (im["height"], im["width"]) if "height" in im and "width" in im else None for im in gt["images"]}
    cat_ids = {c["id"] for c in gt["categories"]}
    # faster-coco-eval and pycocotools size every detection by the first one's kind: a box when it has one
    with_box = bool(data) and isinstance(data[0], dict) and "bbox" in data[0]
    if iou_type == "bbox":
        fast = _plain_box_results(data, sizes, cat_ids)
        if fast is not None:
            return fast

    def detection(e: dict) -> dict:
        out = {
            "image_id": _field(e, "image_id", _known, sizes, "image"),
            "category_id": _field(e, "category_id", _known, cat_ids, "category"),
            "score": _field(e, "score", _number, -1e30, 1e30, "a finite number"),
        }
        if iou_type == "bbox" or with_box:
            if "bbox" not in e and iou_type == "segm":
                raise _Bad(
                    "lacks 'bbox' while the first detection has one (the evaluators then size every "
                    "detection by its box); give all or none a 'bbox'"
                )
            out["bbox"] = _field(e, "bbox", _bbox)
        if iou_type == "segm":
            out["segmentation"] = _field(e, "segmentation", _segmentation, sizes[out["image_id"]])
            if isinstance(out["segmentation"], list) and "bbox" not in out:
                raise _Bad(
                    "'segmentation' is a polygon and there is no 'bbox'; segm results are RLEs, "
                    "or polygons with a 'bbox'"
                )
        return out

    out = _check_each(data, label, "detection", detection)
    _check_rle_strings(out, label, "detection")
    return out


def require_segmentation(gt: dict, label: str) -> None:
    """CocoError unless every ground-truth annotation has a 'segmentation' (segm evaluation needs it)."""
    for i, a in enumerate(gt["annotations"]):
        if "segmentation" not in a:
            raise CocoError(
                f"{label}: annotations[{i}] (id {a['id']}) lacks 'segmentation'; "
                "segm evaluation needs a polygon or RLE for every ground-truth object"
            )
