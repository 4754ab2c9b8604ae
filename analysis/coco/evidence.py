"""The objects behind an AP difference: what one backbone finds and the baseline misses, and the reverse.

For a size range, each detector keeps the detections at or above its score threshold (by default the
one that maximises its F1 at IoU 0.5 in that range) and is matched to the ground truth as COCOeval
matches at IoU 0.5 (analysis/coco/matching.py). Four lists follow:

- found_only: objects the backbone finds and the baseline misses;
- missed_only: objects the baseline finds and the backbone misses;
- false_positive_only: the backbone's false positives that no false positive of the baseline overlaps
  (same image and class, IoU >= 0.5);
- baseline_false_positive_only: the reverse.

Each item carries the object's (or false positive's) box and each detector's detection on it: the
matched one, or, for the detector that missed, its best-overlapping detection of that class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from fishspine.analysis.coco.evaluation import DEFAULT_AREA_RANGES
from fishspine.analysis.coco.matching import (
    FOREGROUND_IOU,
    FP,
    TP,
    ImageDetections,
    box_iou,
    ignored_objects,
    index_images,
    match_image,
)

EVIDENCE_KINDS = ("found_only", "missed_only", "false_positive_only", "baseline_false_positive_only")
EVIDENCE_TITLES = {
    "found_only": "found by {backbone}, missed by {baseline}",
    "missed_only": "found by {baseline}, missed by {backbone}",
    "false_positive_only": "false positives of {backbone} only",
    "baseline_false_positive_only": "false positives of {baseline} only",
}
SORT_KEYS = ("score", "iou", "size")


@dataclass(frozen=True)
class Detection:
    """One detector's detection on an evidence item."""

    box: list[float]
    score: float
    iou: float  # with the item's box


@dataclass(frozen=True)
class EvidenceItem:
    """An object (or a false positive) behind a difference, with each detector's detection on it."""

    kind: str
    image_id: int
    category_id: int
    box: list[float]
    area: float
    backbone: Detection | None
    baseline: Detection | None

    def sort_key(self, key: str) -> float:
        """The value galleries sort by: the deciding detector's score or IoU, or the object's area."""
        if key == "size":
            return self.area
        own = self.backbone if self.kind in ("found_only", "false_positive_only") else self.baseline
        return getattr(own, key) if own is not None else 0.0


