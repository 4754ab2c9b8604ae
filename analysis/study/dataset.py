"""The images of a study: an image folder or a COCO split, in a fixed order, each as a square input.

The order is fixed (sorted paths, or the split's images by id) because a study cuts the list into
chunks that ranks share out and that a resumed run skips: the same list must give the same chunks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fishspine.analysis.images import IMAGE_SUFFIXES, file_in_folder, load_image


class StudyInputError(ValueError):
    """The images of a study cannot be listed: the message names the file and what to do."""


def image_folder(folder: str | Path, limit: int | None = None) -> list[Path]:
    """The image files under `folder` (recursively, by suffix), sorted; the first `limit` of them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StudyInputError(f"{folder}: not a folder of images")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise StudyInputError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in it")
    return paths[:limit] if limit else paths


def coco_split(annotations: str | Path, images: str | Path, limit: int | None = None) -> list[Path]:
    """The images of a COCO split (ground-truth json, image folder), by image id; the first `limit`."""
    from fishspine.analysis.coco.validation import CocoError, read_json_file, validate_ground_truth

    try:
        gt = validate_ground_truth(read_json_file(annotations, "ground truth"), str(annotations))
    except CocoError as exc:
        raise StudyInputError(str(exc)) from exc
    root = Path(images)
    if not root.is_dir():
        raise StudyInputError(f"{root}: not a folder (--images names the folder of the split's image files)")
    paths = []
    for entry in sorted(gt["images"], key=lambda e: e["id"]):
        name = entry.get("file_name")
        if not isinstance(name, str) or not name:
            raise StudyInputError(f"{annotations}: image id {entry['id']} has no file_name")
        path = file_in_folder(root, name)
        if path is None:
            raise StudyInputError(f"{annotations}: image id {entry['id']}: file_name {name!r} leaves the image folder")
        paths.append(path)
    if not paths:
        raise StudyInputError(f"{annotations}: the split lists no images")
    return paths[:limit] if limit else paths


def square_input(pixels: np.ndarray, size: int) -> np.ndarray:
    """`pixels` (RGB uint8) scaled so the shorter side is `size`, then the centre `size` x `size` crop.

    A study averages maps over images, so every image enters at the same square size.
    """
    from PIL import Image

    h, w = pixels.shape[:2]
    scale = size / min(h, w)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    resized = np.asarray(Image.fromarray(pixels).resize((new_w, new_h), Image.BILINEAR))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[top : top + size, left : left + size]


def load_square(path: str | Path, size: int) -> np.ndarray:
    """The image at `path` as a `size` x `size` RGB array (ImageError naming the file otherwise)."""
    return square_input(load_image(path), size)
