"""A generated COCO-format detection dataset with instance masks, for the demo and for tests.

Images show textured, coloured shapes (the categories) on cluttered backgrounds (noise, stripes and
shape-less blobs that are not objects). Object sizes follow COCO's mix over its three ranges
(about 41% small < 32², 34% medium, 24% large > 96², by mask area). Later objects occlude earlier
ones; masks, areas and boxes are of the visible part, and objects left mostly hidden are dropped.
Everything is deterministic for a seed. The json loads with pycocotools unchanged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fishspine.analysis.jobs import Job, Progress, run_job

CATEGORIES = ("circle", "square", "triangle", "star", "ring", "ellipse", "cross", "hexagon")
SIZE_MIX = ((0.41, 6.0, 31.0), (0.35, 33.0, 94.0), (0.24, 98.0, 220.0))  # (share, min side, max side) in px
MIN_VISIBLE = 0.5  # objects less visible than this are dropped (occluded)


@dataclass(frozen=True)
class SynthConfig:
    """What to generate."""

    train: int = 400
    val: int = 100
    image_size: int = 320
    objects_per_image: float = 6.0
    seed: int = 0


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    def ring(n: int, radii: list[float]) -> list[tuple[float, float]]:
        return [
            (
                cx + radii[i % len(radii)] * math.cos(angle + 2 * math.pi * i / n),
                cy + radii[i % len(radii)] * math.sin(angle + 2 * math.pi * i / n),
            )
            for i in range(n)
        ]

    if kind == "square":
        return ring(4, [r])
    if kind == "triangle":
        return ring(3, [r])
    if kind == "hexagon":
        return ring(6, [r])
    if kind == "star":
        return ring(10, [r, 0.45 * r])
    if kind == "cross":
        w = 0.35 * r
        pts = [
            (-w, -r),
            (w, -r),
            (w, -w),
            (r, -w),
            (r, w),
            (w, w),
            (w, r),
            (-w, r),
            (-w, w),
            (-r, w),
            (-r, -w),
            (-w, -w),
        ]
        c, s = math.cos(angle), math.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]
    raise ValueError(kind)


def _shape_mask(kind: str, size: int, cx: float, cy: float, r: float, angle: float, rng) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(img)
    if kind == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    elif kind == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
        d.ellipse([cx - 0.55 * r, cy - 0.55 * r, cx + 0.55 * r, cy + 0.55 * r], fill=0)
    elif kind == "ellipse":
        img2 = Image.new("L", (size * 2, size * 2), 0)  # draw large, rotate, crop: a rotated ellipse
        d2 = ImageDraw.Draw(img2)
        d2.ellipse([size - r, size - 0.5 * r, size + r, size + 0.5 * r], fill=1)
        img2 = img2.rotate(math.degrees(angle), center=(size, size))
        img.paste(img2.crop((int(size - cx), int(size - cy), int(size - cx) + size, int(size - cy) + size)))
    else:
        d.polygon(_polygon(kind, cx, cy, r, angle), fill=1)
    return np.asarray(img, dtype=bool)


def _texture(size: int, rng, base: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    f = rng.uniform(4, 30)
    pattern = 0.5 + 0.5 * np.sin(
        2 * np.pi * f * (xx * math.cos(rng.uniform(0, 3.14)) + yy * math.sin(rng.uniform(0, 3.14)))
    )
    tex = base[None, None, :] * (0.75 + 0.25 * pattern[..., None])
    return np.clip(tex + rng.normal(0, 0.03, tex.shape), 0, 1)


def _background(size: int, rng) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(0.2, 0.8, 3), rng.uniform(0.2, 0.8, 3)
    t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))[..., None]
    img = c0 * (1 - t) + c1 * t
    img = img + 0.08 * np.sin(2 * np.pi * rng.uniform(2, 12) * xx)[..., None] * rng.uniform(-1, 1, 3)
    for _ in range(rng.integers(3, 9)):  # clutter: soft blobs that are not objects
        cx, cy, s = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.03, 0.2)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))[..., None]
        img = img * (1 - 0.5 * blob) + 0.5 * blob * rng.uniform(0, 1, 3)
    return np.clip(img + rng.normal(0, 0.04, img.shape), 0, 1)


def _side(rng) -> float:
    shares = [s for s, _, _ in SIZE_MIX]
    _, lo, hi = SIZE_MIX[rng.choice(len(SIZE_MIX), p=np.array(shares) / sum(shares))]
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def generate_image(size: int, objects: float, rng) -> tuple[np.ndarray, list[dict]]:
    """One RGB uint8 image and its objects ({category_id, mask}), visible parts only."""
    img = _background(size, rng)
    placed: list[tuple[int, np.ndarray]] = []
    for _ in range(max(1, rng.poisson(objects))):
        kind_index = int(rng.integers(len(CATEGORIES)))
        side = min(_side(rng), size * 0.8)
        # A shape's mask area is about side² when r is chosen per kind.
        r = (
            side
            / {
                "circle": 1.77,
                "ring": 1.49,
                "ellipse": 1.25,
                "square": 1.41,
                "triangle": 1.14,
                "star": 1.06,
                "cross": 1.37,
                "hexagon": 1.61,
            }[CATEGORIES[kind_index]]
        )
        cx, cy = rng.uniform(r * 0.5, size - r * 0.5), rng.uniform(r * 0.5, size - r * 0.5)
        mask = _shape_mask(CATEGORIES[kind_index], size, cx, cy, r, rng.uniform(0, 2 * math.pi), rng)
        if mask.sum() < 12:
            continue
        img[mask] = _texture(size, rng, rng.uniform(0.05, 0.95, 3))[mask]
        placed = [(k, m & ~mask) for k, m in placed] + [(kind_index, mask)]
    objs = []
    for k, m in placed:
        objs.append({"category_id": k + 1, "mask": m})
    return (img * 255).astype(np.uint8), objs


def _annotation(obj: dict, full_area: int | None, ann_id: int, image_id: int) -> dict | None:
    from pycocotools import mask as mask_utils

    m = obj["mask"]
    area = int(m.sum())
    if area < 4:
        return None
    ys, xs = np.nonzero(m)
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    x0, y0 = int(xs.min()), int(ys.min())
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": obj["category_id"],
        "segmentation": rle,
        "area": float(area),
        "bbox": [float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1)],
        "iscrowd": 0,
    }


def iter_synth(out: str | Path, config: SynthConfig = SynthConfig()) -> Job[dict]:
    """A job: write the dataset under `out` (train/, val/, annotations/); returns a summary."""
    from PIL import Image

    out = Path(out)
    total = config.train + config.val
    done = 0
    summary: dict = {"root": str(out), "splits": {}}
    for split, count, offset in (("train", config.train, 0), ("val", config.val, 1_000_000)):
        (out / split).mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for i in range(count):
            rng = np.random.default_rng([config.seed, offset + i])
            img, objs = generate_image(config.image_size, config.objects_per_image, rng)
            name = f"{split}_{i:06d}.png"
            Image.fromarray(img).save(out / split / name)
            image_id = i + 1
            images.append({"id": image_id, "file_name": name, "width": config.image_size, "height": config.image_size})
            for obj in objs:
                ann = _annotation(obj, None, len(anns) + 1, image_id)
                if ann is not None:
                    anns.append(ann)
            done += 1
            yield Progress(done, total, f"{split} {i + 1}/{count}")
        gt = {
            "info": {"description": "fishspine synthetic shapes", "seed": config.seed},
            "images": images,
            "annotations": anns,
            "categories": [{"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(CATEGORIES)],
        }
        (out / "annotations").mkdir(exist_ok=True)
        path = out / "annotations" / f"instances_{split}.json"
        path.write_text(json.dumps(gt))
        areas = np.array([a["area"] for a in anns]) if anns else np.zeros(0)
        summary["splits"][split] = {
            "images": count,
            "objects": len(anns),
            "annotations": str(path),
            "small": float(np.mean(areas < 32**2)) if len(areas) else 0.0,
            "medium": float(np.mean((areas >= 32**2) & (areas < 96**2))) if len(areas) else 0.0,
            "large": float(np.mean(areas >= 96**2)) if len(areas) else 0.0,
        }
    return summary


def synthesize(out: str | Path, config: SynthConfig = SynthConfig()) -> dict:
    """Write the dataset and return its summary (objects per split, share of each size range)."""
    return run_job(iter_synth(out, config))
