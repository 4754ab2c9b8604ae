"""Random COCO-format ground truth and detections, for tests and the evaluation benchmark.

Object sizes follow COCO's mix (about 41% small, 34% medium, 24% large); detections are jittered
copies of ground truth plus false positives, with scores; some ground truth is crowd.
"""

from __future__ import annotations

import numpy as np


def synthetic_coco(
    n_images: int = 100,
    n_categories: int = 8,
    objects_per_image: float = 7.3,
    dets_per_image: int = 100,
    crowd_fraction: float = 0.02,
    seed: int = 0,
    image_size: int = 640,
    with_masks: bool = False,
) -> tuple[dict, list[dict]]:
    """(ground-truth dict, detection list)."""
    rng = np.random.default_rng(seed)
    images = [
        {"id": i + 1, "width": image_size, "height": image_size, "file_name": f"{i + 1:06d}.jpg"}
        for i in range(n_images)
    ]
    cats = [{"id": c + 1, "name": f"class{c + 1}", "supercategory": "shape"} for c in range(n_categories)]
    anns, dets = [], []
    for im in images:
        n = rng.poisson(objects_per_image)
        sides = (
            np.exp(
                rng.choice(
                    [
                        rng.uniform(np.log(4), np.log(32)),
                        rng.uniform(np.log(32), np.log(96)),
                        rng.uniform(np.log(96), np.log(400)),
                    ],
                    p=[0.41, 0.35, 0.24],
                    size=n,
                )
            )
            if n
            else np.zeros(0)
        )
        for side in sides:
            w, h = side * rng.uniform(0.6, 1.4), side * rng.uniform(0.6, 1.4)
            w, h = min(w, image_size - 1), min(h, image_size - 1)
            x, y = rng.uniform(0, image_size - w), rng.uniform(0, image_size - h)
            cat = int(rng.integers(1, n_categories + 1))
            ann = {
                "id": len(anns) + 1,
                "image_id": im["id"],
                "category_id": cat,
                "bbox": [x, y, w, h],
                "area": float(w * h),
                "iscrowd": int(rng.random() < crowd_fraction),
            }
            if with_masks:
                ann["segmentation"] = [[x, y, x + w, y, x + w * 0.8, y + h, x, y + h * 0.7]]
                ann["area"] = float(w * h - 0.5 * (0.2 * w * h) - 0.5 * (0.3 * w * h))
            anns.append(ann)
            if rng.random() < 0.8:  # a detection of it, jittered
                j = rng.normal(0, 0.08, 4) * [w, h, w, h]
                bx = [x + j[0], y + j[1], max(1.0, w + j[2]), max(1.0, h + j[3])]
                det = {
                    "image_id": im["id"],
                    "category_id": cat if rng.random() < 0.9 else int(rng.integers(1, n_categories + 1)),
                    "bbox": bx,
                    "score": float(rng.uniform(0.3, 1.0)),
                }
                if with_masks:
                    det["segmentation"] = [
                        [
                            bx[0],
                            bx[1],
                            bx[0] + bx[2],
                            bx[1],
                            bx[0] + bx[2] * 0.8,
                            bx[1] + bx[3],
                            bx[0],
                            bx[1] + bx[3] * 0.7,
                        ]
                    ]
                dets.append(det)
        n_im_dets = sum(1 for d in dets if d["image_id"] == im["id"]) if with_masks else None
        for _ in range(max(0, dets_per_image - (n_im_dets if n_im_dets is not None else int(0.8 * n)))):
            w, h = np.exp(rng.uniform(np.log(4), np.log(300), 2))
            x, y = rng.uniform(0, image_size - w), rng.uniform(0, image_size - h)
            det = {
                "image_id": im["id"],
                "category_id": int(rng.integers(1, n_categories + 1)),
                "bbox": [x, y, w, h],
                "score": float(rng.uniform(0.0, 0.6)),
            }
            if with_masks:
                det["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
            dets.append(det)
    return {"images": images, "annotations": anns, "categories": cats}, dets