@dataclass
class Evidence:
    """The evidence of one backbone against the baseline in one size range."""

    backbone: str
    baseline: str
    area: str
    thresholds: dict[str, float]  # detector name -> score threshold used
    items: list[EvidenceItem] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many items of each kind."""
        return {k: sum(1 for i in self.items if i.kind == k) for k in EVIDENCE_KINDS}

    def of_kind(self, kind: str, sort: str = "score") -> list[EvidenceItem]:
        """The items of `kind`, highest `sort` value ("score", "iou" or "size") first."""
        if sort not in SORT_KEYS:
            raise ValueError(f"sort by one of {', '.join(SORT_KEYS)}, not {sort!r}")
        return sorted((i for i in self.items if i.kind == kind), key=lambda i: -i.sort_key(sort))

    def rows(self) -> list[dict]:
        """One CSV row per item."""
        out = []
        for i in self.items:
            row = {"backbone": self.backbone, "baseline": self.baseline, "area_range": self.area, "kind": i.kind}
            row |= {"image_id": i.image_id, "category_id": i.category_id, "box": i.box, "object_area": i.area}
            for who, det in (("backbone", i.backbone), ("baseline", i.baseline)):
                row |= {f"{who}_box": det.box if det else "", f"{who}_score": det.score if det else ""}
                row[f"{who}_iou"] = det.iou if det else ""
            out.append(row)
        return out

    def as_dict(self) -> dict:
        """Plain data for JSON."""
        return {
            "backbone": self.backbone,
            "baseline": self.baseline,
            "area_range": self.area,
            "thresholds": self.thresholds,
            "counts": self.counts(),
            "items": [asdict(i) for i in self.items],
        }


def f1_threshold(images: Mapping[int, ImageDetections], lo: float, hi: float) -> float:
    """The score threshold that maximises F1 at IoU 0.5 in the size range (0 when nothing is found).

    Greedy matching by score means a true positive stays one when lower-scoring detections are dropped,
    so one matching gives F1 at every threshold.
    """
    scores, tps, npos = [], [], 0
    for img in images.values():
        ignored = ignored_objects(img, lo, hi)
        state, _ = match_image(img, ignored, lo, hi)
        keep = (state == TP) | (state == FP)
        scores.append(img.det_scores[keep])
        tps.append(state[keep] == TP)
        npos += int((~ignored).sum())
    if not scores or not npos:
        return 0.0
    s, tp = np.concatenate(scores), np.concatenate(tps)
    if not tp.any():
        return 0.0
    order = np.argsort(-s, kind="mergesort")
    s, tp = s[order], tp[order]
    tpc = np.cumsum(tp)
    f1 = 2 * tpc / (npos + np.arange(1, len(s) + 1))
    # a threshold must keep every detection of the same score: only the last of each run of ties counts
    last_of_score = np.append(s[1:] != s[:-1], True)
    best = int(np.argmax(np.where(last_of_score, f1, -1)))
    return float(s[best])


def _above(dets: list[dict], threshold: float) -> list[dict]:
    return [d for d in dets if d["score"] >= threshold]


def _det(img: ImageDetections, d: int, iou: float) -> Detection:
    return Detection([float(v) for v in img.det_boxes[d]], float(img.det_scores[d]), float(iou))


def _best_of_class(img: ImageDetections, g: int) -> Detection | None:
    same = np.where(img.det_cats == img.gt_cats[g])[0]
    if not len(same):
        return None
    d = same[np.argmax(img.iou[same, g])]
    return _det(img, int(d), img.iou[d, g])


def evidence(
    gt: dict,
    backbone: tuple[str, list[dict]],
    baseline: tuple[str, list[dict]],
    area: str = "all",
    area_ranges: Mapping[str, tuple[float, float]] | None = None,
    thresholds: Mapping[str, float] | None = None,
    max_dets: int = 100,
) -> Evidence:
    """The evidence of `backbone` (name, checked bbox results) against `baseline` in size range `area`."""
    lo, hi = (area_ranges or DEFAULT_AREA_RANGES)[area]
    chosen = dict(thresholds or {})
    matched: dict[str, dict[int, tuple[ImageDetections, np.ndarray, np.ndarray]]] = {}
    for name, dets in (backbone, baseline):
        if name not in chosen:
            chosen[name] = f1_threshold(index_images(gt, dets, max_dets), lo, hi)
        images = index_images(gt, _above(dets, chosen[name]), max_dets)
        matched[name] = {i: (img, *match_image(img, ignored_objects(img, lo, hi), lo, hi)) for i, img in images.items()}
    out = Evidence(backbone[0], baseline[0], area, {n: chosen[n] for n in (backbone[0], baseline[0])})
    for image_id, (img_a, state_a, match_a) in matched[backbone[0]].items():
        img_b, state_b, match_b = matched[baseline[0]][image_id]
        ignored = ignored_objects(img_a, lo, hi)
        by_a = {int(match_a[d]): d for d in np.where(state_a == TP)[0]}
        by_b = {int(match_b[d]): d for d in np.where(state_b == TP)[0]}
        for g in np.where(~ignored)[0]:
            if (g in by_a) == (g in by_b):
                continue
            det_a = _det(img_a, by_a[g], img_a.iou[by_a[g], g]) if g in by_a else _best_of_class(img_a, g)
            det_b = _det(img_b, by_b[g], img_b.iou[by_b[g], g]) if g in by_b else _best_of_class(img_b, g)
            kind = "found_only" if g in by_a else "missed_only"
            box = [float(v) for v in img_a.gt_boxes[g]]
            out.items.append(
                EvidenceItem(kind, image_id, int(img_a.gt_cats[g]), box, float(img_a.gt_areas[g]), det_a, det_b)
            )
        out.items += _lone_false_positives(image_id, img_a, state_a, img_b, state_b, "false_positive_only")
        out.items += _lone_false_positives(image_id, img_b, state_b, img_a, state_a, "baseline_false_positive_only")
    return out


def _lone_false_positives(
    image_id: int, img: ImageDetections, state: np.ndarray, other: ImageDetections, other_state: np.ndarray, kind: str
) -> list[EvidenceItem]:
    """False positives of `img`'s detector that no false positive of the other detector overlaps."""
    items = []
    fps, other_fps = np.where(state == FP)[0], np.where(other_state == FP)[0]
    if not len(fps):
        return items
    overlap = box_iou(img.det_boxes[fps], other.det_boxes[other_fps], np.zeros(len(other_fps), bool))
    same = img.det_cats[fps][:, None] == other.det_cats[other_fps][None, :]
    for k, d in enumerate(fps):
        shared = np.where(same[k] & (overlap[k] >= FOREGROUND_IOU))[0]
        if len(shared):
            continue
        box = [float(v) for v in img.det_boxes[d]]
        mine = Detection(box, float(img.det_scores[d]), 1.0)
        near = np.where(same[k])[0]
        theirs = None
        if len(near):
            j = near[np.argmax(overlap[k, near])]
            theirs = _det(other, int(other_fps[j]), overlap[k, j])
        area = box[2] * box[3]
        a, b = (mine, theirs) if kind == "false_positive_only" else (theirs, mine)
        items.append(EvidenceItem(kind, image_id, int(img.det_cats[d]), box, area, a, b))
    return items


def image_loader(folder: str | Path, files: Mapping[int, Any], cache: int = 64) -> Callable[[int], np.ndarray | None]:
    """image id -> its pixels, read from `folder` under the ground truth's file name (`files`: id -> name);
    None when it is not there, not an image, or named outside the folder. The last `cache` images are kept:
    the crops of one image come one after another."""
    from fishspine.analysis.images import ImageError, file_in_folder, load_image

    @lru_cache(maxsize=cache)
    def image(image_id: int) -> np.ndarray | None:
        path = file_in_folder(folder, files.get(image_id)) if folder else None
        if path is None:
            return None
        try:
            return load_image(path)
        except ImageError:
            return None

    return image
