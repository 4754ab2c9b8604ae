"""A corpus of bad input files: malformed COCO files, bad session files, things that are not images
or checkpoints (a FIFO, a folder named like a file, a link to /dev/zero, an empty file, a truncated
PNG). Each `write_*` function writes its cases into a folder and returns {case name: path}.

Run as a script to write the whole corpus somewhere to try by hand:
    python tests/bad_inputs.py /tmp/bad
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

NESTING = 100_000  # deeper than json's recursion limit


def small_coco(with_masks: bool = True) -> tuple[dict, list[dict]]:
    """A valid ground truth (3 images, 2 categories, masks) and detections for it."""
    from fishspine.analysis.coco.synthetic import synthetic_coco

    return synthetic_coco(3, n_categories=2, dets_per_image=4, seed=3, with_masks=with_masks)


def compress_rle(counts: list[int]) -> str:
    """COCO's compressed RLE string of run lengths (the inverse of pycocotools' rleFrString)."""
    out = []
    for m, count in enumerate(counts):
        x = count - counts[m - 2] if m > 2 else count
        while True:
            c = x & 0x1F
            x >>= 5
            more = not (x == 0 and not c & 0x10 or x == -1 and c & 0x10)
            out.append(chr(c + 48 + (0x20 if more else 0)))
            if not more:
                break
    return "".join(out)


def _set(path: tuple, value: Any) -> Callable[[Any], Any]:
    """A change that puts `value` at `path` (keys and indices) of a copy of the data."""

    def change(data: Any) -> Any:
        out = copy.deepcopy(data)
        target = out
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return out

    return change


def _drop(path: tuple) -> Callable[[Any], Any]:
    def change(data: Any) -> Any:
        out = copy.deepcopy(data)
        target = out
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
        return out

    return change


# name -> change to the valid ground truth; every one must be refused
GT_CHANGES: dict[str, Callable[[Any], Any]] = {
    "gt_list_not_object": lambda gt: [gt],
    "gt_missing_annotations": _drop(("annotations",)),
    "gt_images_is_object": _set(("images",), {"id": 1}),
    "gt_image_is_list": _set(("images", 0), [1, 640, 640]),
    "gt_image_id_list": _set(("images", 0, "id"), [1]),
    "gt_image_id_string": _set(("images", 1, "id"), "2"),
    "gt_duplicate_image_id": _set(("images", 1, "id"), 1),
    "gt_ann_missing_bbox": _drop(("annotations", 0, "bbox")),
    "gt_ann_short_bbox": _set(("annotations", 0, "bbox"), [1, 2, 3]),
    "gt_ann_string_bbox": _set(("annotations", 0, "bbox"), "1,2,3,4"),
    "gt_ann_bbox_strings": _set(("annotations", 0, "bbox"), ["1", "2", "3", "4"]),
    "gt_ann_negative_width": _set(("annotations", 0, "bbox"), [1, 2, -3, 4]),
    "gt_ann_area_string": _set(("annotations", 0, "area"), "120.5"),
    "gt_ann_area_negative": _set(("annotations", 0, "area"), -5),
    "gt_ann_area_null": _set(("annotations", 0, "area"), None),
    "gt_ann_unknown_image": _set(("annotations", 0, "image_id"), 999),
    "gt_ann_unknown_category": _set(("annotations", 0, "category_id"), 77),
    "gt_ann_id_list": _set(("annotations", 0, "id"), [1, 2]),
    "gt_ann_iscrowd_2": _set(("annotations", 0, "iscrowd"), 2),
    "gt_ann_polygon_short": _set(("annotations", 0, "segmentation"), [[1, 2, 3, 4]]),
    "gt_ann_polygon_strings": _set(("annotations", 0, "segmentation"), [["a", "b", "c", "d", "e", "f"]]),
    "gt_ann_rle_overrun": _set(("annotations", 0, "segmentation"), {"size": [640, 640], "counts": [0, 640 * 640 + 5]}),
    "gt_ann_rle_string_overrun": _set(
        ("annotations", 0, "segmentation"), {"size": [640, 640], "counts": compress_rle([0, 640 * 640 + 10])}
    ),
    "gt_ann_rle_bad_chars": _set(("annotations", 0, "segmentation"), {"size": [640, 640], "counts": "\x01\x02~~"}),
    "gt_ann_rle_wrong_size": _set(("annotations", 0, "segmentation"), {"size": [4, 4], "counts": [16]}),
    "gt_category_no_name": _drop(("categories", 0, "name")),
    "gt_category_id_float": _set(("categories", 0, "id"), 1.5),
}

# name -> change to the valid detections; every one must be refused (for `iou_type`)
DT_CHANGES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "dt_object_not_list": ("bbox", lambda d: {"detections": d}),
    "dt_entry_is_list": ("bbox", _set((0,), [1, 1, [0, 0, 1, 1], 0.5])),
    "dt_score_null": ("bbox", _set((0, "score"), None)),
    "dt_score_string": ("bbox", _set((0, "score"), "0.9")),
    "dt_score_list": ("bbox", _set((1, "score"), [0.9])),
    "dt_missing_score": ("bbox", _drop((0, "score"))),
    "dt_short_bbox": ("bbox", _set((0, "bbox"), [1, 2])),
    "dt_string_bbox": ("bbox", _set((2, "bbox"), "box")),
    "dt_bbox_null": ("bbox", _set((0, "bbox"), None)),
    "dt_unknown_image": ("bbox", _set((0, "image_id"), 4242)),
    "dt_unknown_category": ("bbox", _set((0, "category_id"), 99)),
    "dt_image_id_list": ("bbox", _set((0, "image_id"), [1])),
    "dt_image_id_bool": ("bbox", _set((0, "image_id"), True)),
    "dt_missing_segmentation": ("segm", _drop((0, "segmentation"))),
    "dt_rle_overrun": ("segm", _set((0, "segmentation"), {"size": [640, 640], "counts": [10, 640 * 640]})),
    "dt_rle_string_overrun": ("segm", _set((0, "segmentation"), {"size": [640, 640], "counts": "PPPPPPPPPPPP0"})),
    "dt_rle_negative_run": ("segm", _set((0, "segmentation"), {"size": [640, 640], "counts": [-5, 640 * 640 + 5]})),
    "dt_segm_mixed_boxes": ("segm", _drop((1, "bbox"))),
}

# name -> the raw text of a broken JSON file (what a parser sees before any structure)
RAW_JSON: dict[str, Callable[[dict, list], str]] = {
    "nan_literal": lambda gt, dt: json.dumps(dt).replace(str(dt[0]["score"]), "NaN", 1),
    "infinity_literal": lambda gt, dt: json.dumps(dt).replace(str(dt[0]["score"]), "Infinity", 1),
    "float_overflow": lambda gt, dt: json.dumps(dt).replace(str(dt[0]["score"]), "1e400", 1),
    "huge_integer": lambda gt, dt: json.dumps(dt).replace(
        f'"image_id": {dt[0]["image_id"]}', '"image_id": ' + "9" * 5000, 1
    ),
    "deep_nesting": lambda gt, dt: "[" * NESTING + "]" * NESTING,
    "not_json": lambda gt, dt: "{this is not json",
    "binary": lambda gt, dt: "\udcff\udcfe\x00\x01",
    "empty_text": lambda gt, dt: "",
}


def _write_text(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    return path


def write_special_files(folder: Path, suffix: str) -> dict[str, Path]:
    """Files that are not what their name says: a FIFO, a folder, a link to /dev/zero, 0 bytes, text."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    fifo = folder / f"fifo{suffix}"
    if hasattr(os, "mkfifo") and not fifo.exists():
        os.mkfifo(fifo)
    if fifo.exists():
        out["fifo"] = fifo
    (folder / f"folder{suffix}").mkdir(exist_ok=True)
    out["folder"] = folder / f"folder{suffix}"
    zero = folder / f"dev_zero{suffix}"
    if Path("/dev/zero").exists() and not zero.is_symlink():
        zero.symlink_to("/dev/zero")
    if zero.is_symlink():
        out["dev_zero_link"] = zero
    out["empty"] = _write_text(folder / f"empty{suffix}", "")
    out["text"] = _write_text(folder / f"text{suffix}", "hello, this is not what the name says\n")
    out["missing"] = folder / f"missing{suffix}"
    return out


