"""COCOeval's matching, kept per detection: which object each detection takes, image by image.

pycocotools and faster-coco-eval keep only what AP needs; the error breakdown and the evidence
behind a number need each detection's object and every IoU, so the matching is redone here, exactly
as COCOeval does it (greedy by score within an image and class, crowd regions absorb detections,
objects outside the size range are ignored, the top max_dets per image and class). The tests hold
its AP50 equal to the evaluation's.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

FOREGROUND_IOU = 0.5
TP, FP, IGNORED = 1, 0, -1


def box_iou(dets: np.ndarray, gts: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of (D, 4) and (G, 4) xywh boxes; against a crowd region, intersection over the detection's area."""
    if not len(dets) or not len(gts):
        return np.zeros((len(dets), len(gts)))
    d0, g0 = dets[:, None, :2], gts[None, :, :2]
    d1, g1 = d0 + dets[:, None, 2:], g0 + gts[None, :, 2:]
    wh = np.clip(np.minimum(d1, g1) - np.maximum(d0, g0), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_d = (dets[:, 2] * dets[:, 3])[:, None]
    area_g = (gts[:, 2] * gts[:, 3])[None, :]
    union = np.where(crowd[None, :], area_d, area_d + area_g - inter)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@dataclass
class ImageDetections:
    """One image's objects and detections, with their IoUs."""

    gt_boxes: np.ndarray
    gt_cats: np.ndarray
    gt_areas: np.ndarray
    gt_crowd: np.ndarray
    det_ids: np.ndarray  # indices into the result list
    det_boxes: np.ndarray  # (D, 4) xywh
    det_cats: np.ndarray
    det_scores: np.ndarray
    det_areas: np.ndarray
    iou: np.ndarray  # (D, G)


def index_images(gt: dict, dets: list[dict], max_dets: int = 100) -> dict[int, ImageDetections]:
    """Each image's objects and its detections (the top `max_dets` per class, as COCOeval keeps), by image id."""
    gts_by: dict[int, list[dict]] = defaultdict(list)
    for g in gt["annotations"]:
        gts_by[g["image_id"]].append(g)
    dets_by: dict[int, list[int]] = defaultdict(list)
    for i, d in enumerate(dets):
        dets_by[d["image_id"]].append(i)
    images = {}
    for image_id in sorted(e["id"] for e in gt["images"]):
        gs = gts_by.get(image_id, [])
        kept = []
        by_cat: dict[int, list[int]] = defaultdict(list)
        for i in dets_by.get(image_id, []):
            by_cat[dets[i]["category_id"]].append(i)
        for ids in by_cat.values():
            # COCOeval: each image and class keeps its top max_dets, sorted stably by score
            order = np.argsort([-dets[i]["score"] for i in ids], kind="mergesort")[:max_dets]
            kept += [ids[k] for k in order]
        gt_boxes = np.array([g["bbox"] for g in gs], float).reshape(-1, 4)
        det_boxes = np.array([dets[i]["bbox"] for i in kept], float).reshape(-1, 4)
        crowd = np.array([bool(g.get("iscrowd", 0)) for g in gs], bool)
        images[image_id] = ImageDetections(
            gt_boxes,
            np.array([g["category_id"] for g in gs], int),
            np.array([g["area"] for g in gs], float),
            crowd,
            np.array(kept, int),
            det_boxes,
            np.array([dets[i]["category_id"] for i in kept], int),
            np.array([dets[i]["score"] for i in kept], float),
            det_boxes[:, 2] * det_boxes[:, 3],
            box_iou(det_boxes, gt_boxes, crowd),
        )
    return images


def ignored_objects(img: ImageDetections, lo: float, hi: float) -> np.ndarray:
    """The objects COCOeval ignores in the size range [lo, hi]: crowd regions and objects outside it."""
    return img.gt_crowd | (img.gt_areas < lo) | (img.gt_areas > hi)


def match_image(
    img: ImageDetections, ignored_gt: np.ndarray, lo: float, hi: float, threshold: float = FOREGROUND_IOU
) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval's matching at IoU `threshold`, class by class: (TP/FP/IGNORED per detection, its object or -1).

    `ignored_gt` marks crowd regions and objects outside the size range [lo, hi]; a detection matched to
    one, or unmatched and itself outside the range, is IGNORED."""
    state = np.full(len(img.det_ids), FP)
    matched = np.full(len(img.det_ids), -1)
    thr = np.array([min(threshold, 1 - 1e-10)])
    for cat in np.unique(img.det_cats):
        d_idx = np.where(img.det_cats == cat)[0]
        d_idx = d_idx[np.argsort(-img.det_scores[d_idx], kind="mergesort")]
        g_idx = np.where(img.gt_cats == cat)[0]
        m = greedy_match(img.iou[np.ix_(d_idx, g_idx)], ignored_gt[g_idx], img.gt_crowd[g_idx], thr)[0]
        hit = m >= 0
        matched[d_idx[hit]] = g_idx[m[hit]]
        state[d_idx[hit]] = np.where(ignored_gt[g_idx[m[hit]]], IGNORED, TP)
        areas = img.det_areas[d_idx]
        state[d_idx[~hit & ((areas < lo) | (areas > hi))]] = IGNORED
    return state, matched


def greedy_match(ious: np.ndarray, gt_ignore: np.ndarray, crowd: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """pycocotools' evaluateImg matching, all thresholds at once: detections (rows, by descending score)
    take the best remaining ground truth; counted ground truths first, crowds can be matched repeatedly.
    Returns (T, D) column indices (-1: unmatched)."""
    n_t, (n_d, n_g) = len(thr), ious.shape
    # pycocotools visits counted ground truths before ignored ones and, on equal IoU, keeps the later one.
    taken = np.zeros((n_t, n_g), bool)
    out = np.full((n_t, n_d), -1, np.int64)
    rev = np.arange(n_g)[::-1]
    # A detection under the lowest threshold with every ground truth takes none and changes nothing: skip it.
    reaching = np.flatnonzero((ious >= thr.min()).any(axis=1)) if n_g and n_t else ()
    for d in reaching:
        row = ious[d]
        ok = (~taken | crowd[None, :]) & (row[None, :] >= thr[:, None])
        best = np.full(n_t, -1, np.int64)
        for group in (~gt_ignore, gt_ignore):
            sel = ok & group[None, :]
            if not sel.any():
                continue
            vals = np.where(sel, row[None, :], -np.inf)[:, ::-1]
            pick = rev[np.argmax(vals, axis=1)]
            found = sel.any(axis=1) & (best < 0)
            best = np.where(found, pick, best)
        out[:, d] = best
        hit = best >= 0
        taken[np.flatnonzero(hit), best[hit]] = True
    return out