def write_bad_coco(folder: Path) -> tuple[Path, Path, dict[str, tuple[str, Path, str]]]:
    """(valid gt path, valid detections path, {case: (role "gt"/"dt", path, iou_type)})."""
    folder.mkdir(parents=True, exist_ok=True)
    gt, dt = small_coco()
    good_gt = _write_text(folder / "good_gt.json", json.dumps(gt))
    good_dt = _write_text(folder / "good_dt.json", json.dumps(dt))
    cases: dict[str, tuple[str, Path, str]] = {}
    for name, change in GT_CHANGES.items():
        cases[name] = ("gt", _write_text(folder / f"{name}.json", json.dumps(change(gt))), "segm")
    for name, (iou_type, change) in DT_CHANGES.items():
        cases[name] = ("dt", _write_text(folder / f"{name}.json", json.dumps(change(dt))), iou_type)
    for name, make in RAW_JSON.items():
        for role in ("gt", "dt"):
            cases[f"{role}_{name}"] = (role, _write_text(folder / f"{role}_{name}.json", make(gt, dt)), "bbox")
    for name, path in write_special_files(folder / "special", ".json").items():
        for role in ("gt", "dt"):
            cases[f"{role}_{name}"] = (role, path, "bbox")
    return good_gt, good_dt, cases


def write_bad_images(folder: Path) -> dict[str, Path]:
    """Image names that hold no usable image."""
    import numpy as np
    from PIL import Image

    out = write_special_files(folder, ".png")
    good = folder / "good.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(good)
    data = good.read_bytes()
    out["truncated_png"] = folder / "truncated.png"
    out["truncated_png"].write_bytes(data[: len(data) // 2])
    out["png_header_only"] = folder / "header_only.png"
    out["png_header_only"].write_bytes(data[:16])
    return out


def write_bad_checkpoints(folder: Path) -> dict[str, Path]:
    """Checkpoint names that hold no usable checkpoint."""
    out = write_special_files(folder, ".pth")
    out["json_as_pth"] = _write_text(folder / "json.pth", '{"state_dict": 1}')
    return out


def valid_session() -> dict[str, Any]:
    """A session as the app saves it."""
    return {
        "fishspine_session": 1,
        "models": [{"label": "ResNet-50", "source": "zoo:resnet50:0.25"}],
        "images": ["/tmp/cat.png"],
        "selected_image": 0,
        "settings": {
            "device": "auto",
            "precision": "float32",
            "image_size": 384,
            "reduction": "mean_abs",
            "normalisation": "block",
            "cam_method": "gradcam",
            "class_index": None,
            "gradient_which": "output",
            "gallery_rows": 8,
            "graph_color_by": "",
            "coco_gt": "",
            "coco_results": {},
            "coco_baseline": "",
        },
    }


# name -> change to the valid session; every one must be refused
SESSION_CHANGES: dict[str, Callable[[Any], Any]] = {
    "session_list": lambda s: [s],
    "session_wrong_version": _set(("fishspine_session",), 99),
    "session_device_meta": _set(("settings", "device"), "meta"),
    "session_device_number": _set(("settings", "device"), 0),
    "session_device_cuda_word": _set(("settings", "device"), "cuda:x"),
    "session_precision": _set(("settings", "precision"), "fp8"),
    "session_image_size_string": _set(("settings", "image_size"), "384"),
    "session_image_size_huge": _set(("settings", "image_size"), 10**9),
    "session_image_size_bool": _set(("settings", "image_size"), True),
    "session_reduction": _set(("settings", "reduction"), "median"),
    "session_class_negative": _set(("settings", "class_index"), -1),
    "session_rows_zero": _set(("settings", "gallery_rows"), 0),
    "session_coco_results_list": _set(("settings", "coco_results"), ["a.json"]),
    "session_coco_results_value": _set(("settings", "coco_results"), {"a": 1}),
    "session_settings_list": _set(("settings",), [1, 2]),
    "session_models_object": _set(("models",), {"label": "x"}),
    "session_model_no_source": _set(("models", 0), {"label": "x"}),
    "session_model_source_int": _set(("models", 0, "source"), 5),
    "session_zoo_unknown": _set(("models", 0, "source"), "zoo:notamodel:1.0"),
    "session_zoo_width_zero": _set(("models", 0, "source"), "zoo:resnet50:0"),
    "session_zoo_width_nan": _set(("models", 0, "source"), "zoo:resnet50:nan"),
    "session_zoo_width_huge": _set(("models", 0, "source"), "zoo:resnet50:1000"),
    "session_zoo_too_few_parts": _set(("models", 0, "source"), "zoo:resnet50"),
    "session_label_too_long": _set(("models", 0, "label"), "x" * 5000),
    "session_images_string": _set(("images",), "/tmp/cat.png"),
    "session_image_int": _set(("images", 0), 3),
    "session_selected_string": _set(("selected_image",), "0"),
}


# name -> change whose keys the app does not know: loaded with a warning, the keys ignored
SESSION_IGNORED: dict[str, Callable[[Any], Any]] = {
    "session_dunder_class": _set(("settings", "__class__"), "x"),
    "session_dunder_dict": _set(("settings", "__dict__"), {}),
    "session_unknown_setting": _set(("settings", "colour"), "blue"),
    "session_unknown_top_level": _set(("window",), {"x": 1}),
}


def write_bad_sessions(folder: Path) -> dict[str, Path]:
    """Session files the app must refuse with a message (not crash, not half-apply)."""
    folder.mkdir(parents=True, exist_ok=True)
    good = valid_session()
    out = {
        name: _write_text(folder / f"{name}.fishspine", json.dumps(change(good)))
        for name, change in SESSION_CHANGES.items()
    }
    for name, make in RAW_JSON.items():
        text = (
            make({}, [{"score": 0.5, "image_id": 1}])
            if name not in ("nan_literal", "infinity_literal")
            else json.dumps(good).replace("384", "NaN" if name == "nan_literal" else "Infinity")
        )
        out[f"session_{name}"] = _write_text(folder / f"session_{name}.fishspine", text)
    for name, path in write_special_files(folder / "special", ".fishspine").items():
        out[f"session_{name}"] = path
    return out


if __name__ == "__main__":  # pragma: no cover
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "bad_inputs")
    _, _, coco = write_bad_coco(root / "coco")
    images = write_bad_images(root / "images")
    ckpts = write_bad_checkpoints(root / "checkpoints")
    sessions = write_bad_sessions(root / "sessions")
    print(f"{len(coco)} COCO, {len(images)} image, {len(ckpts)} checkpoint, {len(sessions)} session cases in {root}")
